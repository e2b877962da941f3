#include "core/quant/rtn.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/tensor/half.h"
#include "tests/quant/quant_test_util.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

WeightQuantOptions Options(int bits, int group_size, bool symmetric) {
  WeightQuantOptions options;
  options.bits = bits;
  options.group_size = group_size;
  options.symmetric = symmetric;
  return options;
}

RowMatrixXf Row(std::vector<float> values) {
  RowMatrixXf w(1, static_cast<Eigen::Index>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) w(0, static_cast<Eigen::Index>(i)) = values[i];
  return w;
}

// amax = 7 gives scale 1 on the 4-bit symmetric grid, so q = round(w) and
// every x.5 is a tie: ties go to the even neighbour.
TEST(QuantizeRtn, SymmetricTiesRoundToEven) {
  auto qw = QuantizeRtn(Row({7.0f, 3.5f, 2.5f, 1.5f, 0.5f, -0.5f, -1.5f, -2.5f, -3.5f}),
                        Options(4, kPerChannelGroupSize, true));
  ASSERT_OK(qw);
  EXPECT_EQ(qw->scales, std::vector<float>{1.0f});
  EXPECT_EQ(qw->q, (std::vector<int8_t>{7, 4, 2, 2, 0, 0, -2, -2, -4}));
  EXPECT_TRUE(qw->zeros.empty());
}

// Range [-7.5, 7.5] on 4 bits: scale 1, zero_u = round(7.5) = 8 (signed 0).
// -7.5 ties to -8 (q_u 0); 7.5 ties to 8, q_u 16 clamps to 15.
TEST(QuantizeRtn, AsymmetricTiesRoundToEvenAndClampAtTop) {
  auto qw = QuantizeRtn(Row({-7.5f, 7.5f, 0.5f, 1.5f, -2.5f, 2.5f}), Options(4, -1, false));
  ASSERT_OK(qw);
  EXPECT_EQ(qw->scales, std::vector<float>{1.0f});
  EXPECT_EQ(qw->zeros, std::vector<int8_t>{0});
  EXPECT_EQ(qw->q, (std::vector<int8_t>{-8, 7, 0, 2, -2, 2}));
}

// All positive: the range starts at 0, scale = 3.75 / 15 = 0.25, zero_u = 0,
// stored signed as zero = -8 and q = q_u - 8.
TEST(QuantizeRtn, AsymmetricAllPositiveRowHasZeroPointAtBottom) {
  auto qw = QuantizeRtn(Row({1.25f, 2.5f, 3.75f, 0.0f}), Options(4, -1, false));
  ASSERT_OK(qw);
  EXPECT_EQ(qw->scales, std::vector<float>{0.25f});
  EXPECT_EQ(qw->zeros, std::vector<int8_t>{-8});
  EXPECT_EQ(qw->q, (std::vector<int8_t>{5 - 8, 10 - 8, 15 - 8, 0 - 8}));
  EXPECT_EQ(Dequantize(*qw), Row({1.25f, 2.5f, 3.75f, 0.0f}));
}

// All negative: the range ends at 0, zero_u = 15 (signed 7).
TEST(QuantizeRtn, AsymmetricAllNegativeRowHasZeroPointAtTop) {
  auto qw = QuantizeRtn(Row({-3.75f, -1.25f}), Options(4, -1, false));
  ASSERT_OK(qw);
  EXPECT_EQ(qw->scales, std::vector<float>{0.25f});
  EXPECT_EQ(qw->zeros, std::vector<int8_t>{7});
  EXPECT_EQ(qw->q, (std::vector<int8_t>{0 - 8, 10 - 8}));
}

TEST(QuantizeRtn, AllZeroGroupHasScaleZeroAndDequantizesToZero) {
  for (bool symmetric : {true, false}) {
    RowMatrixXf w = RowMatrixXf::Zero(2, 12);
    w.row(1).tail(4) << 1.0f, -2.0f, 3.0f, -4.0f;  // Row 1, group 2 only.
    auto qw = QuantizeRtn(w, Options(4, 4, symmetric));
    ASSERT_OK(qw);
    EXPECT_EQ(qw->scales[0], 0.0f);
    EXPECT_EQ(qw->scales[4], 0.0f);
    EXPECT_GT(qw->scales[5], 0.0f);
    for (int64_t c = 0; c < 8; ++c) EXPECT_EQ(qw->q[12 + c], 0) << c;
    if (!symmetric) {
      EXPECT_EQ(qw->zeros[0], 0);
    }
    RowMatrixXf back = Dequantize(*qw);
    EXPECT_TRUE((back.row(0).array() == 0.0f).all()) << "symmetric " << symmetric;
    EXPECT_TRUE((back.row(1).head(8).array() == 0.0f).all()) << "symmetric " << symmetric;
  }
}

TEST(QuantizeRtn, OneHugeOutlierOnlyCoarsensItsOwnGroup) {
  RowMatrixXf w = testing::RandomWeights(1, 64, 3) * 0.01f;
  w(0, 10) = 1e4f;
  auto qw = QuantizeRtn(w, Options(4, 16, true));
  ASSERT_OK(qw);
  EXPECT_EQ(qw->scales[0], 1e4f / 7.0f);
  EXPECT_EQ(qw->q[10], 7);
  for (int64_t c = 0; c < 16; ++c) {
    if (c != 10) {
      EXPECT_EQ(qw->q[c], 0) << c;
    }
  }
  EXPECT_LT(qw->scales[1], 1.0f);  // Groups 1..3 keep a fine grid.
  EXPECT_NEAR(Dequantize(*qw)(0, 10), 1e4f, 2e-3f);
}

TEST(QuantizeRtn, HugeValuesOfOppositeSignStayFinite) {
  const float big = 3e38f;
  auto qw = QuantizeRtn(Row({-big, big, 1.0f}), Options(4, -1, false));
  ASSERT_OK(qw);
  EXPECT_TRUE(std::isfinite(qw->scales[0]));
  EXPECT_TRUE(Dequantize(*qw).allFinite());
  auto sym = QuantizeRtn(Row({-big, big, 1.0f}), Options(4, -1, true));
  ASSERT_OK(sym);
  EXPECT_TRUE(Dequantize(*sym).allFinite());
}

TEST(QuantizeRtn, SmallerLastGroupUsesOnlyItsColumns) {
  RowMatrixXf w = RowMatrixXf::Constant(1, 172, 0.5f);
  w(0, 0) = 100.0f;
  w(0, 150) = -7.0f;
  auto qw = QuantizeRtn(w, Options(4, 128, true));
  ASSERT_OK(qw);
  ASSERT_EQ(qw->groups(), 2);
  EXPECT_EQ(qw->scales[0], 100.0f / 7.0f);
  EXPECT_EQ(qw->scales[1], 1.0f);  // amax of columns [128, 172) is 7.
}

TEST(QuantizeRtn, RejectsNanAndInfNamingRowAndColumn) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  RowMatrixXf w = testing::RandomWeights(5, 20, 1);
  w(3, 17) = nan;
  EXPECT_STATUS(QuantizeRtn(w, WeightQuantOptions()), absl::StatusCode::kInvalidArgument,
                "weight[3, 17] is NaN");
  w(3, 17) = 0.0f;
  w(0, 1) = inf;
  EXPECT_STATUS(QuantizeRtn(w, Options(4, 8, false)), absl::StatusCode::kInvalidArgument,
                "weight[0, 1] is +Inf");
  w(0, 1) = 0.0f;
  w(4, 19) = -inf;
  EXPECT_STATUS(QuantizeRtn(w, WeightQuantOptions()), absl::StatusCode::kInvalidArgument,
                "weight[4, 19] is -Inf");
}

TEST(QuantizeRtn, RejectsBadOptionsAndEmptyMatrix) {
  EXPECT_STATUS(QuantizeRtn(Row({1.0f}), Options(9, -1, true)), absl::StatusCode::kInvalidArgument,
                "options: bits: 9 is outside [2, 8]");
  EXPECT_STATUS(QuantizeRtn(RowMatrixXf(0, 4), WeightQuantOptions()),
                absl::StatusCode::kInvalidArgument, "weight: shape [0, 4] is empty");
}

TEST(QuantizeRtn, ColumnMajorInputGivesTheSameResult) {
  RowMatrixXf w = testing::RandomWeights(7, 40, 11);
  Eigen::MatrixXf column_major = w;
  auto a = QuantizeRtn(w, Options(3, 16, false));
  auto b = QuantizeRtn(column_major, Options(3, 16, false));
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(a->q, b->q);
  EXPECT_EQ(a->scales, b->scales);
  EXPECT_EQ(a->zeros, b->zeros);
}

// Every element is within half a step of its value, and levels stay on the
// grid: symmetric never uses -2^(b-1).
TEST(QuantizeRtn, ErrorIsAtMostHalfAStepForEveryGrid) {
  const RowMatrixXf w = testing::RandomWeights(12, 172, 5);
  for (int bits = 2; bits <= 8; ++bits) {
    for (bool symmetric : {true, false}) {
      for (int group_size : {kPerChannelGroupSize, 128, 64, 7}) {
        SCOPED_TRACE(::testing::Message()
                     << "bits " << bits << " symmetric " << symmetric << " group " << group_size);
        auto qw = QuantizeRtn(w, Options(bits, group_size, symmetric));
        ASSERT_OK(qw);
        ASSERT_OK(ValidateQuantizedWeight(*qw));
        const RowMatrixXf back = Dequantize(*qw);
        const int64_t groups = qw->groups();
        const int max_level = (1 << (bits - 1)) - 1;
        int64_t failures = 0;
        for (int64_t r = 0; r < w.rows(); ++r) {
          for (int64_t c = 0; c < w.cols(); ++c) {
            const float scale = qw->scales[r * groups + GroupOfColumn(c, group_size)];
            const float bound = 0.5f * scale * (1.0f + 1e-5f) + 1e-6f * std::fabs(w(r, c));
            if (std::fabs(w(r, c) - back(r, c)) > bound) ++failures;
            if (symmetric && std::abs(qw->q[r * w.cols() + c]) > max_level) ++failures;
          }
        }
        EXPECT_EQ(failures, 0);
      }
    }
  }
}

float RoundToHalf(float v) { return HalfToFloat(FloatToHalf(v)); }

// With float16 scale rounding, every stored scale is a float16 value and the
// levels are computed from it: dequantizing with the stored scales keeps each
// element within half a step, for both grids.
TEST(QuantizeRtn, ScalesRoundedToHalfKeepHalfAStep) {
  const RowMatrixXf w = testing::RandomWeights(16, 100, 7);
  for (bool symmetric : {true, false}) {
    auto qw = QuantizeRtn(w, Options(4, 32, symmetric), RoundToHalf);
    ASSERT_OK(qw);
    for (float s : qw->scales) EXPECT_EQ(s, RoundToHalf(s));
    const RowMatrixXf back = Dequantize(*qw);
    for (Eigen::Index r = 0; r < w.rows(); ++r) {
      for (Eigen::Index c = 0; c < w.cols(); ++c) {
        const float step = qw->scales[r * qw->groups() + c / 32];
        EXPECT_LE(std::fabs(back(r, c) - w(r, c)), 0.5f * step * (1 + 1e-5f)) << r << "," << c;
      }
    }
  }
}

TEST(QuantizeRtn, ScaleOverflowingHalfNamesRowAndGroup) {
  RowMatrixXf w = RowMatrixXf::Constant(2, 8, 1.0f);
  w(1, 5) = 1e6f;
  EXPECT_STATUS(QuantizeRtn(w, Options(4, 4, true), RoundToHalf),
                absl::StatusCode::kInvalidArgument, "weight row 1 group 1: scale inf");
}

}  // namespace
}  // namespace catq
