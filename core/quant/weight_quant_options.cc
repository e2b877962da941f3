#include "core/quant/weight_quant_options.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace catq {

absl::Status WeightQuantOptions::Validate() const {
  if (bits < 2 || bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("bits: ", bits, " is outside [2, 8]"));
  }
  if (group_size != kPerChannelGroupSize && group_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "group_size: ", group_size, " must be -1 (per output channel) or a positive count"));
  }
  return absl::OkStatus();
}

int64_t NumGroups(int64_t in, int group_size) {
  if (group_size <= 0) return 1;
  return (in + group_size - 1) / group_size;
}

ColumnRange GroupColumns(int64_t group, int64_t in, int group_size) {
  if (group_size <= 0) return {0, in};
  const int64_t begin = group * group_size;
  return {begin, std::min<int64_t>(begin + group_size, in)};
}

int64_t GroupOfColumn(int64_t column, int group_size) {
  return group_size <= 0 ? 0 : column / group_size;
}

}  // namespace catq
