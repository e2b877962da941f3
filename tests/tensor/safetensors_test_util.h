// File: tests/tensor/safetensors_test_util.h
//
// Helpers for the safetensors tests: raw file bytes from a header and data,
// and typed values as little-endian bytes.
//
//   std::string file =
//   SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
//                                       FloatBytes({1.0f}));
//
// Pure functions; no ownership.
#ifndef CATQ_TESTS_TENSOR_SAFETENSORS_TEST_UTIL_H_
#define CATQ_TESTS_TENSOR_SAFETENSORS_TEST_UTIL_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/tensor/safetensors_format.h"

namespace catq::testing {

// SafetensorsBytes: [8-byte length][header_json][data], with no padding.
inline std::string SafetensorsBytes(absl::string_view header_json, absl::string_view data) {
  std::string bytes = EncodeSafetensorsLength(header_json.size());
  bytes.append(header_json.data(), header_json.size());
  bytes.append(data.data(), data.size());
  return bytes;
}

// ValueBytes: the in-memory (little-endian) bytes of `values`.
template <typename T>
std::string ValueBytes(const std::vector<T>& values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

inline std::string FloatBytes(const std::vector<float>& values) { return ValueBytes(values); }

// PatternBytes: `size` deterministic, non-constant bytes (seeded by `seed`).
inline std::string PatternBytes(size_t size, uint32_t seed) {
  std::string bytes(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : bytes) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return bytes;
}

}  // namespace catq::testing

#endif  // CATQ_TESTS_TENSOR_SAFETENSORS_TEST_UTIL_H_
