// File: core/tensor/shape.h
//
// Checked arithmetic on tensor shapes. A shape comes from an untrusted file or
// a caller, so its element count is computed with overflow checks before
// anyone multiplies dimensions.
//
//   CATQ_ASSIGN_OR_RETURN(uint64_t bytes, ShapeNumBytes({4096, 11008}, DType::kF16));
//   // bytes == 90177536
//   std::string s = FormatShape({4096, 11008});  // "[4096, 11008]"
//
// Pure functions: thread-safe, no ownership.
#ifndef CATQ_CORE_TENSOR_SHAPE_H_
#define CATQ_CORE_TENSOR_SHAPE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor/dtype.h"

namespace catq {

// ShapeNumElements
//
// The product of the dimensions (1 for a scalar `[]`). InvalidArgument when a
// dimension is negative or when the product of the non-zero dimensions passes
// INT64_MAX: a shape like [2^40, 2^40, 0] is rejected too, so that code that
// multiplies any subset of dimensions can never overflow.
absl::StatusOr<int64_t> ShapeNumElements(absl::Span<const int64_t> shape);

// ShapeNumBytes
//
// ShapeNumElements(shape) * DTypeSize(dtype), InvalidArgument if that passes
// UINT64_MAX.
absl::StatusOr<uint64_t> ShapeNumBytes(absl::Span<const int64_t> shape, DType dtype);

// FormatShape
//
// "[d0, d1, ...]" for messages.
std::string FormatShape(absl::Span<const int64_t> shape);

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_SHAPE_H_
