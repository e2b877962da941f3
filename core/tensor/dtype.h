// File: core/tensor/dtype.h
//
// The element types catq reads and writes in safetensors files, with their
// on-disk names ("F32", "BF16", ...) and byte sizes. Other safetensors types
// (BOOL, I16, F8_*, ...) are rejected by the parser as unknown.
//
//   CATQ_ASSIGN_OR_RETURN(DType dtype, ParseDType("BF16"));
//   size_t bytes = DTypeSize(dtype) * count;               // 2 * count
//   static_assert(DTypeOf<float>() == DType::kF32);
//
// Everything here is a pure function: thread-safe, no ownership.
#ifndef CATQ_CORE_TENSOR_DTYPE_H_
#define CATQ_CORE_TENSOR_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace catq {

enum class DType : uint8_t { kF64, kF32, kF16, kBF16, kI64, kI32, kI8, kU8 };

// DTypeName
//
// The safetensors spelling of `dtype`: "F64", "F32", "F16", "BF16", "I64",
// "I32", "I8", "U8".
absl::string_view DTypeName(DType dtype);

// ParseDType
//
// The inverse of DTypeName (case-sensitive, as in the format). An unknown name
// is InvalidArgument and the message quotes it.
absl::StatusOr<DType> ParseDType(absl::string_view name);

// DTypeSize
//
// Bytes per element: 8, 4, 2, 2, 8, 4, 1, 1.
size_t DTypeSize(DType dtype);

// IsFloatDType
//
// True for F64, F32, F16 and BF16.
bool IsFloatDType(DType dtype);

// DTypeOf<T>()
//
// The DType whose elements are stored as T. Defined for float, double,
// int64_t, int32_t, int8_t and uint8_t; any other T fails to compile. F16 and
// BF16 have no C++ type here: read them with TensorView::ToFloat().
template <typename T>
constexpr DType DTypeOf() {
  if constexpr (std::is_same_v<T, double>) {
    return DType::kF64;
  } else if constexpr (std::is_same_v<T, float>) {
    return DType::kF32;
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return DType::kI64;
  } else if constexpr (std::is_same_v<T, int32_t>) {
    return DType::kI32;
  } else if constexpr (std::is_same_v<T, int8_t>) {
    return DType::kI8;
  } else if constexpr (std::is_same_v<T, uint8_t>) {
    return DType::kU8;
  } else {
    static_assert(sizeof(T) == 0, "DTypeOf: no safetensors dtype for this C++ type");
  }
}

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_DTYPE_H_
