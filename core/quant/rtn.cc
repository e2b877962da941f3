// QuantizeRtn on the row kernels of internal/rtn_kernels.h; rtn_ref.cc is
// the definition it matches.
#include "core/quant/rtn.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/quant/internal/checks.h"
#include "core/quant/internal/rtn_kernels.h"
#include "core/util/status_macros.h"

namespace catq {
namespace quant_internal {
namespace {

// The error for a row a kernel rejected: its first non-finite element. The
// rows before it were accepted, so this is also the first in row-major order.
absl::Status FirstNonFiniteInRow(const float* row, int64_t r, int64_t cols) {
  for (int64_t c = 0; c < cols; ++c) {
    if (!std::isfinite(row[c])) return NonFiniteWeightError(r, c, row[c]);
  }
  return absl::InternalError(absl::StrCat("weight row ", r, ": rejected but finite"));
}

}  // namespace

absl::StatusOr<QuantizedWeight> QuantizeRtnWithKernels(const RtnKernels& kernels,
                                                       const Eigen::Ref<const RowMatrixXf>& w,
                                                       const WeightQuantOptions& options,
                                                       ScaleRounding round_scale) {
  CATQ_RETURN_IF_ERROR(Prefix("options", options.Validate()));
  if (w.rows() == 0 || w.cols() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight: shape [", w.rows(), ", ", w.cols(), "] is empty"));
  }
  QuantizedWeight qw;
  qw.rows = w.rows();
  qw.cols = w.cols();
  qw.options = options;
  const int64_t groups = qw.groups();
  qw.q.resize(qw.rows * qw.cols);
  qw.scales.resize(qw.rows * groups);
  if (!options.symmetric) qw.zeros.resize(qw.rows * groups);

  const RtnRowSpec spec{qw.cols, options.group_size, options.bits, options.symmetric, round_scale};
  for (int64_t r = 0; r < qw.rows; ++r) {
    const float* row = w.data() + r * w.outerStride();
    int8_t* zeros = options.symmetric ? nullptr : qw.zeros.data() + r * groups;
    if (!kernels.quantize_f32(row, spec, qw.q.data() + r * qw.cols, qw.scales.data() + r * groups,
                              zeros)) {
      return FirstNonFiniteInRow(row, r, qw.cols);
    }
  }
  for (size_t i = 0; i < qw.scales.size(); ++i) {
    if (std::isfinite(qw.scales[i])) continue;
    return UnrepresentableScaleError(static_cast<int64_t>(i) / groups,
                                     static_cast<int64_t>(i) % groups, qw.scales[i]);
  }
  return qw;
}

}  // namespace quant_internal

absl::StatusOr<QuantizedWeight> QuantizeRtn(const Eigen::Ref<const RowMatrixXf>& w,
                                            const WeightQuantOptions& options,
                                            ScaleRounding round_scale) {
  return quant_internal::QuantizeRtnWithKernels(quant_internal::FastestRtnKernels(), w, options,
                                                round_scale);
}

}  // namespace catq
