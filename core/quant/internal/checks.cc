#include "core/quant/internal/checks.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq::quant_internal {

absl::Status CheckInt4Options(const WeightQuantOptions& options) {
  CATQ_RETURN_IF_ERROR(Prefix("options", options.Validate()));
  if (options.bits > 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.bits: ", options.bits, " does not fit int4 packing (at most 4)"));
  }
  return absl::OkStatus();
}

absl::Status CheckPackedShape(int64_t rows, int64_t cols, int64_t groups,
                              const WeightQuantOptions& options) {
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape: [", rows, ", ", cols, "] must have out > 0 and in > 0"));
  }
  const int64_t expected = NumGroups(cols, options.group_size);
  if (groups != expected) {
    return absl::InvalidArgumentError(absl::StrCat("groups: ", groups, ", expected ", expected,
                                                   " for in = ", cols, " and group_size ",
                                                   options.group_size));
  }
  return absl::OkStatus();
}

absl::Status CheckArraySize(absl::string_view name, size_t size, int64_t dim0, int64_t dim1) {
  const int64_t expected = dim0 * dim1;
  if (static_cast<int64_t>(size) == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, ": expected ", expected, " values ([", dim0,
                                                 ", ", dim1, "]), got ", size));
}

absl::Status NonFiniteWeightError(int64_t row, int64_t col, float value) {
  const char* what = std::isnan(value) ? "NaN" : (value > 0 ? "+Inf" : "-Inf");
  return absl::InvalidArgumentError(absl::StrCat("weight[", row, ", ", col, "] is ", what));
}

absl::Status UnrepresentableScaleError(int64_t row, int64_t group, float scale) {
  return absl::InvalidArgumentError(absl::StrCat("weight row ", row, " group ", group, ": scale ",
                                                 scale,
                                                 " is not representable in the scale dtype"));
}

}  // namespace catq::quant_internal
