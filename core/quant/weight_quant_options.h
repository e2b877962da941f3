// File: core/quant/weight_quant_options.h
//
// How a weight matrix [out, in] is put on an integer grid: the bit width, the
// group size along the input dimension and whether the grid is symmetric. The
// grids themselves are defined in core/quant/rtn.h (architecture.md section 4).
//
//   WeightQuantOptions options;
//   options.group_size = 128;
//   CATQ_RETURN_IF_ERROR(options.Validate());
//   int64_t groups = NumGroups(/*in=*/172, options.group_size);  // 2: [0,128), [128,172)
//
// Thread-safety: plain value types and pure functions; safe to share read-only.
#ifndef CATQ_CORE_QUANT_WEIGHT_QUANT_OPTIONS_H_
#define CATQ_CORE_QUANT_WEIGHT_QUANT_OPTIONS_H_

#include <cstdint>

#include "absl/status/status.h"

namespace catq {

// The group size meaning "one group per output row" (per output channel).
inline constexpr int kPerChannelGroupSize = -1;

struct WeightQuantOptions {
  // Bits per weight, in [2, 8]. Default 4. The int4 packers accept at most 4.
  int bits = 4;
  // Input columns per scale: kPerChannelGroupSize (-1, the default) for one
  // group per output row, else a positive count. A group size that does not
  // divide the input width gives a smaller last group (in = 172, G = 128:
  // groups [0, 128) and [128, 172)). A group size above the width gives one group.
  int group_size = kPerChannelGroupSize;
  // true (default): q in [-(2^(b-1)-1), 2^(b-1)-1], no zero point.
  // false: an integer zero point per group (compressed-tensors convention).
  bool symmetric = true;

  // WeightQuantOptions::Validate()
  //
  // OK when every field is in range; else InvalidArgument naming the field,
  // e.g. "bits: 9 is outside [2, 8]".
  absl::Status Validate() const;
};

// NumGroups
//
// The number of groups of a row of `in` elements: 1 per channel, else
// ceil(in / group_size). REQUIRES: in > 0 and group_size valid.
int64_t NumGroups(int64_t in, int group_size);

// ColumnRange: the input columns [begin, end) of one group.
struct ColumnRange {
  int64_t begin = 0;
  int64_t end = 0;
};

// GroupColumns
//
// The columns group `group` covers in a row of `in` elements:
// [group * G, min((group + 1) * G, in)), or [0, in) per channel.
// REQUIRES: 0 <= group < NumGroups(in, group_size).
ColumnRange GroupColumns(int64_t group, int64_t in, int group_size);

// GroupOfColumn
//
// The group that input column `column` belongs to: column / G, or 0 per
// channel. This is GPTQ's g_idx without activation reordering.
int64_t GroupOfColumn(int64_t column, int group_size);

}  // namespace catq

#endif  // CATQ_CORE_QUANT_WEIGHT_QUANT_OPTIONS_H_
