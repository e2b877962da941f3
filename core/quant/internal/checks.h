// File: core/quant/internal/checks.h
//
// Checks shared by QuantizedWeight and the int4 packers
// (compressed_tensors_pack.cc, gptq_pack.cc), so all word errors alike.
//
//   CATQ_RETURN_IF_ERROR(quant_internal::CheckInt4Options(options));
//   CATQ_RETURN_IF_ERROR(quant_internal::CheckArraySize("qweight", q.size(), words, out));
//
// Not a public API. Thread-safety: pure functions.
#ifndef CATQ_CORE_QUANT_INTERNAL_CHECKS_H_
#define CATQ_CORE_QUANT_INTERNAL_CHECKS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/quant/weight_quant_options.h"

namespace catq::quant_internal {

// CheckInt4Options: options.Validate() (prefixed "options") and bits <= 4.
absl::Status CheckInt4Options(const WeightQuantOptions& options);

// CheckPackedShape
//
// rows > 0, cols > 0 and groups == NumGroups(cols, options.group_size), e.g.
// "groups: 3, expected 2 for in = 172 and group_size 128".
absl::Status CheckPackedShape(int64_t rows, int64_t cols, int64_t groups,
                              const WeightQuantOptions& options);

// CheckArraySize
//
// `size` == dim0 * dim1, else InvalidArgument
// "<name>: expected 704 values ([32, 22]), got 700".
absl::Status CheckArraySize(absl::string_view name, size_t size, int64_t dim0, int64_t dim1);

// NonFiniteWeightError
//
// The error for a NaN or Inf weight element, e.g. "weight[3, 17] is NaN"
// ("+Inf", "-Inf"). REQUIRES: `value` is not finite.
absl::Status NonFiniteWeightError(int64_t row, int64_t col, float value);

// UnrepresentableScaleError
//
// The error for a scale that rounding to the storage dtype made non-finite:
// "weight row 2 group 1: scale inf is not representable in the scale dtype".
absl::Status UnrepresentableScaleError(int64_t row, int64_t group, float scale);

// The signed levels that fit `bits` bits: [-2^(b-1), 2^(b-1) - 1].
inline int MinSignedLevel(int bits) { return -(1 << (bits - 1)); }
inline int MaxSignedLevel(int bits) { return (1 << (bits - 1)) - 1; }
inline bool FitsSignedBits(int level, int bits) {
  return level >= MinSignedLevel(bits) && level <= MaxSignedLevel(bits);
}

}  // namespace catq::quant_internal

#endif  // CATQ_CORE_QUANT_INTERNAL_CHECKS_H_
