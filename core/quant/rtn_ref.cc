// The reference RTN quantizer: plain loops, the definition (see rtn.h) that
// QuantizeRtn (rtn.cc) and QuantizeRtnPackInt4 must match bit for bit.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/quant/internal/checks.h"
#include "core/quant/internal/grid.h"
#include "core/quant/rtn.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

using quant_internal::AsymmetricGrid;

absl::Status CheckFinite(const Eigen::Ref<const RowMatrixXf>& w) {
  for (Eigen::Index r = 0; r < w.rows(); ++r) {
    for (Eigen::Index c = 0; c < w.cols(); ++c) {
      const float v = w(r, c);
      if (std::isfinite(v)) continue;
      return quant_internal::NonFiniteWeightError(r, c, v);
    }
  }
  return absl::OkStatus();
}

// A scale rounded to a narrow storage type can overflow (float16 tops out at
// 65504); such a weight cannot be stored, so say which group.
absl::Status CheckScalesFinite(const QuantizedWeight& qw) {
  const int64_t groups = qw.groups();
  for (size_t i = 0; i < qw.scales.size(); ++i) {
    if (std::isfinite(qw.scales[i])) continue;
    return quant_internal::UnrepresentableScaleError(
        static_cast<int64_t>(i) / groups, static_cast<int64_t>(i) % groups, qw.scales[i]);
  }
  return absl::OkStatus();
}

// Quantizes w(row, span) on the symmetric grid; returns the scale.
float QuantizeGroupSymmetric(const Eigen::Ref<const RowMatrixXf>& w, int64_t row, ColumnRange span,
                             int bits, ScaleRounding round_scale, int8_t* q) {
  float amax = 0.0f;
  for (int64_t c = span.begin; c < span.end; ++c) amax = std::max(amax, std::fabs(w(row, c)));
  float scale = quant_internal::SymmetricScale(amax, bits);
  if (round_scale != nullptr) scale = round_scale(scale);
  for (int64_t c = span.begin; c < span.end; ++c) {
    q[c] = scale > 0.0f
               ? static_cast<int8_t>(quant_internal::SymmetricLevel(w(row, c), scale, bits))
               : 0;
  }
  return scale;
}

// Quantizes w(row, span) on the asymmetric grid, stored signed; returns the
// scale and writes the signed zero point to *zero.
float QuantizeGroupAsymmetric(const Eigen::Ref<const RowMatrixXf>& w, int64_t row, ColumnRange span,
                              int bits, ScaleRounding round_scale, int8_t* q, int8_t* zero) {
  float lo = 0.0f;
  float hi = 0.0f;
  for (int64_t c = span.begin; c < span.end; ++c) {
    lo = std::min(lo, w(row, c));
    hi = std::max(hi, w(row, c));
  }
  const AsymmetricGrid grid = quant_internal::MakeAsymmetricGrid(lo, hi, bits, round_scale);
  const int offset = quant_internal::SignedOffset(bits);
  for (int64_t c = span.begin; c < span.end; ++c) {
    const int q_u =
        grid.scale > 0.0f ? quant_internal::AsymmetricLevel(w(row, c), grid, bits) : grid.zero_u;
    q[c] = static_cast<int8_t>(q_u - offset);
  }
  *zero = static_cast<int8_t>(grid.zero_u - offset);
  return grid.scale;
}

}  // namespace

absl::StatusOr<QuantizedWeight> QuantizeRtnReference(const Eigen::Ref<const RowMatrixXf>& w,
                                                     const WeightQuantOptions& options,
                                                     ScaleRounding round_scale) {
  CATQ_RETURN_IF_ERROR(Prefix("options", options.Validate()));
  if (w.rows() == 0 || w.cols() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight: shape [", w.rows(), ", ", w.cols(), "] is empty"));
  }
  CATQ_RETURN_IF_ERROR(CheckFinite(w));

  QuantizedWeight qw;
  qw.rows = w.rows();
  qw.cols = w.cols();
  qw.options = options;
  const int64_t groups = qw.groups();
  qw.q.resize(qw.rows * qw.cols);
  qw.scales.resize(qw.rows * groups);
  if (!options.symmetric) qw.zeros.resize(qw.rows * groups);

  for (int64_t r = 0; r < qw.rows; ++r) {
    int8_t* q_row = qw.q.data() + r * qw.cols;
    for (int64_t g = 0; g < groups; ++g) {
      const ColumnRange span = GroupColumns(g, qw.cols, options.group_size);
      const int64_t at = r * groups + g;
      qw.scales[at] = options.symmetric
                          ? QuantizeGroupSymmetric(w, r, span, options.bits, round_scale, q_row)
                          : QuantizeGroupAsymmetric(w, r, span, options.bits, round_scale, q_row,
                                                    &qw.zeros[at]);
    }
  }
  CATQ_RETURN_IF_ERROR(CheckScalesFinite(qw));
  return qw;
}

}  // namespace catq
