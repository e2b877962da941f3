#include "core/quant/quantized_weight.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/util/status_matchers.h"

namespace catq {
namespace {

// 2 rows x 6 columns, groups of 4: [0, 4) and the smaller [4, 6).
QuantizedWeight SmallAsymmetric() {
  QuantizedWeight qw;
  qw.rows = 2;
  qw.cols = 6;
  qw.options.bits = 4;
  qw.options.group_size = 4;
  qw.options.symmetric = false;
  qw.q = {-8, -1, 0, 7, 3,  -3,  //
          1,  2,  3, 4, -8, 7};
  qw.scales = {0.5f, 2.0f,  //
               0.25f, 1.0f};
  qw.zeros = {-1, 0,  //
              4, -8};
  return qw;
}

TEST(Dequantize, AppliesZeroAndScaleOfEachGroup) {
  QuantizedWeight qw = SmallAsymmetric();
  ASSERT_OK(ValidateQuantizedWeight(qw));
  RowMatrixXf w = Dequantize(qw);
  RowMatrixXf expected(2, 6);
  // (q - zero) * scale, group 0 = columns 0..3, group 1 = columns 4..5.
  expected << (-8 + 1) * 0.5f, (-1 + 1) * 0.5f, (0 + 1) * 0.5f, (7 + 1) * 0.5f, 3 * 2.0f, -3 * 2.0f,
      (1 - 4) * 0.25f, (2 - 4) * 0.25f, (3 - 4) * 0.25f, (4 - 4) * 0.25f, (-8 + 8) * 1.0f,
      (7 + 8) * 1.0f;
  EXPECT_EQ(w, expected);
}

TEST(Dequantize, SymmetricHasNoZeroPoint) {
  QuantizedWeight qw;
  qw.rows = 1;
  qw.cols = 3;
  qw.q = {-7, 0, 7};
  qw.scales = {0.125f};
  ASSERT_OK(ValidateQuantizedWeight(qw));
  RowMatrixXf w = Dequantize(qw);
  EXPECT_EQ(w(0, 0), -0.875f);
  EXPECT_EQ(w(0, 1), 0.0f);
  EXPECT_EQ(w(0, 2), 0.875f);
}

TEST(ValidateQuantizedWeight, NamesArrayAndExpectedSize) {
  QuantizedWeight qw = SmallAsymmetric();
  qw.scales.pop_back();
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "scales: expected 4 values ([2, 2]), got 3");
  qw = SmallAsymmetric();
  qw.q.push_back(0);
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "q: expected 12 values ([2, 6]), got 13");
  qw = SmallAsymmetric();
  qw.zeros.clear();
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "zeros: expected 4 values ([2, 2]), got 0");
  qw = SmallAsymmetric();
  qw.options.symmetric = true;
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "zeros: symmetric weights have no zero points, got 4");
}

TEST(ValidateQuantizedWeight, NamesLevelOutsideBits) {
  QuantizedWeight qw = SmallAsymmetric();
  qw.q[1 * 6 + 2] = 8;
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "q[1, 2] is 8, outside [-8, 7] for 4 bits");
  qw = SmallAsymmetric();
  qw.options.bits = 3;
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "q[0, 0] is -8, outside [-4, 3] for 3 bits");
  qw = SmallAsymmetric();
  qw.zeros[3] = -9;
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "zeros[1, 1] is -9, outside [-8, 7] for 4 bits");
}

TEST(ValidateQuantizedWeight, RejectsBadScalesShapeAndOptions) {
  QuantizedWeight qw = SmallAsymmetric();
  qw.scales[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "scales[0, 1] is nan, expected finite and >= 0");
  qw = SmallAsymmetric();
  qw.scales[2] = -1.0f;
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "scales[1, 0] is -1");
  qw = SmallAsymmetric();
  qw.rows = 0;
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument, "shape: [0, 6]");
  qw = SmallAsymmetric();
  qw.options.group_size = 0;
  EXPECT_STATUS(ValidateQuantizedWeight(qw), absl::StatusCode::kInvalidArgument,
                "options: group_size: 0");
}

TEST(QuantizedWeight, GroupsFollowOptions) {
  QuantizedWeight qw = SmallAsymmetric();
  EXPECT_EQ(qw.groups(), 2);
  qw.options.group_size = kPerChannelGroupSize;
  EXPECT_EQ(qw.groups(), 1);
}

}  // namespace
}  // namespace catq
