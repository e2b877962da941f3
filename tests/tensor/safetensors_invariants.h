// File: tests/tensor/safetensors_invariants.h
//
// CheckParsedInvariants: what must hold of every file ParseSafetensorsFile
// accepts, however hostile its bytes. Shared by the mutation test and the
// fuzzer, so it depends on nothing but the library (no gtest).
//
//   absl::StatusOr<ParsedSafetensors> parsed = ParseSafetensorsFile(bytes);
//   if (parsed.ok()) {
//     std::string violation = CheckParsedInvariants(bytes, *parsed);
//     if (!violation.empty()) ...  // a parser bug
//   }
//
// Pure function; thread-safe.
#ifndef CATQ_TESTS_TENSOR_SAFETENSORS_INVARIANTS_H_
#define CATQ_TESTS_TENSOR_SAFETENSORS_INVARIANTS_H_

#include <cstdint>
#include <set>
#include <string>
#include <tuple>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/tensor/internal/text.h"
#include "core/tensor/safetensors_format.h"
#include "core/tensor/safetensors_header.h"
#include "core/tensor/shape.h"

namespace catq::testing {

// CheckParsedInvariants
//
// An empty string when `parsed`, the result of ParseSafetensorsFile(bytes),
// is consistent: framing matches the bytes; every tensor has a valid name,
// shape and byte span; the tensors are sorted and tile the data buffer
// exactly; names are unique; and serializing the header and parsing it again
// gives the same header. Otherwise a description of the first violation.
inline std::string CheckParsedInvariants(absl::string_view bytes, const ParsedSafetensors& parsed) {
  const uint64_t size = bytes.size();
  if (size < kSafetensorsLengthSize) return "accepted a file shorter than the length field";
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) {
    header_length = (header_length << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  }
  if (header_length > kMaxSafetensorsHeaderSize) return "accepted a header over the size limit";
  if (header_length > size - kSafetensorsLengthSize) return "accepted a header past the end";
  if (parsed.data_offset != kSafetensorsLengthSize + header_length) return "wrong data_offset";
  const uint64_t data_size = size - parsed.data_offset;

  const SafetensorsHeader& header = parsed.header;
  std::set<std::string> names;
  uint64_t expected_begin = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& tensor : header.tensors) {
    const std::string where = absl::StrCat("tensor ", tensor_internal::Quote(tensor.name), ": ");
    if (tensor.name == "__metadata__") return where + "reserved name accepted";
    if (tensor_internal::FindInvalidUtf8(tensor.name) != absl::string_view::npos) {
      return where + "name is not valid UTF-8";
    }
    if (!names.insert(tensor.name).second) return where + "duplicate name accepted";
    if (tensor.shape.size() > kMaxSafetensorsRank) return where + "rank over the limit";
    for (int64_t dim : tensor.shape) {
      if (dim < 0) return where + "negative dimension";
    }
    if (tensor.data_begin > tensor.data_end) return where + "begin > end";
    if (tensor.data_end > data_size) return where + "ends past the data buffer";
    absl::StatusOr<uint64_t> needed = ShapeNumBytes(tensor.shape, tensor.dtype);
    if (!needed.ok()) return where + "shape overflows";
    if (*needed != tensor.NumBytes()) return where + "byte span does not match the shape";
    if (static_cast<uint64_t>(tensor.NumElements()) * DTypeSize(tensor.dtype) != *needed) {
      return where + "NumElements disagrees with ShapeNumBytes";
    }
    if (previous != nullptr && std::tie(previous->data_begin, previous->data_end, previous->name) >
                                   std::tie(tensor.data_begin, tensor.data_end, tensor.name)) {
      return where + "tensors are not sorted by offset";
    }
    if (tensor.data_begin != expected_begin) return where + "tensors do not tile the buffer";
    expected_begin = tensor.data_end;
    previous = &tensor;
  }
  if (expected_begin != data_size) return "data buffer has bytes that belong to no tensor";
  for (const auto& [key, value] : header.metadata) {
    if (tensor_internal::FindInvalidUtf8(key) != absl::string_view::npos ||
        tensor_internal::FindInvalidUtf8(value) != absl::string_view::npos) {
      return "metadata is not valid UTF-8";
    }
  }

  // What was accepted must serialize, and parse back to the same header.
  absl::StatusOr<std::string> json = SerializeSafetensorsHeader(header);
  if (!json.ok())
    return absl::StrCat("accepted header does not serialize: ", json.status().message());
  absl::StatusOr<SafetensorsHeader> again = ParseSafetensorsHeader(*json, data_size);
  if (!again.ok()) {
    return absl::StrCat("serialized header does not parse: ", again.status().message());
  }
  if (again->metadata != header.metadata) return "metadata changed in a round trip";
  if (again->tensors.size() != header.tensors.size()) return "tensor count changed in a round trip";
  for (size_t i = 0; i < header.tensors.size(); ++i) {
    const TensorInfo& a = header.tensors[i];
    const TensorInfo& b = again->tensors[i];
    if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape ||
        a.data_begin != b.data_begin || a.data_end != b.data_end) {
      return absl::StrCat("tensor ", tensor_internal::Quote(a.name), " changed in a round trip");
    }
  }
  return "";
}

}  // namespace catq::testing

#endif  // CATQ_TESTS_TENSOR_SAFETENSORS_INVARIANTS_H_
