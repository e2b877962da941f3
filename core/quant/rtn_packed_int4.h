// File: core/quant/rtn_packed_int4.h
//
// RTN straight to the compressed-tensors int4 layout, for callers that store
// the packed weight and need no QuantizedWeight: one pass per row from f32 or
// bf16 values to packed nibbles and scales, with no [out, in] int8 array in
// between. The result is bit for bit that of
//
//   QuantizeRtn(w, options, round_scale) then PackInt4CompressedTensors(qw),
//
// scales included, on every grid with bits <= 4 (rtn.h defines the grids,
// compressed_tensors_pack.h the layout).
//
//   CATQ_ASSIGN_OR_RETURN(RtnPackedInt4 out, QuantizeRtnPackInt4(w, options));
//   // write out.packed.weight_packed as <m>.weight_packed, out.scales as <m>.weight_scale
//
//   // A bf16 checkpoint tensor, read in place (no f32 copy):
//   CATQ_ASSIGN_OR_RETURN(RtnPackedInt4 out,
//                         QuantizeRtnPackInt4FromBf16(bits, rows, cols, options));
//
// Thread-safety: pure functions; concurrent calls are safe.
#ifndef CATQ_CORE_QUANT_RTN_PACKED_INT4_H_
#define CATQ_CORE_QUANT_RTN_PACKED_INT4_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/math/eigen_types.h"
#include "core/quant/compressed_tensors_pack.h"
#include "core/quant/rtn.h"
#include "core/quant/weight_quant_options.h"

namespace catq {

struct RtnPackedInt4 {
  // weight_packed, and weight_zero_point when asymmetric.
  CompressedTensorsInt4 packed;
  // [rows, groups] row-major: QuantizedWeight::scales of the same call.
  std::vector<float> scales;
};

// QuantizeRtnPackInt4
//
// RTN of `w` [out, in] on `options`, packed. Errors (InvalidArgument), in the
// order they are checked: invalid options or bits > 4 (as
// PackInt4CompressedTensors words them), an empty matrix, a NaN or Inf
// element and a scale `round_scale` overflows (both worded as QuantizeRtn).
absl::StatusOr<RtnPackedInt4> QuantizeRtnPackInt4(const Eigen::Ref<const RowMatrixXf>& w,
                                                  const WeightQuantOptions& options,
                                                  ScaleRounding round_scale = nullptr);

// QuantizeRtnPackInt4FromBf16
//
// The same on a row-major [rows, cols] matrix of bfloat16 bit patterns (the
// upper 16 bits of a float, as safetensors BF16 stores them on a
// little-endian machine); equal to QuantizeRtnPackInt4 of the matrix widened
// to float. `w_bf16` must hold rows * cols values (else InvalidArgument).
absl::StatusOr<RtnPackedInt4> QuantizeRtnPackInt4FromBf16(absl::Span<const uint16_t> w_bf16,
                                                          int64_t rows, int64_t cols,
                                                          const WeightQuantOptions& options,
                                                          ScaleRounding round_scale = nullptr);

}  // namespace catq

#endif  // CATQ_CORE_QUANT_RTN_PACKED_INT4_H_
