// Tests of block CAT (core/cat/block_cat.h) and of the weight second moments
// it reads (core/cat/weight_moments.h): the matrix-power identities, the
// closed forms of cat-method.md 2.1 and 2.3, optimality among block-diagonal
// transforms, and the numerics of 2.4 on singular inputs.
#include "core/cat/block_cat.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/Eigenvalues>
#include <Eigen/LU>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/cat/weight_moments.h"
#include "core/math/blas.h"
#include "core/math/eigen_types.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

using ::testing::ElementsAre;

// Random symmetric positive definite d x d with correlated entries and
// channel scales spread over two decades (LLM activations are like that).
Eigen::MatrixXd RandomSpd(int64_t d, uint64_t seed, double ridge = 1e-3) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd a(d, 2 * d);
  for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = normal(rng);
  Eigen::VectorXd scale(d);
  for (int64_t j = 0; j < d; ++j)
    scale(j) = std::pow(10.0, 2.0 * j / std::max<int64_t>(1, d - 1) - 1);
  const Eigen::MatrixXd l = scale.asDiagonal() * a;
  Eigen::MatrixXd s = l * l.transpose() / static_cast<double>(2 * d);
  s.diagonal().array() += ridge * s.diagonal().mean();
  return s;
}

RowMatrixXf RandomWeight(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  RowMatrixXf w(rows, cols);
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = normal(rng);
  return w;
}

std::vector<Eigen::MatrixXd> Blocks(const Eigen::MatrixXd& s, int64_t k) {
  absl::StatusOr<BlockPartition> partition = BlockPartition::Create(s.rows(), k);
  EXPECT_OK(partition);
  absl::StatusOr<std::vector<Eigen::MatrixXd>> blocks = ExtractDiagonalBlocks(s, *partition);
  EXPECT_OK(blocks);
  return *blocks;
}

Eigen::MatrixXd BlockDiagonal(const std::vector<Eigen::MatrixXd>& blocks) {
  int64_t d = 0;
  for (const Eigen::MatrixXd& b : blocks) d += b.rows();
  Eigen::MatrixXd t = Eigen::MatrixXd::Zero(d, d);
  int64_t begin = 0;
  for (const Eigen::MatrixXd& b : blocks) {
    t.block(begin, begin, b.rows(), b.rows()) = b;
    begin += b.rows();
  }
  return t;
}

// A after x' = T x, W' = W T^-1: tr(Sw Sx) / (tr(T^-T Sw T^-1) tr(T Sx T^T)).
double AlignmentAfter(const Eigen::MatrixXd& t, const Eigen::MatrixXd& sx,
                      const Eigen::MatrixXd& sw) {
  const Eigen::MatrixXd t_inv = t.inverse();
  const double tr_sx = (t * sx * t.transpose()).trace();
  const double tr_sw = (t_inv.transpose() * sw * t_inv).trace();
  return (sw.array() * sx.array()).sum() / (tr_sx * tr_sw);
}

// A_max = sum c / (sum sqrt c)^2, c = eig(Sx^(1/2) Sw Sx^(1/2)), computed here
// independently of the library (via the eigenvalues of Sx Sw, which are the
// same as those of the symmetric C).
double MaxAlignmentReference(const Eigen::MatrixXd& sx, const Eigen::MatrixXd& sw) {
  const Eigen::VectorXd c = (sx * sw).eigenvalues().real().cwiseMax(0.0);
  return c.sum() / std::pow(c.array().sqrt().sum(), 2);
}

// Strongly correlated activations: a few shared factors plus 10% independent
// noise per channel, channel scales over two decades.
Eigen::MatrixXd FactorSpd(int64_t d, int64_t factors, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd f(d, factors);
  for (Eigen::Index i = 0; i < f.size(); ++i) f.data()[i] = normal(rng);
  Eigen::VectorXd scale(d);
  for (int64_t j = 0; j < d; ++j) scale(j) = std::pow(10.0, 2.0 * j / (d - 1) - 1);
  Eigen::MatrixXd s = f * f.transpose() / static_cast<double>(factors);
  s.diagonal().array() += 0.01;
  return scale.asDiagonal() * s * scale.asDiagonal();
}

BlockCatOptions Undamped() {
  BlockCatOptions options;
  options.damping = 0.0;
  return options;
}

TEST(BlockPartitionTest, SmallerTailAndFullBlock) {
  ASSERT_OK(BlockPartition::Create(172, 128));
  const BlockPartition p = *BlockPartition::Create(172, 128);
  EXPECT_EQ(p.num_blocks(), 2);
  EXPECT_EQ(p.num_full_blocks(), 1);
  EXPECT_EQ(p.tail_size(), 44);
  EXPECT_EQ(p.begin(1), 128);
  EXPECT_EQ(p.size(1), 44);

  const BlockPartition full = *BlockPartition::Create(64, 128);
  EXPECT_EQ(full.block_size(), 64);
  EXPECT_EQ(full.num_blocks(), 1);
  EXPECT_EQ(full.tail_size(), 0);

  EXPECT_STATUS(BlockPartition::Create(0, 8), absl::StatusCode::kInvalidArgument, "dim");
  EXPECT_STATUS(BlockPartition::Create(8, 0), absl::StatusCode::kInvalidArgument, "block_size");
}

TEST(SymmetricPowersTest, RootIdentities) {
  const Eigen::MatrixXd s = RandomSpd(24, 1);
  absl::StatusOr<SymmetricPowers> created = SymmetricPowers::Create(s, 1e-12);
  ASSERT_OK(created);
  const SymmetricPowers& powers = *created;
  EXPECT_FALSE(powers.clipped());
  const Eigen::MatrixXd root = powers.Power(0.5);
  const Eigen::MatrixXd inv_root = powers.Power(-0.5);
  const Eigen::MatrixXd quarter = powers.Power(0.25);
  const Eigen::MatrixXd id = Eigen::MatrixXd::Identity(24, 24);
  EXPECT_LT((root * root - s).norm(), 1e-10 * s.norm());
  EXPECT_LT((inv_root * s * inv_root - id).norm(), 1e-10);
  EXPECT_LT((quarter * quarter * quarter * quarter - s).norm(), 1e-10 * s.norm());
  EXPECT_LT((root - root.transpose()).norm(), 1e-12 * root.norm());
}

TEST(SymmetricPowersTest, ClipsTinyAndNegativeEigenvalues) {
  // Rank 1: eigenvalues {0, 0, 3}, rounding may make some slightly negative.
  Eigen::MatrixXd s = Eigen::MatrixXd::Ones(3, 3);
  absl::StatusOr<SymmetricPowers> created = SymmetricPowers::Create(s, 1e-12);
  ASSERT_OK(created);
  const SymmetricPowers& powers = *created;
  EXPECT_TRUE(powers.clipped());
  EXPECT_NEAR(powers.max_eigenvalue(), 3.0, 1e-12);
  EXPECT_GE(powers.eigenvalues().minCoeff(), 3e-12 * (1 - 1e-9));
  EXPECT_TRUE(powers.Power(-0.5).allFinite());
}

TEST(BlockCatTest, DiagonalEqualsClosedForm) {
  // k = 1: x_j' = x_j (||W_:,j||^2 / E[x_j^2])^(1/4) (cat-method.md 2.3),
  // with or without damping (a 1 x 1 block is scaled by 1 + lambda on both sides).
  const int64_t d = 40;
  const Eigen::MatrixXd sx = RandomSpd(d, 2);
  const RowMatrixXf w = RandomWeight(32, d, 3);
  const Eigen::MatrixXd sw = (w.cast<double>().transpose() * w.cast<double>());
  for (const double damping : {0.0, 1e-2}) {
    BlockCatOptions options;
    options.damping = damping;
    absl::StatusOr<BlockCatResult> cat = SolveBlockCat(Blocks(sx, 1), Blocks(sw, 1), options);
    ASSERT_OK(cat);
    ASSERT_EQ(cat->blocks.size(), static_cast<size_t>(d));
    for (int64_t j = 0; j < d; ++j) {
      const double expected = std::pow(w.col(j).cast<double>().squaredNorm() / sx(j, j), 0.25);
      EXPECT_NEAR(cat->blocks[j](0, 0), expected, 1e-12 * expected) << "channel " << j;
    }
  }
}

TEST(BlockCatTest, FullCatBalancesMomentsAndReachesMaxAlignment) {
  // T* equalizes the transformed moments, T Sx T^T = T^-T Sw T^-1 (= C^(1/2)),
  // and A(T*) = A_max (cat-method.md 2.1).
  for (const int64_t d : {16, 64}) {
    const Eigen::MatrixXd sx = RandomSpd(d, 10 + d);
    const RowMatrixXf w = RandomWeight(d, d, 20 + d);
    const Eigen::MatrixXd sw = w.cast<double>().transpose() * w.cast<double>();
    absl::StatusOr<BlockCatResult> cat = SolveBlockCat({sx}, {sw}, Undamped());
    ASSERT_OK(cat);
    const Eigen::MatrixXd& t = cat->blocks[0];
    const Eigen::MatrixXd t_inv = t.inverse();
    const Eigen::MatrixXd sx_t = t * sx * t.transpose();
    const Eigen::MatrixXd sw_t = t_inv.transpose() * sw * t_inv;
    EXPECT_LT((sx_t - sw_t).norm(), 1e-9 * sx_t.norm()) << "d = " << d;
    const double a = AlignmentAfter(t, sx, sw);
    const double a_max = MaxAlignmentReference(sx, sw);
    EXPECT_LT(std::abs(a - a_max), 1e-8 * a_max) << "d = " << d;
    // And T is better aligned than doing nothing.
    EXPECT_GT(a, AlignmentAfter(Eigen::MatrixXd::Identity(d, d), sx, sw));
    EXPECT_LT(cat->report.max_inverse_residual, 1e-10);
    EXPECT_EQ(cat->report.damped_blocks, 0);
    EXPECT_EQ(cat->report.clipped_blocks, 0);
  }
}

TEST(BlockCatTest, BeatsRandomBlockDiagonalTransforms) {
  // Block CAT is the optimum among block-diagonal transforms of the same k:
  // no random well-conditioned block-diagonal T may align better.
  const int64_t d = 48;
  const Eigen::MatrixXd sx = RandomSpd(d, 30);
  const RowMatrixXf w = RandomWeight(64, d, 31);
  const Eigen::MatrixXd sw = w.cast<double>().transpose() * w.cast<double>();
  std::mt19937_64 rng(32);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> log_scale(-1.0, 1.0);
  for (const int64_t k : {1, 8, 20}) {  // 20 leaves a tail of 8
    absl::StatusOr<BlockCatResult> cat = SolveBlockCat(Blocks(sx, k), Blocks(sw, k), Undamped());
    ASSERT_OK(cat);
    const double a_cat = AlignmentAfter(BlockDiagonal(cat->blocks), sx, sw);
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<Eigen::MatrixXd> random;
      for (const Eigen::MatrixXd& b : cat->blocks) {
        // Q1 diag(s) Q2 with singular values in [0.1, 10]: invertible, cond <= 100.
        const int64_t n = b.rows();
        Eigen::MatrixXd g1(n, n), g2(n, n);
        for (Eigen::Index i = 0; i < g1.size(); ++i) g1.data()[i] = normal(rng);
        for (Eigen::Index i = 0; i < g2.size(); ++i) g2.data()[i] = normal(rng);
        const Eigen::MatrixXd q1 = Eigen::HouseholderQR<Eigen::MatrixXd>(g1).householderQ();
        const Eigen::MatrixXd q2 = Eigen::HouseholderQR<Eigen::MatrixXd>(g2).householderQ();
        Eigen::VectorXd s(n);
        for (int64_t i = 0; i < n; ++i) s(i) = std::pow(10.0, log_scale(rng));
        random.push_back(q1 * s.asDiagonal() * q2);
      }
      const double a_random = AlignmentAfter(BlockDiagonal(random), sx, sw);
      EXPECT_GE(a_cat, a_random * (1 - 1e-12)) << "k = " << k << ", trial " << trial;
    }
  }
}

TEST(BlockCatTest, AlignmentRisesMonotonicallyWithBlockSize) {
  // Nested partitions (k | 2k): the optimum over a larger set cannot be worse.
  const int64_t d = 64;
  const Eigen::MatrixXd sx = FactorSpd(d, 4, 40);
  const RowMatrixXf w = RandomWeight(96, d, 41);
  const Eigen::MatrixXd sw = w.cast<double>().transpose() * w.cast<double>();
  std::vector<double> alignment;
  for (int64_t k = 1; k <= d; k *= 2) {
    absl::StatusOr<BlockCatResult> cat = SolveBlockCat(Blocks(sx, k), Blocks(sw, k), Undamped());
    ASSERT_OK(cat);
    alignment.push_back(AlignmentAfter(BlockDiagonal(cat->blocks), sx, sw));
  }
  for (size_t i = 1; i < alignment.size(); ++i) {
    EXPECT_GE(alignment[i], alignment[i - 1] * (1 - 1e-12)) << "k = " << (1 << i);
  }
  // Correlated activations: the full transform is much better than diagonal.
  EXPECT_GT(alignment.back(), 1.5 * alignment.front());
  EXPECT_NEAR(alignment.back(), MaxAlignmentReference(sx, sw), 1e-8 * alignment.back());
}

TEST(BlockCatTest, SingularSecondMomentsStayFinite) {
  // 8 tokens for d = 32 (rank 8), one dead channel and one unused weight
  // column: damping must handle it; without damping the clip must.
  const int64_t d = 32;
  std::mt19937_64 rng(50);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd x(8, d);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  x.col(5).setZero();
  const Eigen::MatrixXd sx = x.transpose() * x / 8.0;
  RowMatrixXf w = RandomWeight(16, d, 51);
  w.col(20).setZero();
  const Eigen::MatrixXd sw = w.cast<double>().transpose() * w.cast<double>();
  for (const int64_t k : {8, 32}) {
    for (const double damping : {1e-2, 0.0}) {
      BlockCatOptions options;
      options.damping = damping;
      absl::StatusOr<BlockCatResult> cat = SolveBlockCat(Blocks(sx, k), Blocks(sw, k), options);
      ASSERT_OK(cat);
      for (const Eigen::MatrixXd& t : cat->blocks) {
        EXPECT_TRUE(t.allFinite()) << "k = " << k << ", damping " << damping;
      }
      EXPECT_TRUE(std::isfinite(cat->report.max_condition));
      // k = 8: block 0 holds the dead channel, block 2 the unused column; the
      // other two have full rank (8 tokens, 16 rows). k = 32: rank 8 < 32.
      EXPECT_EQ(cat->report.damped_blocks, k == 8 ? 2 : 1);
      EXPECT_EQ(cat->report.identity_blocks, 0);
      if (damping > 0) {
        EXPECT_EQ(cat->report.clipped_blocks, 0);
        EXPECT_LT(cat->report.max_inverse_residual, 1e-10);
        EXPECT_LT(cat->report.max_condition, 1e4);
      } else {
        EXPECT_GT(cat->report.clipped_blocks, 0);
      }
    }
  }
}

TEST(BlockCatTest, AllZeroBlockBecomesIdentity) {
  const int64_t d = 16;
  Eigen::MatrixXd sx = RandomSpd(d, 60);
  sx.block(8, 0, 8, 16).setZero();
  sx.block(0, 8, 16, 8).setZero();  // channels 8..15 never fire
  const RowMatrixXf w = RandomWeight(16, d, 61);
  const Eigen::MatrixXd sw = w.cast<double>().transpose() * w.cast<double>();
  absl::StatusOr<BlockCatResult> cat = SolveBlockCat(Blocks(sx, 8), Blocks(sw, 8), {});
  ASSERT_OK(cat);
  EXPECT_EQ(cat->report.identity_blocks, 1);
  EXPECT_TRUE(cat->blocks[1].isIdentity());
  EXPECT_FALSE(cat->blocks[0].isIdentity());
  EXPECT_EQ(cat->report.damped_blocks, 0);
}

TEST(BlockCatTest, ReportsConditionAndResidual) {
  const Eigen::MatrixXd sx = RandomSpd(32, 70);
  const Eigen::MatrixXd sw = RandomSpd(32, 71);
  // 16 Sw scales T_1 by 2: the blocks' singular values interleave, so the
  // whole T is worse conditioned than either block.
  std::vector<Eigen::MatrixXd> sw_blocks = Blocks(sw, 16);
  sw_blocks[1] *= 16.0;
  absl::StatusOr<BlockCatResult> cat = SolveBlockCat(Blocks(sx, 16), sw_blocks, {});
  ASSERT_OK(cat);
  ASSERT_EQ(cat->report.block_condition.size(), 2u);
  for (int b = 0; b < 2; ++b) {
    const Eigen::VectorXd sigma =
        Eigen::JacobiSVD<Eigen::MatrixXd>(cat->blocks[b]).singularValues();
    EXPECT_NEAR(cat->report.block_condition[b], sigma(0) / sigma(sigma.size() - 1),
                1e-8 * cat->report.block_condition[b]);
  }
  EXPECT_DOUBLE_EQ(cat->report.max_condition,
                   std::max(cat->report.block_condition[0], cat->report.block_condition[1]));
  // cond_2 of the whole block-diagonal T, not the worst block's ratio.
  const Eigen::VectorXd sigma =
      Eigen::JacobiSVD<Eigen::MatrixXd>(BlockDiagonal(cat->blocks)).singularValues();
  const double whole = sigma(0) / sigma(sigma.size() - 1);
  EXPECT_NEAR(cat->report.condition, whole, 1e-8 * whole);
  EXPECT_GT(cat->report.condition, cat->report.max_condition * (1 + 1e-6));
  EXPECT_GT(cat->report.max_condition, 1.0);
  EXPECT_GT(cat->report.max_inverse_residual, 0.0);
  EXPECT_LT(cat->report.max_inverse_residual, 1e-12);
}

// LAPACK's blocked eigensolver sums over OpenBLAS threads in its level-2
// calls; the solve must give the same bits whatever thread count the process
// set (the server runs one, `catq quantize` in process as many as cores).
TEST(BlockCatTest, SameBitsOnEveryBlasThreadCount) {
  const Eigen::MatrixXd sx = RandomSpd(256, 90);
  const Eigen::MatrixXd sw = RandomSpd(256, 91);
  std::vector<std::vector<Eigen::MatrixXd>> runs;
  for (const int threads : {1, std::max(2, BlasMaxThreads())}) {
    ScopedBlasThreads scoped(threads);
    absl::StatusOr<BlockCatResult> cat = SolveBlockCat(Blocks(sx, 128), Blocks(sw, 128), {});
    ASSERT_OK(cat);
    runs.push_back(cat->blocks);
  }
  for (size_t b = 0; b < runs[0].size(); ++b) {
    EXPECT_EQ(0,
              std::memcmp(runs[0][b].data(), runs[1][b].data(), sizeof(double) * runs[0][b].size()))
        << "block " << b;
  }
}

TEST(BlockCatTest, RejectsBadInput) {
  const Eigen::MatrixXd s = RandomSpd(4, 80);
  EXPECT_STATUS(SolveBlockCat({}, {}, {}), absl::StatusCode::kInvalidArgument, "no Sx");
  EXPECT_STATUS(SolveBlockCat({s, s}, {s}, {}), absl::StatusCode::kInvalidArgument, "2 Sx blocks");
  EXPECT_STATUS(SolveBlockCat({s}, {Eigen::MatrixXd(RandomSpd(3, 81))}, {}),
                absl::StatusCode::kInvalidArgument, "block 0: Sx is 4x4 but Sw is 3x3");
  EXPECT_STATUS(SolveBlockCat({Eigen::MatrixXd(4, 3)}, {s}, {}), absl::StatusCode::kInvalidArgument,
                "Sx block 0 is 4x3");
  Eigen::MatrixXd nan = s;
  nan(2, 1) = std::nan("");
  EXPECT_STATUS(SolveBlockCat({s}, {nan}, {}), absl::StatusCode::kInvalidArgument,
                "Sw block 0 element [2, 1] is not finite");
  Eigen::MatrixXd negative = s;
  negative(3, 3) = -1.0;
  EXPECT_STATUS(SolveBlockCat({negative}, {s}, {}), absl::StatusCode::kInvalidArgument,
                "diagonal element 3");
  BlockCatOptions options;
  options.damping = -1;
  EXPECT_STATUS(SolveBlockCat({s}, {s}, options), absl::StatusCode::kInvalidArgument, "damping");
  options = {};
  options.eigen_clip = 1.0;
  EXPECT_STATUS(SolveBlockCat({s}, {s}, options), absl::StatusCode::kInvalidArgument, "eigen_clip");
}

TEST(SmoothQuantTest, MaxBasedScales) {
  Eigen::VectorXd act(4), wmax(4);
  act << 16.0, 1.0, 0.0, 4.0;
  wmax << 1.0, 4.0, 2.0, 0.0;
  absl::StatusOr<Eigen::VectorXd> t = SmoothQuantDiagonal(act, wmax, 0.5);
  ASSERT_OK(t);
  // t_j = 1 / s_j, s_j = sqrt(max|x_j| / max|W_:,j|); dead channels keep 1.
  EXPECT_THAT(std::vector<double>(t->data(), t->data() + 4), ElementsAre(0.25, 2.0, 1.0, 1.0));
  // alpha = 0.5 balances the maxima: max|x_j| t_j == max|W_:,j| / t_j.
  for (int j = 0; j < 2; ++j) EXPECT_DOUBLE_EQ(act(j) * (*t)(j), wmax(j) / (*t)(j));
  absl::StatusOr<Eigen::VectorXd> t75 = SmoothQuantDiagonal(act, wmax, 0.75);
  ASSERT_OK(t75);
  EXPECT_DOUBLE_EQ((*t75)(0), std::pow(1.0, 0.25) / std::pow(16.0, 0.75));

  EXPECT_STATUS(SmoothQuantDiagonal(act, wmax, 1.5), absl::StatusCode::kInvalidArgument, "alpha");
  EXPECT_STATUS(SmoothQuantDiagonal(act, Eigen::VectorXd(3), 0.5),
                absl::StatusCode::kInvalidArgument, "4 entries, weight maxima 3");
  act(1) = -1.0;
  EXPECT_STATUS(SmoothQuantDiagonal(act, wmax, 0.5), absl::StatusCode::kInvalidArgument,
                "channel 1");
}

// --- weight_moments.h ---

TEST(WeightMomentsTest, SumOfGramsInFloat64) {
  const RowMatrixXf q = RandomWeight(48, 20, 90);
  const RowMatrixXf v = RandomWeight(12, 20, 91) * 0.1f;
  absl::StatusOr<Eigen::MatrixXd> sw = WeightSecondMoment({q, v});
  ASSERT_OK(sw);
  const Eigen::MatrixXd expected = q.cast<double>().transpose() * q.cast<double>() +
                                   v.cast<double>().transpose() * v.cast<double>();
  EXPECT_LT((*sw - expected).cwiseAbs().maxCoeff(), 1e-12 * expected.cwiseAbs().maxCoeff());

  WeightMomentOptions normalized;
  normalized.normalize_by_frobenius = true;
  absl::StatusOr<Eigen::MatrixXd> sw_n = WeightSecondMoment({q, v}, normalized);
  ASSERT_OK(sw_n);
  const Eigen::MatrixXd expected_n =
      q.cast<double>().transpose() * q.cast<double>() / q.cast<double>().squaredNorm() +
      v.cast<double>().transpose() * v.cast<double>() / v.cast<double>().squaredNorm();
  EXPECT_LT((*sw_n - expected_n).cwiseAbs().maxCoeff(), 1e-12);
  // Each normalized term has trace 1.
  EXPECT_NEAR(sw_n->trace(), 2.0, 1e-12);
}

TEST(WeightMomentsTest, DiagonalBlocksWithTail) {
  const RowMatrixXf w = RandomWeight(30, 172, 92);
  const Eigen::MatrixXd full = w.cast<double>().transpose() * w.cast<double>();
  absl::StatusOr<std::vector<Eigen::MatrixXd>> blocks = WeightSecondMomentBlocks({w}, 64);
  ASSERT_OK(blocks);
  ASSERT_EQ(blocks->size(), 3u);
  EXPECT_EQ((*blocks)[2].rows(), 44);
  for (int b = 0; b < 3; ++b) {
    const Eigen::MatrixXd expected =
        full.block(64 * b, 64 * b, (*blocks)[b].rows(), (*blocks)[b].rows());
    EXPECT_LT(((*blocks)[b] - expected).cwiseAbs().maxCoeff(), 1e-12 * full.maxCoeff());
    EXPECT_TRUE((*blocks)[b].isApprox((*blocks)[b].transpose()));
  }
}

TEST(WeightMomentsTest, AccumulatorTakesDoubleAndZeroWeights) {
  const BlockPartition partition = *BlockPartition::Create(10, 4);
  absl::StatusOr<WeightMomentAccumulator> acc = WeightMomentAccumulator::Create(partition);
  ASSERT_OK(acc);
  // A tall weight crosses the 256-row conversion chunk.
  const RowMatrixXd w = RandomWeight(300, 10, 93).cast<double>();
  ASSERT_OK(acc->Add(w));
  ASSERT_OK(acc->Add(RowMatrixXf::Zero(3, 10)));
  EXPECT_EQ(acc->num_weights(), 2);
  const Eigen::MatrixXd full = w.transpose() * w;
  EXPECT_LT((acc->blocks()[1] - full.block(4, 4, 4, 4)).cwiseAbs().maxCoeff(), 1e-10);
  EXPECT_EQ(acc->blocks()[2].rows(), 2);

  RowMatrixXf bad = RowMatrixXf::Ones(2, 10);
  bad(1, 7) = std::numeric_limits<float>::infinity();
  EXPECT_STATUS(acc->Add(bad), absl::StatusCode::kInvalidArgument, "weight[1, 7] is not finite");
  EXPECT_STATUS(acc->Add(RowMatrixXf::Ones(2, 9)), absl::StatusCode::kInvalidArgument,
                "expected [out >= 1, 10]");
  EXPECT_EQ(acc->num_weights(), 2);
}

TEST(WeightMomentsTest, ColumnAbsMaxAndErrors) {
  RowMatrixXf a = RowMatrixXf::Zero(2, 3);
  RowMatrixXf b = RowMatrixXf::Zero(1, 3);
  a << 1, -5, 0, -2, 1, 0;
  b << 0.5, 3, -7;
  absl::StatusOr<Eigen::VectorXd> absmax = WeightColumnAbsMax({a, b});
  ASSERT_OK(absmax);
  EXPECT_THAT(std::vector<double>(absmax->data(), absmax->data() + 3), ElementsAre(2, 5, 7));
  EXPECT_STATUS(WeightColumnAbsMax({}), absl::StatusCode::kInvalidArgument, "no weights");
  EXPECT_STATUS(WeightSecondMoment({a, RowMatrixXf::Ones(2, 4)}),
                absl::StatusCode::kInvalidArgument, "weight 1");
  EXPECT_STATUS(WeightSecondMomentBlocks({a}, 0), absl::StatusCode::kInvalidArgument, "block_size");
}

}  // namespace
}  // namespace catq
