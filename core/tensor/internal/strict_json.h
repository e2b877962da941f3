// File: core/tensor/internal/strict_json.h
//
// ParseStrictJson: nlohmann::json parsing for untrusted text, without
// exceptions and without nlohmann's silent acceptance of duplicate keys (it
// keeps the last one, so {"a": 1, "a": 2} could mean two things to two
// readers). Used for model.safetensors.index.json; the safetensors header has
// its own streaming parser (header_sax.h).
//
//   CATQ_ASSIGN_OR_RETURN(nlohmann::json index, tensor_internal::ParseStrictJson(text));
//
// Thread-safe (pure); the result owns its data.
#ifndef CATQ_CORE_TENSOR_INTERNAL_STRICT_JSON_H_
#define CATQ_CORE_TENSOR_INTERNAL_STRICT_JSON_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace catq::tensor_internal {

// kMaxJsonDepth: deeper nesting is rejected, bounding the work per byte.
inline constexpr int kMaxJsonDepth = 32;

// ParseStrictJson
//
// Parses `text` as one JSON value. InvalidArgument when it is not valid
// UTF-8 (naming the byte), holds a raw NUL byte (which nlohmann would take
// for the end of the input), not valid JSON (line and column), nested deeper
// than kMaxJsonDepth, or when an object repeats a key (naming the key).
absl::StatusOr<nlohmann::json> ParseStrictJson(absl::string_view text);

}  // namespace catq::tensor_internal

#endif  // CATQ_CORE_TENSOR_INTERNAL_STRICT_JSON_H_
