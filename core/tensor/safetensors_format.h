// File: core/tensor/safetensors_format.h
//
// The framing of a whole safetensors file, parsed from bytes in memory (a
// mapping, an upload, a fuzzer input):
//
//   offset 0   8 bytes   N, the header length, little-endian u64
//   offset 8   N bytes   JSON header (core/tensor/safetensors_header.h)
//   offset 8+N           data buffer, to the end of the file
//
//   CATQ_ASSIGN_OR_RETURN(ParsedSafetensors parsed, ParseSafetensorsFile(bytes));
//   absl::string_view data = bytes.substr(parsed.data_offset);
//
// SafetensorsFile::Open and the fuzzer both go through ParseSafetensorsFile,
// so the fuzzer covers exactly what production parses. Pure functions:
// thread-safe; results own their data.
#ifndef CATQ_CORE_TENSOR_SAFETENSORS_FORMAT_H_
#define CATQ_CORE_TENSOR_SAFETENSORS_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor/safetensors_header.h"

namespace catq {

// kSafetensorsLengthSize: bytes of the header length field.
inline constexpr uint64_t kSafetensorsLengthSize = 8;

struct ParsedSafetensors {
  SafetensorsHeader header;
  // data_offset: where the data buffer starts in the file (8 + N); tensor
  // offsets are relative to it.
  uint64_t data_offset = 0;
};

// ParseSafetensorsFile
//
// Validates the framing and the header of the file whose bytes are
// `file_bytes`. Never reads tensor data. Every failure is InvalidArgument; the
// message names the offset or field, e.g.
//   "header length 123456 at offset 0 exceeds file size 100".
// The caller adds the file name (SafetensorsFile::Open does). A caller that
// re-reads a blob it validated before may report a failure as DataLoss.
absl::StatusOr<ParsedSafetensors> ParseSafetensorsFile(absl::string_view file_bytes);

// EncodeSafetensorsLength
//
// The 8-byte little-endian encoding of a header length.
std::string EncodeSafetensorsLength(uint64_t header_length);

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_SAFETENSORS_FORMAT_H_
