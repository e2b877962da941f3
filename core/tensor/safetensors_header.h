// File: core/tensor/safetensors_header.h
//
// The JSON header of a safetensors file: parsing with full validation, and
// serialization for the writer. The format (github.com/huggingface/safetensors):
//
//   [8 bytes: N, little-endian u64][N bytes: JSON header][data buffer]
//
// The header is a JSON object. Each key but "__metadata__" names a tensor and
// maps to exactly {"dtype": "F16", "shape": [4096, 11008],
// "data_offsets": [begin, end]}, offsets relative to the data buffer.
// "__metadata__", optional, maps strings to strings. As the format requires,
// the tensors, sorted by offset, tile the data buffer: the first begins at 0,
// each begins where the previous ends, the last ends at the buffer's end.
//
//   CATQ_ASSIGN_OR_RETURN(SafetensorsHeader header,
//                         ParseSafetensorsHeader(json, data_size));
//   for (const TensorInfo& t : header.tensors) ...  // sorted by data_begin
//
// Pure functions: thread-safe; results own their data.
#ifndef CATQ_CORE_TENSOR_SAFETENSORS_HEADER_H_
#define CATQ_CORE_TENSOR_SAFETENSORS_HEADER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor/dtype.h"

namespace catq {

// One tensor of a safetensors header.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // Byte range [data_begin, data_end) relative to the start of the data buffer.
  uint64_t data_begin = 0;
  uint64_t data_end = 0;

  // NumElements: the product of `shape`. Meaningful for validated shapes (all
  // that ParseSafetensorsHeader returns); never undefined behaviour otherwise.
  int64_t NumElements() const;
  // NumBytes: data_end - data_begin (equal to NumElements() * DTypeSize(dtype)
  // once validated).
  uint64_t NumBytes() const { return data_end - data_begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // Sorted by data_begin (ties: by name).
  std::map<std::string, std::string> metadata;
};

// kMaxSafetensorsHeaderSize
//
// The largest JSON header accepted, in bytes: the limit of the reference
// implementation, against memory exhaustion by a hostile length field.
inline constexpr uint64_t kMaxSafetensorsHeaderSize = 100'000'000;

// kMaxSafetensorsRank
//
// The most dimensions a tensor may have. The format sets no limit; 64 is far
// beyond any model and bounds what a hostile shape array can cost.
inline constexpr size_t kMaxSafetensorsRank = 64;

// ParseSafetensorsHeader
//
// Parses and validates `header_json` for a data buffer of `data_size` bytes.
// Pure (no I/O) and safe on any input: every failure is InvalidArgument whose
// message names the tensor and field, e.g.
//   tensor "w": shape [4096, 11008] of F16 needs 90177536 bytes, data_offsets span 90177530
// Checked: strict UTF-8 with no raw NUL byte; one JSON object; no duplicate keys anywhere; each
// tensor entry has exactly dtype (known), shape (at most 64 non-negative
// integers whose product fits in int64) and data_offsets (two non-negative
// integers, begin <= end <= data_size, span == element count * dtype size);
// "__metadata__" is an object of strings; the tensors tile the buffer with no
// overlap and no hole. Tensors with no elements are allowed.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view header_json,
                                                         uint64_t data_size);

// SerializeSafetensorsHeader
//
// The JSON text for `header` ("__metadata__" first when non-empty, then the
// tensors in the given order), padded with spaces to a multiple of 8 bytes so
// that the data buffer starts 8-aligned. Does not check offsets (the writer
// computes them); InvalidArgument when a name or metadata string is not
// valid UTF-8, or a tensor name is a duplicate or "__metadata__".
absl::StatusOr<std::string> SerializeSafetensorsHeader(const SafetensorsHeader& header);

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_SAFETENSORS_HEADER_H_
