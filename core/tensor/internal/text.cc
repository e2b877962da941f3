#include "core/tensor/internal/text.h"

#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace catq::tensor_internal {
namespace {

bool IsContinuation(uint8_t byte) { return (byte & 0xC0) == 0x80; }

// The length of the well-formed sequence starting at text[i], or 0. The
// ranges of the second byte are those of RFC 3629, table 3-7 of Unicode:
// they exclude overlong forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF)
// and code points past U+10FFFF (F4 90..BF, F5..FF).
size_t SequenceLength(absl::string_view text, size_t i) {
  const uint8_t b0 = static_cast<uint8_t>(text[i]);
  if (b0 < 0x80) return 1;
  size_t length = 0;
  uint8_t lo = 0x80;
  uint8_t hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;  // 80..C1 (continuation or overlong lead) and F5..FF.
  }
  if (text.size() - i < length) return 0;
  const uint8_t b1 = static_cast<uint8_t>(text[i + 1]);
  if (b1 < lo || b1 > hi) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (!IsContinuation(static_cast<uint8_t>(text[i + k]))) return 0;
  }
  return length;
}

}  // namespace

size_t FindInvalidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const size_t length = SequenceLength(text, i);
    if (length == 0) return i;
    i += length;
  }
  return absl::string_view::npos;
}

std::string Quote(absl::string_view text) {
  constexpr size_t kMaxBytes = 200;
  bool cut = false;
  if (text.size() > kMaxBytes) {
    size_t end = kMaxBytes;
    // Back up to a character boundary so the message stays valid UTF-8.
    while (end > 0 && IsContinuation(static_cast<uint8_t>(text[end]))) --end;
    text = text.substr(0, end);
    cut = true;
  }
  return absl::StrCat("\"", absl::Utf8SafeCHexEscape(text), cut ? "...\"" : "\"");
}

}  // namespace catq::tensor_internal
