// File: client/eval_documents.h
//
// The documents of an evaluation text file as token ids, with the model
// directory's llama2.c tokenizer (`tokenizer.bin`), BOS first: what
// `catq quantize --eval-text` and `catq compare --text` evaluate on.
#ifndef CATQ_CLIENT_EVAL_DOCUMENTS_H_
#define CATQ_CLIENT_EVAL_DOCUMENTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace catq::cli {

// Errors name the missing tokenizer or text file.
absl::StatusOr<std::vector<std::vector<int32_t>>> ReadEvalDocuments(const std::string& model_dir,
                                                                    const std::string& text,
                                                                    int64_t vocab_size);

}  // namespace catq::cli

#endif  // CATQ_CLIENT_EVAL_DOCUMENTS_H_
