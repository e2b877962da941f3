// File: core/quant/activation_quant.h
//
// Per-token activation fake quantization, as evaluation applies it at the
// input of every quantized linear (after the online transform): each token's
// vector is put on its own b-bit grid and replaced by the values the grid
// stands for. Grids as in architecture.md section 4 and core/quant/rtn.h
// (round = round-half-to-even), computed by the same helpers as the weights:
//
//   asymmetric: range [min(x, 0), max(x, 0)], scale = range / (2^b - 1),
//               zero = clamp(round(-min / scale), 0, 2^b - 1),
//               q = clamp(round(x / scale) + zero, 0, 2^b - 1),
//               x <- (q - zero) * scale
//   symmetric:  scale = max|x| / (2^(b-1) - 1),
//               x <- clamp(round(x / scale), -(2^(b-1)-1), 2^(b-1)-1) * scale
//
// An all-zero token stays zero. Non-finite entries are passed through
// unchanged and ignored when the range is taken (a NaN stays visible in the
// output instead of being hidden on the grid); the caller checks activations
// for NaN where it matters.
//
//   FakeQuantizeTokenAsymmetric(absl::MakeSpan(x.row(t).data(), d), /*bits=*/4);
//   FakeQuantizeTokens(x, /*bits=*/4, /*symmetric=*/false);  // every row of x
//
// Thread-safety: pure functions over the caller's buffer; calls on disjoint
// buffers may run concurrently.
#ifndef CATQ_CORE_QUANT_ACTIVATION_QUANT_H_
#define CATQ_CORE_QUANT_ACTIVATION_QUANT_H_

#include "absl/types/span.h"
#include "core/math/eigen_types.h"

namespace catq {

// The bit widths the activation quantizers accept.
inline constexpr int kMinActivationBits = 2;
inline constexpr int kMaxActivationBits = 16;

// FakeQuantizeTokenAsymmetric
//
// Replaces `x` (one token) by its asymmetric b-bit fake-quantized values.
// REQUIRES: kMinActivationBits <= bits <= kMaxActivationBits.
void FakeQuantizeTokenAsymmetric(absl::Span<float> x, int bits);

// FakeQuantizeTokenSymmetric
//
// Replaces `x` (one token) by its symmetric b-bit fake-quantized values.
// REQUIRES: kMinActivationBits <= bits <= kMaxActivationBits.
void FakeQuantizeTokenSymmetric(absl::Span<float> x, int bits);

// FakeQuantizeTokens
//
// Each row of `tokens` [tokens, dim] as one token, symmetric or asymmetric:
// what evaluation does at a quantized linear's input.
// REQUIRES: kMinActivationBits <= bits <= kMaxActivationBits.
void FakeQuantizeTokens(Eigen::Ref<RowMatrixXf> tokens, int bits, bool symmetric);

}  // namespace catq

#endif  // CATQ_CORE_QUANT_ACTIVATION_QUANT_H_
