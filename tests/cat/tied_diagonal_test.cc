// Tests of the tied diagonal solve (core/cat/tied_diagonal.h): the group
// layout of attn_out under grouped-query attention, the tied block CAT k = 1
// optimum (constant within each group, the untied solve when every group has
// one channel, an alignment no other tied diagonal beats), the tied
// SmoothQuant, and the errors that name the bad input.
#include "core/cat/tied_diagonal.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/cat/block_cat.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

// Random SPD d x d whose channel scales span two decades, as activations do.
Eigen::MatrixXd RandomSpd(int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd a(d, 2 * d);
  for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = normal(rng);
  for (int64_t j = 0; j < d; ++j) a.row(j) *= std::pow(10.0, 2.0 * j / (d - 1) - 1);
  return a * a.transpose() / static_cast<double>(2 * d);
}

// A = tr(Sw Sx) / (tr(T Sx T^T) tr(T^-T Sw T^-1)) for T = diag(t)
// (cat-method.md 1): the alignment the tied solve maximizes.
double Alignment(const Eigen::MatrixXd& sx, const Eigen::MatrixXd& sw, const Eigen::VectorXd& t) {
  const Eigen::MatrixXd sx_t = t.asDiagonal() * sx * t.asDiagonal();
  const Eigen::VectorXd inverse = t.cwiseInverse();
  const Eigen::MatrixXd sw_t = inverse.asDiagonal() * sw * inverse.asDiagonal();
  return (sw * sx).trace() / (sx_t.trace() * sw_t.trace());
}

TEST(AttentionOutputGroupsTest, ChannelsOfAQueryHeadReadTheirKvHeadsVProjRows) {
  // 4 query heads on 2 KV heads of 3 channels: heads 0, 1 read KV head 0
  // (v_proj rows 0..2), heads 2, 3 read KV head 1 (rows 3..5).
  const ChannelGroups groups = AttentionOutputGroups(4, 2, 3);
  EXPECT_EQ(groups.count, 6);
  EXPECT_EQ(groups.of_channel, (std::vector<int64_t>{0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5}));
  const ChannelGroups own = AttentionOutputGroups(3, 3, 2);
  EXPECT_EQ(own.count, 6);
  EXPECT_EQ(own.of_channel, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
}

class TiedDiagonalCatTest : public ::testing::Test {
 protected:
  // attn_out of 8 query heads on 2 KV heads of 4 channels: groups of 4
  // channels, 8 groups over 32 channels.
  TiedDiagonalCatTest() : groups_(AttentionOutputGroups(8, 2, 4)) {
    sx_ = RandomSpd(32, 1);
    Eigen::MatrixXd w = Eigen::MatrixXd::Zero(24, 32);
    std::mt19937_64 rng(2);
    std::normal_distribution<double> normal;
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = normal(rng);
    // Column scales the activations do not share, so that groups disagree.
    for (int64_t j = 0; j < 32; ++j) w.col(j) *= std::pow(10.0, std::sin(3.0 * j));
    sw_ = w.transpose() * w;
  }

  const ChannelGroups groups_;
  Eigen::MatrixXd sx_;
  Eigen::MatrixXd sw_;
};

TEST_F(TiedDiagonalCatTest, EntriesAreConstantWithinEachKvGroup) {
  absl::StatusOr<TiedDiagonal> tied =
      SolveTiedDiagonalCat(sx_.diagonal(), sw_.diagonal(), groups_, {});
  ASSERT_OK(tied);
  ASSERT_EQ(tied->t.size(), 32);
  for (int64_t head = 0; head < 8; ++head) {
    // Query heads 0..3 read KV head 0, heads 4..7 KV head 1: channel j of
    // every head equals channel j of the first head of its group.
    const int64_t first = (head / 4) * 4;
    for (int64_t j = 0; j < 4; ++j) {
      EXPECT_EQ(tied->t(head * 4 + j), tied->t(first * 4 + j)) << "head " << head << ", " << j;
    }
  }
  absl::StatusOr<Eigen::VectorXd> rows = TiedGroupValues(tied->t, groups_);
  ASSERT_OK(rows);
  EXPECT_EQ(rows->size(), 8);
  EXPECT_EQ(tied->report.num_blocks, 8);
  // Not all one value: the groups' statistics differ.
  EXPECT_GT(rows->maxCoeff() / rows->minCoeff(), 1.5);
}

// With one channel per group the tie is no constraint: the untied block CAT
// at k = 1, bit for bit (same 1 x 1 solves, damping included).
TEST_F(TiedDiagonalCatTest, OneHeadPerKvHeadIsTheUntiedSolve) {
  const ChannelGroups own = AttentionOutputGroups(8, 8, 4);
  BlockCatOptions options;
  options.damping = 0.05;
  absl::StatusOr<TiedDiagonal> tied =
      SolveTiedDiagonalCat(sx_.diagonal(), sw_.diagonal(), own, options);
  ASSERT_OK(tied);
  std::vector<Eigen::MatrixXd> sx_blocks;
  std::vector<Eigen::MatrixXd> sw_blocks;
  for (int64_t j = 0; j < 32; ++j) {
    sx_blocks.push_back(sx_.block(j, j, 1, 1));
    sw_blocks.push_back(sw_.block(j, j, 1, 1));
  }
  absl::StatusOr<BlockCatResult> untied = SolveBlockCat(sx_blocks, sw_blocks, options);
  ASSERT_OK(untied);
  for (int64_t j = 0; j < 32; ++j) {
    EXPECT_EQ(tied->t(j), untied->blocks[j](0, 0)) << "channel " << j;
    // And the closed form of cat-method.md 2.3, x_j' = x_j (w_j / x_j)^(1/4).
    EXPECT_NEAR(tied->t(j), std::pow(sw_(j, j) / sx_(j, j), 0.25), 1e-12 * tied->t(j));
  }
}

// The tied optimum reaches the closed-form bound tr(Sw Sx) / (sum_g
// sqrt(X_g W_g))^2, and no other tied diagonal does better: 50 random
// perturbations of it, the group mean of the untied diagonal and the
// group's maxima instead of sums.
TEST_F(TiedDiagonalCatTest, AlignmentIsNoWorseThanAnyOtherTiedDiagonal) {
  absl::StatusOr<TiedDiagonal> tied =
      SolveTiedDiagonalCat(sx_.diagonal(), sw_.diagonal(), groups_, {});
  ASSERT_OK(tied);
  const double best = Alignment(sx_, sw_, tied->t);
  Eigen::VectorXd x = Eigen::VectorXd::Zero(8);
  Eigen::VectorXd w = Eigen::VectorXd::Zero(8);
  for (int64_t c = 0; c < 32; ++c) {
    x(groups_.of_channel[c]) += sx_(c, c);
    w(groups_.of_channel[c]) += sw_(c, c);
  }
  const double bound = (sw_ * sx_).trace() / std::pow((x.array() * w.array()).sqrt().sum(), 2);
  EXPECT_NEAR(best, bound, 1e-12 * bound);

  std::vector<Eigen::VectorXd> others;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (int i = 0; i < 50; ++i) {
    Eigen::VectorXd per_group(8);
    for (int64_t g = 0; g < 8; ++g) per_group(g) = std::exp(normal(rng));
    Eigen::VectorXd t(32);
    for (int64_t c = 0; c < 32; ++c) t(c) = tied->t(c) * per_group(groups_.of_channel[c]);
    others.push_back(t);
  }
  Eigen::VectorXd mean_of_untied = Eigen::VectorXd::Zero(32);
  Eigen::VectorXd maxima_x = Eigen::VectorXd::Zero(8);
  Eigen::VectorXd maxima_w = Eigen::VectorXd::Zero(8);
  for (int64_t c = 0; c < 32; ++c) {
    const int64_t g = groups_.of_channel[c];
    for (int64_t d = 0; d < 32; ++d) {
      if (groups_.of_channel[d] == g) {
        mean_of_untied(c) += std::pow(sw_(d, d) / sx_(d, d), 0.25) / 4.0;
      }
    }
    maxima_x(g) = std::max(maxima_x(g), sx_(c, c));
    maxima_w(g) = std::max(maxima_w(g), sw_(c, c));
  }
  others.push_back(mean_of_untied);
  Eigen::VectorXd from_maxima(32);
  for (int64_t c = 0; c < 32; ++c) {
    const int64_t g = groups_.of_channel[c];
    from_maxima(c) = std::pow(maxima_w(g) / maxima_x(g), 0.25);
  }
  others.push_back(from_maxima);
  double best_other = 0.0;
  for (const Eigen::VectorXd& t : others) {
    const double a = Alignment(sx_, sw_, t);
    EXPECT_LE(a, best * (1.0 + 1e-12));
    best_other = std::max(best_other, a);
  }
  // The comparison has teeth: the alternatives are measurably worse.
  EXPECT_LT(Alignment(sx_, sw_, mean_of_untied), best * 0.999);
  EXPECT_LT(best_other, best);
}

TEST(TiedSmoothQuantDiagonalTest, UsesEachGroupsMaximaAndIsPerChannelWhenUntied) {
  const Eigen::VectorXd x = (Eigen::VectorXd(4) << 1.0, 4.0, 9.0, 2.0).finished();
  const Eigen::VectorXd w = (Eigen::VectorXd(4) << 0.5, 2.0, 0.25, 1.0).finished();
  const ChannelGroups pairs{{0, 1, 0, 1}, 2};
  absl::StatusOr<Eigen::VectorXd> tied = TiedSmoothQuantDiagonal(x, w, pairs, 0.5);
  ASSERT_OK(tied);
  // Group 0: max|x| 9, max|W| 0.5; group 1: 4 and 2. t = w^0.5 / x^0.5.
  EXPECT_DOUBLE_EQ((*tied)(0), std::sqrt(0.5 / 9.0));
  EXPECT_DOUBLE_EQ((*tied)(2), std::sqrt(0.5 / 9.0));
  EXPECT_DOUBLE_EQ((*tied)(1), std::sqrt(2.0 / 4.0));
  EXPECT_DOUBLE_EQ((*tied)(3), std::sqrt(2.0 / 4.0));
  absl::StatusOr<Eigen::VectorXd> untied =
      TiedSmoothQuantDiagonal(x, w, AttentionOutputGroups(2, 2, 2), 0.5);
  absl::StatusOr<Eigen::VectorXd> per_channel = SmoothQuantDiagonal(x, w, 0.5);
  ASSERT_OK(untied);
  ASSERT_OK(per_channel);
  EXPECT_EQ(*untied, *per_channel);
}

TEST(TiedDiagonalErrorsTest, BadGroupsAndValuesAreNamed) {
  const Eigen::VectorXd ones = Eigen::VectorXd::Ones(4);
  EXPECT_STATUS(SolveTiedDiagonalCat(ones, ones, ChannelGroups{{0, 1, 2}, 3}),
                absl::StatusCode::kInvalidArgument, "groups: 3 channels assigned, the site has 4");
  EXPECT_STATUS(SolveTiedDiagonalCat(ones, ones, ChannelGroups{{0, 1, 5, 0}, 3}),
                absl::StatusCode::kInvalidArgument, "channel 2 is in group 5, outside [0, 3)");
  EXPECT_STATUS(SolveTiedDiagonalCat(ones, ones, ChannelGroups{{0, 0, 2, 2}, 3}),
                absl::StatusCode::kInvalidArgument, "group 1 has no channel");
  EXPECT_STATUS(SolveTiedDiagonalCat(ones, Eigen::VectorXd::Ones(3), ChannelGroups{{0}, 1}),
                absl::StatusCode::kInvalidArgument, "Sx has 4 diagonal entries, Sw 3");
  Eigen::VectorXd negative = ones;
  negative(3) = -1.0;
  EXPECT_STATUS(SolveTiedDiagonalCat(ones, negative, ChannelGroups{{0, 0, 1, 1}, 2}),
                absl::StatusCode::kInvalidArgument, "channel 3: Sx 1, Sw -1");
  EXPECT_STATUS(TiedSmoothQuantDiagonal(negative, ones, ChannelGroups{{0, 0, 1, 1}, 2}, 0.5),
                absl::StatusCode::kInvalidArgument, "channel 3");
  const Eigen::VectorXd untied = (Eigen::VectorXd(4) << 1.0, 2.0, 1.0, 3.0).finished();
  EXPECT_STATUS(TiedGroupValues(untied, ChannelGroups{{0, 1, 0, 1}, 2}),
                absl::StatusCode::kInvalidArgument,
                "channel 3 holds 3, another channel of its group 1 holds 2");
}

// A group with no activation or no weight energy keeps 1, as an untied
// channel does (SolveBlockCat's identity block).
TEST(TiedDiagonalCatZeroTest, GroupWithoutEnergyKeepsOne) {
  const Eigen::VectorXd x = (Eigen::VectorXd(4) << 0.0, 0.0, 4.0, 1.0).finished();
  const Eigen::VectorXd w = (Eigen::VectorXd(4) << 2.0, 3.0, 1.0, 0.0).finished();
  absl::StatusOr<TiedDiagonal> tied = SolveTiedDiagonalCat(x, w, ChannelGroups{{0, 0, 1, 1}, 2});
  ASSERT_OK(tied);
  EXPECT_EQ((*tied).t(0), 1.0);
  EXPECT_EQ((*tied).t(1), 1.0);
  EXPECT_NEAR((*tied).t(2), std::pow(1.0 / 5.0, 0.25), 1e-15);
  EXPECT_EQ(tied->report.identity_blocks, 1);
}

}  // namespace
}  // namespace catq
