#include "core/model/sentencepiece_normalizer.h"

#include <cstddef>
#include <cstdint>

namespace catq {
namespace {

constexpr char kReplacementCharacter[] = "\xEF\xBF\xBD";     // U+FFFD
constexpr absl::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581

bool IsContinuation(uint8_t byte) { return (byte & 0xC0) == 0x80; }

// ValidCharacterLength: the length of the valid UTF-8 character at the start
// of `text`, or 0 when there is none (strict UTF-8: shortest form only, no
// surrogates, nothing past U+10FFFF).
size_t ValidCharacterLength(absl::string_view text) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(0);
  if (lead < 0x80) return 1;
  // The lead byte gives the length, the payload bits and the smallest code
  // point that needs that length.
  size_t length = 4;
  uint32_t code_point = lead & 0x07;
  uint32_t minimum = 0x10000;
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    code_point = lead & 0x1F;
    minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    code_point = lead & 0x0F;
    minimum = 0x800;
  } else if ((lead & 0xF8) != 0xF0) {
    return 0;
  }
  if (text.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if (!IsContinuation(byte(i))) return 0;
    code_point = (code_point << 6) | (byte(i) & 0x3F);
  }
  const bool surrogate = code_point >= 0xD800 && code_point <= 0xDFFF;
  if (code_point < minimum || surrogate || code_point > 0x10FFFF) return 0;
  return length;
}

}  // namespace

std::string NormalizeForSentencePiece(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t at = 0;
  while (at < text.size()) {
    const absl::string_view rest = text.substr(at);
    const size_t length = ValidCharacterLength(rest);
    if (length == 0) {
      out.append(kReplacementCharacter);
      at += 1;
    } else if (rest.substr(0, length) == kEscapedSpace) {
      out.push_back(' ');
      at += length;
    } else {
      out.append(rest.data(), length);
      at += length;
    }
  }
  return out;
}

}  // namespace catq
