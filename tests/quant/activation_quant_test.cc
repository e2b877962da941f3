#include "core/quant/activation_quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/quant/rtn.h"
#include "tests/quant/quant_test_util.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

std::vector<float> Asymmetric(std::vector<float> x, int bits) {
  FakeQuantizeTokenAsymmetric(absl::MakeSpan(x), bits);
  return x;
}

std::vector<float> Symmetric(std::vector<float> x, int bits) {
  FakeQuantizeTokenSymmetric(absl::MakeSpan(x), bits);
  return x;
}

// Range [-1.5, 6] on 4 bits: scale 7.5 / 15 = 0.5, zero = round(3) = 3.
// 1.25 / 0.5 = 2.5 and 0.25 / 0.5 = 0.5 are ties that go to the even level;
// 0.75 / 0.5 = 1.5 goes up to 2.
TEST(FakeQuantizeTokenAsymmetric, KnownValuesWithTiesToEven) {
  EXPECT_EQ(Asymmetric({-1.5f, 0.0f, 6.0f, 1.25f, 0.75f, 0.25f}, 4),
            (std::vector<float>{-1.5f, 0.0f, 6.0f, 1.0f, 1.0f, 0.0f}));
}

// Range [-3.75, 3.75]: scale 0.5, zero = round(7.5) = 8; 3.75 / 0.5 = 7.5
// rounds to 8, q = 16 clamps to 15, value (15 - 8) * 0.5 = 3.5.
TEST(FakeQuantizeTokenAsymmetric, TopTieClampsToLastLevel) {
  EXPECT_EQ(Asymmetric({-3.75f, 3.75f}, 4), (std::vector<float>{-4.0f, 3.5f}));
}

// All positive: the range starts at 0, so zero = 0 and 0 stays exact.
TEST(FakeQuantizeTokenAsymmetric, AllPositiveTokenKeepsZeroExact) {
  EXPECT_EQ(Asymmetric({0.0f, 0.5f, 3.75f, 7.5f}, 4), (std::vector<float>{0.0f, 0.5f, 4.0f, 7.5f}));
}

TEST(FakeQuantizeTokenAsymmetric, AllZeroTokenStaysZero) {
  EXPECT_EQ(Asymmetric({0.0f, 0.0f, 0.0f}, 4), (std::vector<float>{0.0f, 0.0f, 0.0f}));
  EXPECT_EQ(Symmetric({0.0f, -0.0f}, 8), (std::vector<float>{0.0f, 0.0f}));
}

TEST(FakeQuantizeTokenAsymmetric, NonFiniteEntriesPassThroughAndDoNotSetTheRange) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = Asymmetric({nan, -1.5f, inf, 6.0f, 1.25f}, 4);
  EXPECT_TRUE(std::isnan(x[0]));
  EXPECT_EQ(x[2], inf);
  EXPECT_EQ(x[1], -1.5f);
  EXPECT_EQ(x[3], 6.0f);
  EXPECT_EQ(x[4], 1.0f);
  std::vector<float> y = Symmetric({nan, 7.0f, 2.5f}, 4);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[2], 2.0f);
}

// amax = 7 on 4 bits gives scale 1; amax = 127 on 8 bits gives scale 1.
TEST(FakeQuantizeTokenSymmetric, KnownValuesWithTiesToEven) {
  EXPECT_EQ(Symmetric({7.0f, -3.5f, 2.5f, 0.5f, -0.5f}, 4),
            (std::vector<float>{7.0f, -4.0f, 2.0f, 0.0f, 0.0f}));
  EXPECT_EQ(Symmetric({127.0f, 0.5f, 1.5f, -126.5f}, 8),
            (std::vector<float>{127.0f, 0.0f, 2.0f, -126.0f}));
}

// The activation and weight quantizers share one grid definition: a token
// fake-quantized equals the dequantized RTN quantization of that token as a
// one-row weight, bit for bit.
TEST(FakeQuantizeToken, MatchesWeightGridsBitForBit) {
  const RowMatrixXf tokens = testing::RandomWeights(8, 96, 21);
  for (int bits = 2; bits <= 8; ++bits) {
    for (bool symmetric : {true, false}) {
      for (int64_t t = 0; t < tokens.rows(); ++t) {
        RowMatrixXf row = tokens.row(t);
        auto qw = QuantizeRtn(row, WeightQuantOptions{bits, kPerChannelGroupSize, symmetric});
        ASSERT_OK(qw);
        const RowMatrixXf expected = Dequantize(*qw);
        std::vector<float> x(row.data(), row.data() + row.size());
        if (symmetric) {
          FakeQuantizeTokenSymmetric(absl::MakeSpan(x), bits);
        } else {
          FakeQuantizeTokenAsymmetric(absl::MakeSpan(x), bits);
        }
        for (int64_t c = 0; c < row.cols(); ++c) {
          ASSERT_EQ(x[c], expected(0, c))
              << "bits " << bits << " symmetric " << symmetric << " token " << t << " column " << c;
        }
      }
    }
  }
}

TEST(FakeQuantizeTokenAsymmetric, ErrorIsAtMostHalfAStep) {
  const RowMatrixXf tokens = testing::RandomWeights(16, 64, 8);
  for (int bits : {2, 4, 8, 16}) {
    for (int64_t t = 0; t < tokens.rows(); ++t) {
      std::vector<float> x(tokens.row(t).data(), tokens.row(t).data() + tokens.cols());
      const float lo = std::fmin(*std::min_element(x.begin(), x.end()), 0.0f);
      const float hi = std::fmax(*std::max_element(x.begin(), x.end()), 0.0f);
      const float scale = (hi - lo) / static_cast<float>((1 << bits) - 1);
      std::vector<float> y = x;
      FakeQuantizeTokenAsymmetric(absl::MakeSpan(y), bits);
      for (size_t i = 0; i < x.size(); ++i) {
        EXPECT_LE(std::fabs(x[i] - y[i]), 0.5f * scale * (1.0f + 1e-4f) + 1e-6f * std::fabs(x[i]))
            << "bits " << bits << " token " << t << " element " << i;
      }
    }
  }
}

// FakeQuantizeTokens quantizes each row as its own token, with the grid
// asked for, and nothing else.
TEST(FakeQuantizeTokens, EachRowIsOneToken) {
  RowMatrixXf x(3, 10);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (Eigen::Index c = 0; c < x.cols(); ++c) x(r, c) = std::sin(1.0f + r * 10 + c) * (r + 1);
  }
  for (bool symmetric : {true, false}) {
    RowMatrixXf expected = x;
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      const absl::Span<float> token(&expected(r, 0), static_cast<size_t>(x.cols()));
      symmetric ? FakeQuantizeTokenSymmetric(token, 4) : FakeQuantizeTokenAsymmetric(token, 4);
    }
    RowMatrixXf got = x;
    FakeQuantizeTokens(got, 4, symmetric);
    EXPECT_TRUE(got == expected) << (symmetric ? "symmetric" : "asymmetric");
  }
}

}  // namespace
}  // namespace catq
