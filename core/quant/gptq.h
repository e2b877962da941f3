// File: core/quant/gptq.h
//
// GPTQ weight quantization (Frantar et al., 2022; cat-method.md section 4):
// columns of a weight matrix [out, in] are rounded one at a time, and the
// rounding error of each column is spread over the columns not yet rounded,
// weighted by the inverse of the input second moment H = E[x x^T], so that
// the layer's output error ||W X^T - Q(W) X^T|| shrinks, not the weight error.
// In catq, H is the *transformed* second moment T Sx T^T of the site.
//
//   WeightQuantOptions options;  // 4 bits, symmetric
//   options.group_size = 128;
//   GptqOptions gptq;            // damping 0.01, blocks of 128
//   CATQ_ASSIGN_OR_RETURN(QuantizedWeight qw, QuantizeGptq(w, hessian, options, gptq));
//   CATQ_ASSIGN_OR_RETURN(CompressedTensorsInt4 packed, PackInt4CompressedTensors(qw));
//
// The result is on exactly the grid of QuantizeRtn (rtn.h): the same scale
// and zero-point formulas per (row, group) of contiguous ORIGINAL columns, the
// same integer ranges and signed storage, round half to even. Only the values
// fed to those formulas differ: the error-updated weights instead of `w`. So
// every packer takes the result unchanged, and no g_idx is ever needed.
//
// Algorithm, with d = in:
//   1. Dead inputs: a column j with H[j, j] == 0 never sees a nonzero input;
//      its weights are set to 0 (quantized as 0, they do not widen the
//      group's range) and H[j, j] to 1.
//   2. Damping: H += damping * mean(diag H) * I (the mean after step 1).
//   3. Order: the original column order, or with act_order the order of
//      decreasing H[j, j] (ties keep the lower index first).
//   4. U = the upper Cholesky factor of H^-1 (U^T U = H^-1) in that order,
//      computed as the inverse of the "upper-lower" factor of H, which needs
//      no explicit H^-1.
//   5. For each column j in order: q_j = the grid level of the current w_j;
//      err = (w_j - value(q_j)) / U[j, j]; every later column k gets
//      w_k -= err * U[j, k]. Updates are batched over block_size columns
//      (lazy batch updates); blocking changes only the order of floating
//      point sums, not the result's definition.
//
// Group scales (`GptqOptions::static_groups`):
//   dynamic (false, the default; per the reference GPTQ): the grid of a group
//     is computed when its first column is reached, from the weights of all
//     its columns as updated by every earlier column at that moment (exactly,
//     including updates still pending in the current lazy block). The
//     reference implementation reads stale values when a group starts inside
//     a block; the two agree when group_size is a multiple of block_size.
//   static (true): every grid is computed from the original weights (dead
//     columns zeroed) before any update: the scales and zero points are then
//     those of QuantizeRtn on that matrix.
//   Per channel (group_size -1) both are the same.
// act_order with groups requires static_groups: a dynamic group would be
// fixed when its first column in activation order arrives, mixing columns of
// many groups before it, and the result could only be stored with a g_idx.
//
// Exact equivalences: with a diagonal H (any positive diagonal, e.g. the
// identity), U is diagonal, no column updates another, and the result equals
// QuantizeRtn(w) bit for bit, for every option combination (when no column
// is dead). The computation is deterministic for a given build, machine and
// OpenBLAS thread count.
//
// Precision: all Hessian math and the working copy of the weights are in
// double; values are rounded to float only where the grid reads them, as
// QuantizeRtn does.
//
// Cost: about out * in^2 + 2/3 * in^3 flops, nearly all in OpenBLAS (dgemm,
// dtrsm, dtrmm, dsyrk), and memory for one in x in and one out x in matrix
// of doubles besides the inputs and the result (for in = 11008: 0.97 GB for
// the former). OpenBLAS uses its own thread count; a caller with its own
// thread pool should set it to 1. bench/README.md has timings.
//
// Thread-safety: pure function; concurrent calls are safe.
#ifndef CATQ_CORE_QUANT_GPTQ_H_
#define CATQ_CORE_QUANT_GPTQ_H_

#include <Eigen/Core>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/math/eigen_types.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/rtn.h"
#include "core/quant/weight_quant_options.h"

namespace catq {

struct GptqOptions {
  // Added to the Hessian diagonal, relative to its mean:
  // H += damping * mean(diag H) * I. Default 0.01 (1%). Finite and >= 0.
  // Raise it when the Hessian is reported not positive definite.
  double damping = 0.01;
  // Columns per lazy batch update. Default 128. >= 1. Only speed and the
  // order of floating point sums depend on it.
  int block_size = 128;
  // true: columns are processed in order of decreasing Hessian diagonal
  // (inputs with the most energy first; "desc_act"). The result is still
  // stored in the original column order. Default false.
  bool act_order = false;
  // true: group scales come from the original weights before any update;
  // false (default): from the updated weights when the group's first column
  // is reached. See the file comment. Required with act_order and groups.
  bool static_groups = false;

  // GptqOptions::Validate()
  //
  // OK when every field is in range; else InvalidArgument naming the field,
  // e.g. "block_size: 0 must be >= 1".
  absl::Status Validate() const;
};

// QuantizeGptq
//
// Quantizes `w` [out, in] with the grid `options` by GPTQ (file comment),
// given `hessian` [in, in] = E[x x^T] of the layer's inputs (any positive
// multiple gives the same result). `round_scale` works as in QuantizeRtn:
// every scale is the value it will be stored as, and levels come from it.
//
// Errors (InvalidArgument): invalid `options` (prefixed "options: ") or
// `gptq` (prefixed "gptq: "); act_order with groups but not static_groups;
// an empty `w`; a NaN or Inf in `w` ("weight[3, 17] is NaN") or `hessian`
// ("hessian[4, 2] is +Inf"); a hessian of the wrong shape ("hessian: shape
// [64, 64], expected [128, 128] ..."); a negative diagonal entry; a hessian
// that is not symmetric within a relative 1e-5 (names both entries); a
// hessian that is not positive definite even after damping (suggests raising
// the damping); a scale that `round_scale` makes infinite (names row and
// group); a column whose updated weights are no longer finite (the hessian is
// too ill-conditioned; suggests raising the damping).
//
// Row-major `w` and column-major `hessian` are read in place; other layouts
// are copied by Eigen::Ref.
absl::StatusOr<QuantizedWeight> QuantizeGptq(const Eigen::Ref<const RowMatrixXf>& w,
                                             const Eigen::Ref<const Eigen::MatrixXd>& hessian,
                                             const WeightQuantOptions& options,
                                             const GptqOptions& gptq,
                                             ScaleRounding round_scale = nullptr);

}  // namespace catq

#endif  // CATQ_CORE_QUANT_GPTQ_H_
