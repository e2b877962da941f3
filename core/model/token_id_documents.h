// File: core/model/token_id_documents.h
//
// Calibration given as token ids, for models whose tokenizer catq does not
// have (the service's CALIBRATION_KIND_TOKEN_IDS, `--calib-tokens`): a file of
// little-endian int32 ids, documents separated by -1. Ids are taken as they
// are (a BOS the model expects must be in the file). Empty documents (two
// separators in a row, or one at either end) are dropped.
//
//   CATQ_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> docs,
//                         ReadTokenIdDocuments(env, path, config.vocab_size));
//
// Thread-safety: pure functions (ReadTokenIdDocuments as thread-safe as `env`).
#ifndef CATQ_CORE_MODEL_TOKEN_ID_DOCUMENTS_H_
#define CATQ_CORE_MODEL_TOKEN_ID_DOCUMENTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"

namespace catq {

inline constexpr int32_t kTokenIdDocumentSeparator = -1;

// ParseTokenIdDocuments: the documents of `bytes`. InvalidArgument, naming
// `source` and the byte offset, for a size that is not a multiple of 4, an
// id below -1, or (when vocab_size > 0) an id >= vocab_size; and when the
// file holds no id at all.
absl::StatusOr<std::vector<std::vector<int32_t>>> ParseTokenIdDocuments(absl::string_view bytes,
                                                                        int64_t vocab_size,
                                                                        absl::string_view source);

// ReadTokenIdDocuments: ParseTokenIdDocuments of the file at `path`.
absl::StatusOr<std::vector<std::vector<int32_t>>> ReadTokenIdDocuments(Env* env,
                                                                       const std::string& path,
                                                                       int64_t vocab_size);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_TOKEN_ID_DOCUMENTS_H_
