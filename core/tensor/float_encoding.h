// File: core/tensor/float_encoding.h
//
// Encodes float32 values as the little-endian bytes of a floating dtype, the
// inverse of TensorView::ToFloat for F64, F32, F16 and BF16 (F16 and BF16
// round to nearest even, see half.h).
//
//   CATQ_ASSIGN_OR_RETURN(std::string bytes, EncodeFloats(scales, DType::kF16));
//
// Thread-safety: pure function.
#ifndef CATQ_CORE_TENSOR_FLOAT_ENCODING_H_
#define CATQ_CORE_TENSOR_FLOAT_ENCODING_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor/dtype.h"

namespace catq {

// InvalidArgument naming the dtype when it is not F64, F32, F16 or BF16.
absl::StatusOr<std::string> EncodeFloats(absl::Span<const float> values, DType dtype);

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_FLOAT_ENCODING_H_
