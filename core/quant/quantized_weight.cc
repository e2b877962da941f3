#include "core/quant/quantized_weight.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/quant/internal/checks.h"
#include "core/quant/internal/rtn_kernels.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

absl::Status CheckLevels(const char* field, const std::vector<int8_t>& levels, int64_t cols,
                         int bits) {
  const int lo = quant_internal::MinSignedLevel(bits);
  const int hi = quant_internal::MaxSignedLevel(bits);
  // A vector pass says whether all are in range; only a failure is located.
  if (quant_internal::FastestRtnKernels().levels_within(
          levels.data(), static_cast<int64_t>(levels.size()), lo, hi)) {
    return absl::OkStatus();
  }
  for (int64_t i = 0; i < static_cast<int64_t>(levels.size()); ++i) {
    const int level = levels[i];
    if (level < lo || level > hi) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i / cols, ", ", i % cols, "] is ",
                                                     level, ", outside [", lo, ", ", hi, "] for ",
                                                     bits, " bits"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateQuantizedWeight(const QuantizedWeight& qw) {
  CATQ_RETURN_IF_ERROR(Prefix("options", qw.options.Validate()));
  if (qw.rows <= 0 || qw.cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape: [", qw.rows, ", ", qw.cols, "] must have rows > 0 and cols > 0"));
  }
  const int64_t groups = qw.groups();
  CATQ_RETURN_IF_ERROR(quant_internal::CheckArraySize("q", qw.q.size(), qw.rows, qw.cols));
  CATQ_RETURN_IF_ERROR(quant_internal::CheckArraySize("scales", qw.scales.size(), qw.rows, groups));
  if (qw.options.symmetric) {
    if (!qw.zeros.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("zeros: symmetric weights have no zero points, got ", qw.zeros.size()));
    }
  } else {
    CATQ_RETURN_IF_ERROR(quant_internal::CheckArraySize("zeros", qw.zeros.size(), qw.rows, groups));
  }
  CATQ_RETURN_IF_ERROR(CheckLevels("q", qw.q, qw.cols, qw.options.bits));
  CATQ_RETURN_IF_ERROR(CheckLevels("zeros", qw.zeros, groups, qw.options.bits));
  for (int64_t i = 0; i < static_cast<int64_t>(qw.scales.size()); ++i) {
    const float s = qw.scales[i];
    if (!std::isfinite(s) || s < 0.0f) {
      return absl::InvalidArgumentError(absl::StrCat("scales[", i / groups, ", ", i % groups,
                                                     "] is ", s, ", expected finite and >= 0"));
    }
  }
  return absl::OkStatus();
}

RowMatrixXf Dequantize(const QuantizedWeight& qw) {
  const int64_t groups = qw.groups();
  RowMatrixXf w(qw.rows, qw.cols);
  for (int64_t r = 0; r < qw.rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float scale = qw.scales[r * groups + g];
      const int zero = qw.options.symmetric ? 0 : qw.zeros[r * groups + g];
      const ColumnRange span = GroupColumns(g, qw.cols, qw.options.group_size);
      for (int64_t c = span.begin; c < span.end; ++c) {
        w(r, c) = static_cast<float>(qw.q[r * qw.cols + c] - zero) * scale;
      }
    }
  }
  return w;
}

}  // namespace catq
