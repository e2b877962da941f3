#include "core/model/rope_permutation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/model/gaussian.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

using ::testing::ElementsAre;

std::vector<float> RandomValues(size_t n, uint64_t seed) {
  GaussianGenerator gen(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(gen.Normal());
  return v;
}

// llama2.c's RoPE: rotates adjacent pairs (2i, 2i+1) of each head by
// pos * theta^(-2i/hd).
std::vector<double> InterleavedRope(const std::vector<double>& x, int64_t heads, int64_t hd,
                                    int64_t pos, double theta) {
  std::vector<double> out = x;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < hd / 2; ++i) {
      const double angle = pos * std::pow(theta, -2.0 * i / hd);
      const size_t a = h * hd + 2 * i, b = a + 1;
      out[a] = x[a] * std::cos(angle) - x[b] * std::sin(angle);
      out[b] = x[a] * std::sin(angle) + x[b] * std::cos(angle);
    }
  }
  return out;
}

// Hugging Face's RoPE: rotates (i, i + hd/2) of each head by the same angles.
std::vector<double> RotateHalfRope(const std::vector<double>& x, int64_t heads, int64_t hd,
                                   int64_t pos, double theta) {
  std::vector<double> out = x;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < hd / 2; ++i) {
      const double angle = pos * std::pow(theta, -2.0 * i / hd);
      const size_t a = h * hd + i, b = a + hd / 2;
      out[a] = x[a] * std::cos(angle) - x[b] * std::sin(angle);
      out[b] = x[b] * std::cos(angle) + x[a] * std::sin(angle);
    }
  }
  return out;
}

std::vector<double> MatVec(const std::vector<float>& w, const std::vector<float>& x) {
  const size_t cols = x.size();
  std::vector<double> y(w.size() / cols, 0.0);
  for (size_t r = 0; r < y.size(); ++r) {
    for (size_t c = 0; c < cols; ++c) y[r] += double{w[r * cols + c]} * x[c];
  }
  return y;
}

TEST(RopePermutation, HandMadeMatrixGivesDocumentedRowOrder) {
  // Two heads of size 4, two columns; row r holds (10r, 10r + 1).
  std::vector<float> w;
  for (int r = 0; r < 8; ++r) {
    w.push_back(10.0f * r);
    w.push_back(10.0f * r + 1);
  }
  absl::StatusOr<std::vector<float>> p = PermuteRowsForRotateHalf(w, 2, 4, 2);
  ASSERT_OK(p);
  // Per head [r0 r1 r2 r3] -> [r0 r2 r1 r3].
  EXPECT_THAT(*p, ElementsAre(0, 1, 20, 21, 10, 11, 30, 31, 40, 41, 60, 61, 50, 51, 70, 71));
  EXPECT_EQ(RotateHalfSourceRow(1, 4), 2);
  EXPECT_EQ(RotateHalfSourceRow(2, 4), 1);
  EXPECT_EQ(RotateHalfSourceRow(6, 4), 5);
  // head_dim 8: permuted rows 0..7 take rows 0 2 4 6 1 3 5 7.
  std::vector<int64_t> order;
  for (int64_t r = 0; r < 8; ++r) order.push_back(RotateHalfSourceRow(r, 8));
  EXPECT_THAT(order, ElementsAre(0, 2, 4, 6, 1, 3, 5, 7));
}

TEST(RopePermutation, InverseUndoesPermute) {
  const std::vector<float> w = RandomValues(4 * 16 * 5, 7);
  absl::StatusOr<std::vector<float>> p = PermuteRowsForRotateHalf(w, 4, 16, 5);
  ASSERT_OK(p);
  EXPECT_NE(*p, w);
  absl::StatusOr<std::vector<float>> back = UnpermuteRowsFromRotateHalf(*p, 4, 16, 5);
  ASSERT_OK(back);
  EXPECT_EQ(*back, w);
}

TEST(RopePermutation, BadArgumentsAreRefused) {
  const std::vector<float> w(24);
  EXPECT_STATUS(PermuteRowsForRotateHalf(w, 2, 3, 4), absl::StatusCode::kInvalidArgument,
                "head_dim must be even");
  EXPECT_STATUS(PermuteRowsForRotateHalf(w, 2, 4, 4), absl::StatusCode::kInvalidArgument,
                "24 values do not make");
  EXPECT_STATUS(UnpermuteRowsFromRotateHalf(w, 0, 4, 6), absl::StatusCode::kInvalidArgument,
                "do not make");
}

// The point of the permutation: rotate-half RoPE on the permuted projection is
// the permuted interleaved RoPE, and attention scores are the same.
TEST(RopePermutation, RotateHalfOnPermutedRowsMatchesInterleavedRope) {
  constexpr int64_t kHeads = 2, kHd = 8, kCols = 6, kPos = 5;
  constexpr double kTheta = 10000.0;
  const std::vector<float> wq = RandomValues(kHeads * kHd * kCols, 1);
  const std::vector<float> wk = RandomValues(kHeads * kHd * kCols, 2);
  const std::vector<float> x = RandomValues(kCols, 3);
  const std::vector<float> y = RandomValues(kCols, 4);
  absl::StatusOr<std::vector<float>> wq_hf = PermuteRowsForRotateHalf(wq, kHeads, kHd, kCols);
  absl::StatusOr<std::vector<float>> wk_hf = PermuteRowsForRotateHalf(wk, kHeads, kHd, kCols);
  ASSERT_OK(wq_hf);
  ASSERT_OK(wk_hf);

  const std::vector<double> q_l = InterleavedRope(MatVec(wq, x), kHeads, kHd, kPos, kTheta);
  const std::vector<double> q_hf = RotateHalfRope(MatVec(*wq_hf, x), kHeads, kHd, kPos, kTheta);
  for (int64_t r = 0; r < kHeads * kHd; ++r) {
    EXPECT_NEAR(q_hf[r], q_l[RotateHalfSourceRow(r, kHd)], 1e-9) << "row " << r;
  }
  // Scores of query position kPos against key position 2, per head.
  const std::vector<double> k_l = InterleavedRope(MatVec(wk, y), kHeads, kHd, 2, kTheta);
  const std::vector<double> k_hf = RotateHalfRope(MatVec(*wk_hf, y), kHeads, kHd, 2, kTheta);
  for (int64_t h = 0; h < kHeads; ++h) {
    double score_l = 0, score_hf = 0;
    for (int64_t i = h * kHd; i < (h + 1) * kHd; ++i) {
      score_l += q_l[i] * k_l[i];
      score_hf += q_hf[i] * k_hf[i];
    }
    EXPECT_NEAR(score_hf, score_l, 1e-9) << "head " << h;
  }
}

}  // namespace
}  // namespace catq
