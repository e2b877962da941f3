#include "core/quant/activation_quant.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "core/quant/internal/grid.h"

namespace catq {

void FakeQuantizeTokenAsymmetric(absl::Span<float> x, int bits) {
  assert(bits >= kMinActivationBits && bits <= kMaxActivationBits);
  float lo = 0.0f;
  float hi = 0.0f;
  for (float v : x) {
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const quant_internal::AsymmetricGrid grid = quant_internal::MakeAsymmetricGrid(lo, hi, bits);
  if (grid.scale == 0.0f) {
    for (float& v : x) {
      if (std::isfinite(v)) v = 0.0f;
    }
    return;
  }
  for (float& v : x) {
    if (!std::isfinite(v)) continue;
    const int q = quant_internal::AsymmetricLevel(v, grid, bits);
    v = static_cast<float>(q - grid.zero_u) * grid.scale;
  }
}

void FakeQuantizeTokenSymmetric(absl::Span<float> x, int bits) {
  assert(bits >= kMinActivationBits && bits <= kMaxActivationBits);
  float amax = 0.0f;
  for (float v : x) {
    if (std::isfinite(v)) amax = std::max(amax, std::fabs(v));
  }
  const float scale = quant_internal::SymmetricScale(amax, bits);
  for (float& v : x) {
    if (!std::isfinite(v)) continue;
    v = scale > 0.0f ? static_cast<float>(quant_internal::SymmetricLevel(v, scale, bits)) * scale
                     : 0.0f;
  }
}

void FakeQuantizeTokens(Eigen::Ref<RowMatrixXf> tokens, int bits, bool symmetric) {
  const size_t width = static_cast<size_t>(tokens.cols());
  for (Eigen::Index t = 0; t < tokens.rows(); ++t) {
    const absl::Span<float> token(&tokens(t, 0), width);
    if (symmetric) {
      FakeQuantizeTokenSymmetric(token, bits);
    } else {
      FakeQuantizeTokenAsymmetric(token, bits);
    }
  }
}

}  // namespace catq
