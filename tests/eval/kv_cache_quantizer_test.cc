// KvCacheQuantizer (core/eval/kv_cache_quantizer.h): the per-(token, head)
// round trip against the grid of the rotated vector and against a dense
// Hadamard reference, the off switch, and its errors.
#include "core/eval/kv_cache_quantizer.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/model/gaussian.h"
#include "core/quant/activation_quant.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

// [tokens, heads * head_dim] of N(0, 1) values, with channel 1 of every head
// an outlier 20 times larger (what the rotation is for).
RowMatrixXf KeysWithOutliers(int64_t tokens, int64_t heads, int64_t head_dim, uint64_t seed) {
  GaussianGenerator gen(seed);
  RowMatrixXf x(tokens, heads * head_dim);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      x(t, j) = static_cast<float>(gen.Normal() * (j % head_dim == 1 ? 20.0 : 1.0));
    }
  }
  return x;
}

KvCacheQuantizer MakeQuantizer(int64_t head_dim, int bits, bool hadamard) {
  KvCacheQuantizerOptions options;
  options.bits = bits;
  options.hadamard = hadamard;
  options.mixing_seed = 7;
  absl::StatusOr<KvCacheQuantizer> quantizer = KvCacheQuantizer::Create(head_dim, options);
  EXPECT_OK(quantizer);
  return *std::move(quantizer);
}

double MeanSquaredError(const RowMatrixXf& a, const RowMatrixXf& b) {
  return (a - b).cast<double>().squaredNorm() / static_cast<double>(a.size());
}

// head_dim: powers of two (the FWHT alone) and others (H_(2^a) (x) Q_q with a
// Hadamard Q_12, or a random Q_3).
class KvCacheQuantizerTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(KvCacheQuantizerTest, RoundTripIsWithinHalfAStepOfTheRotatedGrid) {
  const int64_t head_dim = GetParam();
  for (int bits : {4, 8}) {
    const KvCacheQuantizer quantizer = MakeQuantizer(head_dim, bits, /*hadamard=*/true);
    ASSERT_NE(quantizer.mixing(), nullptr);
    const Eigen::MatrixXd h = quantizer.mixing()->Dense();
    const RowMatrixXf x = KeysWithOutliers(9, 3, head_dim, 100 + head_dim);
    RowMatrixXf q = x;
    ASSERT_OK(quantizer.FakeQuantizeHeads(q));
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
      for (int64_t g = 0; g < 3; ++g) {
        const Eigen::VectorXd y =
            h * x.row(t).segment(g * head_dim, head_dim).transpose().cast<double>();
        const Eigen::VectorXd y_hat =
            h * q.row(t).segment(g * head_dim, head_dim).transpose().cast<double>();
        const double range = std::max(y.maxCoeff(), 0.0) - std::min(y.minCoeff(), 0.0);
        const double step = range / ((1 << bits) - 1);
        // The rotated vector of the result is on the grid of the rotated
        // input, within half a step of it (plus float rounding).
        EXPECT_LE((y_hat - y).cwiseAbs().maxCoeff(), 0.5 * step + 1e-5 * range)
            << "head_dim " << head_dim << ", bits " << bits << ", token " << t << ", head " << g;
        // Not vacuous: the grid moved the values.
        EXPECT_GT((y_hat - y).cwiseAbs().maxCoeff(), 1e-3 * step);
      }
    }
  }
}

TEST_P(KvCacheQuantizerTest, EqualsADenseHadamardReference) {
  const int64_t head_dim = GetParam();
  const KvCacheQuantizer quantizer = MakeQuantizer(head_dim, 4, /*hadamard=*/true);
  const Eigen::MatrixXd h = quantizer.mixing()->Dense();
  // H is orthogonal (normalized), so rotating back is H^T.
  EXPECT_LT(
      (h * h.transpose() - Eigen::MatrixXd::Identity(head_dim, head_dim)).cwiseAbs().maxCoeff(),
      1e-12);
  const RowMatrixXf x = KeysWithOutliers(11, 2, head_dim, 200 + head_dim);
  RowMatrixXf fast = x;
  ASSERT_OK(quantizer.FakeQuantizeHeads(fast));
  RowMatrixXf reference = x;
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    for (int64_t g = 0; g < 2; ++g) {
      Eigen::VectorXf y =
          (h * x.row(t).segment(g * head_dim, head_dim).transpose().cast<double>()).cast<float>();
      FakeQuantizeTokenAsymmetric(absl::MakeSpan(y.data(), static_cast<size_t>(y.size())), 4);
      reference.row(t).segment(g * head_dim, head_dim) =
          (h.transpose() * y.cast<double>()).cast<float>().transpose();
    }
  }
  EXPECT_LT((fast - reference).cwiseAbs().maxCoeff(), 1e-4f * x.cwiseAbs().maxCoeff());
}

INSTANTIATE_TEST_SUITE_P(HeadDims, KvCacheQuantizerTest, ::testing::Values(8, 64, 12, 6),
                         [](const ::testing::TestParamInfo<int64_t>& info) {
                           return "HeadDim" + std::to_string(info.param);
                         });

// A Hadamard (FWHT, or H_(2^a) (x) a Hadamard Q_12) spreads an outlier
// channel evenly over the head, so the per-head range and the error shrink.
// (A random Q_q, as for head_dim 6, promises nothing of the kind.)
TEST(KvCacheQuantizer, HadamardLowersTheErrorOfOutlierHeads) {
  for (int64_t head_dim : {8, 64, 12}) {
    const RowMatrixXf x = KeysWithOutliers(32, 4, head_dim, 300 + head_dim);
    RowMatrixXf rotated = x;
    RowMatrixXf plain = x;
    ASSERT_OK(MakeQuantizer(head_dim, 4, true).FakeQuantizeHeads(rotated));
    ASSERT_OK(MakeQuantizer(head_dim, 4, false).FakeQuantizeHeads(plain));
    EXPECT_LT(MeanSquaredError(rotated, x), 0.8 * MeanSquaredError(plain, x)) << head_dim;
  }
}

TEST(KvCacheQuantizer, WithoutHadamardIsThePerHeadActivationGrid) {
  const KvCacheQuantizer quantizer = MakeQuantizer(8, 4, /*hadamard=*/false);
  EXPECT_EQ(quantizer.mixing(), nullptr);
  const RowMatrixXf x = KeysWithOutliers(5, 3, 8, 1);
  RowMatrixXf q = x;
  ASSERT_OK(quantizer.FakeQuantizeHeads(q));
  RowMatrixXf expected = x;
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    for (int g = 0; g < 3; ++g)
      FakeQuantizeTokenAsymmetric(absl::MakeSpan(&expected(t, g * 8), 8), 4);
  }
  EXPECT_EQ(q, expected);
}

TEST(KvCacheQuantizer, SixteenBitsLeavesEveryBit) {
  for (bool hadamard : {true, false}) {
    KvCacheQuantizer quantizer = MakeQuantizer(8, kFloatKvCacheBits, hadamard);
    EXPECT_EQ(quantizer.mixing(), nullptr);
    const RowMatrixXf x = KeysWithOutliers(5, 2, 8, 2);
    RowMatrixXf keys = x;
    RowMatrixXf values = 2.0f * x;
    ASSERT_OK(quantizer.OnKeysValues({}, keys, values));
    EXPECT_EQ(keys, x);
    EXPECT_EQ(values, 2.0f * x);
  }
}

TEST(KvCacheQuantizer, StridedViewsEqualContiguousRows) {
  const KvCacheQuantizer quantizer = MakeQuantizer(8, 4, true);
  RowMatrixXf wide = KeysWithOutliers(6, 5, 8, 3);
  RowMatrixXf contiguous = wide.leftCols(24);
  ASSERT_OK(quantizer.FakeQuantizeHeads(contiguous));
  ASSERT_OK(quantizer.FakeQuantizeHeads(wide.leftCols(24)));  // Outer stride 40.
  EXPECT_EQ(RowMatrixXf(wide.leftCols(24)), contiguous);
}

TEST(KvCacheQuantizer, KeysAndValuesAreBothQuantized) {
  KvCacheQuantizer quantizer = MakeQuantizer(8, 4, true);
  const RowMatrixXf x = KeysWithOutliers(4, 2, 8, 4);
  RowMatrixXf keys = x;
  RowMatrixXf values = x;
  RowMatrixXf expected = x;
  ASSERT_OK(quantizer.FakeQuantizeHeads(expected));
  ASSERT_OK(quantizer.OnKeysValues({}, keys, values));
  EXPECT_EQ(keys, expected);
  EXPECT_EQ(values, expected);
  EXPECT_NE(keys, x);
}

TEST(KvCacheQuantizer, Errors) {
  KvCacheQuantizerOptions options;
  options.bits = 9;
  EXPECT_STATUS(KvCacheQuantizer::Create(8, options), absl::StatusCode::kInvalidArgument,
                "kv_cache_bits: 9 must be in [2, 8], or 16");
  options.bits = 4;
  EXPECT_STATUS(KvCacheQuantizer::Create(0, options), absl::StatusCode::kInvalidArgument,
                "head_dim: 0 must be >= 1");
  KvCacheQuantizer quantizer = MakeQuantizer(8, 4, true);
  RowMatrixXf odd(3, 12);
  odd.setOnes();
  EXPECT_STATUS(quantizer.FakeQuantizeHeads(odd), absl::StatusCode::kInvalidArgument,
                "K/V rows are 12 wide, not a multiple of head_dim 8");
  RowMatrixXf keys(3, 16), values(3, 12);
  keys.setOnes();
  values.setOnes();
  KvCacheCall call;
  call.layer = 3;
  EXPECT_STATUS(quantizer.OnKeysValues(call, keys, values), absl::StatusCode::kInvalidArgument,
                "layer 3 K/V cache: K/V rows are 12 wide");
}

}  // namespace
}  // namespace catq
