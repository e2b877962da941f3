// File: core/tensor/internal/text.h
//
// Text helpers for the safetensors code: a strict UTF-8 check (RFC 3629: no
// overlong forms, no surrogates, nothing past U+10FFFF) and quoting of
// untrusted names for error messages.
//
//   size_t bad = tensor_internal::FindInvalidUtf8(header);
//   if (bad != absl::string_view::npos) ... "not valid UTF-8 at byte " << bad
//   absl::StrCat("tensor ", tensor_internal::Quote(name), ": ...");
//
// Pure functions: thread-safe, no ownership.
#ifndef CATQ_CORE_TENSOR_INTERNAL_TEXT_H_
#define CATQ_CORE_TENSOR_INTERNAL_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace catq::tensor_internal {

// FindInvalidUtf8
//
// The offset of the first byte of `text` that does not start (or continue) a
// well-formed UTF-8 sequence, or absl::string_view::npos when all is valid.
size_t FindInvalidUtf8(absl::string_view text);

// Quote
//
// `text` in double quotes for an error message: escapes quotes, backslashes
// and control bytes, and cuts it to at most ~200 bytes (at a character
// boundary, marked "...") so that a hostile 100 MB name stays out of logs.
std::string Quote(absl::string_view text);

}  // namespace catq::tensor_internal

#endif  // CATQ_CORE_TENSOR_INTERNAL_TEXT_H_
