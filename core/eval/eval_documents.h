// File: core/eval/eval_documents.h
//
// The documents of an evaluation text file as token ids, with the model
// directory's tokenizer (core/model/model_tokenizer.h: `tokenizer.model`, else
// `tokenizer.bin`), BOS first: what
// `catq eval`, `catq quantize --eval-text`, `catq compare --text` and a
// job's evaluation stage evaluate on.
#ifndef CATQ_CORE_EVAL_EVAL_DOCUMENTS_H_
#define CATQ_CORE_EVAL_EVAL_DOCUMENTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace catq {

// Errors name the missing tokenizer or text file.
absl::StatusOr<std::vector<std::vector<int32_t>>> ReadEvalDocuments(const std::string& model_dir,
                                                                    const std::string& text,
                                                                    int64_t vocab_size);

}  // namespace catq

#endif  // CATQ_CORE_EVAL_EVAL_DOCUMENTS_H_
