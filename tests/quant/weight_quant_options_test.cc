#include "core/quant/weight_quant_options.h"

#include <gtest/gtest.h>

#include "tests/util/status_matchers.h"

namespace catq {
namespace {

TEST(WeightQuantOptions, DefaultsAreFourBitSymmetricPerChannel) {
  WeightQuantOptions options;
  EXPECT_OK(options.Validate());
  EXPECT_EQ(options.bits, 4);
  EXPECT_EQ(options.group_size, kPerChannelGroupSize);
  EXPECT_TRUE(options.symmetric);
}

TEST(WeightQuantOptions, BitsOutsideTwoToEightNameTheField) {
  for (int bits : {0, 1, 9}) {
    WeightQuantOptions options;
    options.bits = bits;
    EXPECT_STATUS(options.Validate(), absl::StatusCode::kInvalidArgument,
                  "bits: " + std::to_string(bits) + " is outside [2, 8]");
  }
  for (int bits : {2, 8}) {
    WeightQuantOptions options;
    options.bits = bits;
    EXPECT_OK(options.Validate());
  }
}

TEST(WeightQuantOptions, GroupSizeZeroOrBelowMinusOneNameTheField) {
  for (int group_size : {0, -2}) {
    WeightQuantOptions options;
    options.group_size = group_size;
    EXPECT_STATUS(options.Validate(), absl::StatusCode::kInvalidArgument,
                  "group_size: " + std::to_string(group_size) +
                      " must be -1 (per output channel) or a positive count");
  }
  WeightQuantOptions options;
  options.group_size = 1;
  EXPECT_OK(options.Validate());
}

TEST(NumGroups, PerChannelIsOneAndPartialLastGroupCounts) {
  EXPECT_EQ(NumGroups(172, kPerChannelGroupSize), 1);
  EXPECT_EQ(NumGroups(172, 128), 2);
  EXPECT_EQ(NumGroups(172, 64), 3);
  EXPECT_EQ(NumGroups(256, 128), 2);
  EXPECT_EQ(NumGroups(13, 128), 1);
  EXPECT_EQ(NumGroups(1, 1), 1);
}

TEST(GroupColumns, LastGroupIsSmaller) {
  ColumnRange first = GroupColumns(0, 172, 128);
  ColumnRange last = GroupColumns(1, 172, 128);
  EXPECT_EQ(first.begin, 0);
  EXPECT_EQ(first.end, 128);
  EXPECT_EQ(last.begin, 128);
  EXPECT_EQ(last.end, 172);
  ColumnRange whole = GroupColumns(0, 172, kPerChannelGroupSize);
  EXPECT_EQ(whole.begin, 0);
  EXPECT_EQ(whole.end, 172);
  ColumnRange wider = GroupColumns(0, 13, 128);
  EXPECT_EQ(wider.end, 13);
}

TEST(GroupOfColumn, IsColumnOverGroupSizeOrZeroPerChannel) {
  EXPECT_EQ(GroupOfColumn(0, 128), 0);
  EXPECT_EQ(GroupOfColumn(127, 128), 0);
  EXPECT_EQ(GroupOfColumn(128, 128), 1);
  EXPECT_EQ(GroupOfColumn(171, 128), 1);
  EXPECT_EQ(GroupOfColumn(171, kPerChannelGroupSize), 0);
}

}  // namespace
}  // namespace catq
