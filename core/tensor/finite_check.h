// File: core/tensor/finite_check.h
//
// Finds the first NaN or infinity in float data, naming the tensor and the
// element's flat index, so a bad weight is refused before it reaches an
// output: "model.embed_tokens.weight: element 3 is nan".
//
//   CATQ_RETURN_IF_ERROR(CheckFinite(name, values));
//   CATQ_RETURN_IF_ERROR(CheckFiniteTensor(view));  // any float dtype, no copy
//
// Thread-safety: pure functions.
#ifndef CATQ_CORE_TENSOR_FINITE_CHECK_H_
#define CATQ_CORE_TENSOR_FINITE_CHECK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/tensor/tensor_view.h"

namespace catq {

// CheckFinite: DataLoss naming `name` and the flat index of the first NaN or
// infinity in `values`, whose first element has flat index `first_index`.
absl::Status CheckFinite(absl::string_view name, absl::Span<const float> values,
                         uint64_t first_index = 0);

// CheckFiniteTensor: CheckFinite over every element of a floating tensor
// (F64, F32, F16, BF16), converted a bounded chunk at a time. A tensor of an
// integer dtype has nothing to check: OK.
absl::Status CheckFiniteTensor(const TensorView& view);

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_FINITE_CHECK_H_
