#include "core/tensor/safetensors_format.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace catq {
namespace {

// Byte by byte, so the result is the same on any host and any alignment.
uint64_t DecodeLittleEndian64(absl::string_view bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) {
    value = (value << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  }
  return value;
}

}  // namespace

std::string EncodeSafetensorsLength(uint64_t header_length) {
  std::string bytes(kSafetensorsLengthSize, '\0');
  for (size_t i = 0; i < kSafetensorsLengthSize; ++i) {
    bytes[i] = static_cast<char>((header_length >> (8 * i)) & 0xFF);
  }
  return bytes;
}

absl::StatusOr<ParsedSafetensors> ParseSafetensorsFile(absl::string_view file_bytes) {
  const uint64_t file_size = file_bytes.size();
  if (file_size < kSafetensorsLengthSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("file is ", file_size, " bytes, too short for the 8-byte header length"));
  }
  const uint64_t header_length = DecodeLittleEndian64(file_bytes.substr(0, kSafetensorsLengthSize));
  if (header_length > kMaxSafetensorsHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat("header length ", header_length,
                                                   " at offset 0 exceeds the limit of ",
                                                   kMaxSafetensorsHeaderSize, " bytes"));
  }
  // Compared without adding, so a huge length cannot wrap around.
  if (header_length > file_size - kSafetensorsLengthSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "header length ", header_length, " at offset 0 exceeds file size ", file_size,
        " (the header would end at byte ", kSafetensorsLengthSize + header_length, ")"));
  }
  ParsedSafetensors parsed;
  parsed.data_offset = kSafetensorsLengthSize + header_length;
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(
      file_bytes.substr(kSafetensorsLengthSize, header_length), file_size - parsed.data_offset);
  if (!header.ok()) return header.status();
  parsed.header = *std::move(header);
  return parsed;
}

}  // namespace catq
