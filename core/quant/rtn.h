// File: core/quant/rtn.h
//
// Round-to-nearest (RTN) weight quantization: each (row, group) of a weight
// matrix [out, in] gets its own scale from its range, and each element is
// rounded to the nearest level. rtn_ref.cc (QuantizeRtnReference) is the
// reference implementation, plain loops, and the definition; QuantizeRtn
// (rtn.cc) runs the row kernels of internal/rtn_kernels.h (AVX2 where the
// CPU has it) and matches it bit for bit: levels, scales, zero points and
// error messages. rtn_packed_int4.h goes straight to packed int4.
//
//   Eigen::Map<const RowMatrixXf> w(data, out, in);
//   WeightQuantOptions options;  // 4 bits, per channel, symmetric
//   CATQ_ASSIGN_OR_RETURN(QuantizedWeight qw, QuantizeRtn(w, options));
//
// Grids (architecture.md section 4), b = options.bits, for each (row, group),
// round = round-half-to-even (std::nearbyint in the default rounding mode):
//
//   symmetric:   scale = amax / (2^(b-1) - 1)            (float division)
//                q     = clamp(round(w / scale), -(2^(b-1)-1), 2^(b-1)-1)
//   asymmetric:  (compressed-tensors convention, stored signed)
//                range  = max(w, 0) - min(w, 0)           (in double)
//                scale  = float(range / (2^b - 1))
//                zero_u = clamp(round(-min(w, 0) / scale), 0, 2^b - 1)
//                q_u    = clamp(round(w / scale) + zero_u, 0, 2^b - 1)
//                q = q_u - 2^(b-1),  zero = zero_u - 2^(b-1)
//   value = (q - zero) * scale   (zero = 0 when symmetric); see Dequantize.
//
// Divisions are IEEE float divisions w / scale (not multiplications by a
// reciprocal). Every element is within half a step of its value:
// |w - value| <= scale / 2, up to float rounding.
//
// All-zero groups: when a group is all zeros (or its scale underflows to 0,
// amax below ~1e-44), its scale is 0 and its q and zero are 0, so it
// dequantizes exactly to 0 and no division by zero happens.
//
// Thread-safety: pure functions; concurrent calls are safe.
#ifndef CATQ_CORE_QUANT_RTN_H_
#define CATQ_CORE_QUANT_RTN_H_

#include "absl/status/statusor.h"
#include "core/math/eigen_types.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/weight_quant_options.h"

namespace catq {

// QuantizeRtn
//
// Quantizes `w` [out, in] with `options` on the grids above. Errors
// (InvalidArgument): invalid options (names the field), an empty matrix, a NaN
// or Inf element (names it, e.g. "weight[3, 17] is NaN"). A row-major `w`
// is read in place; another layout is copied first by Eigen::Ref.
//
// `round_scale`, when given, maps each scale to the value it is stored as
// (FloatToHalf then back, for float16 scales); the levels are computed from
// that stored scale, so dequantizing the stored tensors keeps every element
// within half a step. A scale that rounds to +Inf is an InvalidArgument
// naming the row and group.
//
// Errors are checked in this order: options, shape, non-finite elements (the
// first in row-major order), scales (the first overflowing group).
using ScaleRounding = float (*)(float);
absl::StatusOr<QuantizedWeight> QuantizeRtn(const Eigen::Ref<const RowMatrixXf>& w,
                                            const WeightQuantOptions& options,
                                            ScaleRounding round_scale = nullptr);

// QuantizeRtnReference
//
// The reference: the same contract and the same bits as QuantizeRtn, in
// plain scalar loops (about 30 times slower). For tests and benchmarks.
absl::StatusOr<QuantizedWeight> QuantizeRtnReference(const Eigen::Ref<const RowMatrixXf>& w,
                                                     const WeightQuantOptions& options,
                                                     ScaleRounding round_scale = nullptr);

}  // namespace catq

#endif  // CATQ_CORE_QUANT_RTN_H_
