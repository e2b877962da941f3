#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/cat/site_statistics.h"
#include "core/io/env.h"
#include "core/math/blas.h"
#include "core/math/eigen_types.h"
#include "core/tensor/safetensors_file.h"
#include "core/tensor/safetensors_writer.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::catq::testing::TempDir;

// Accumulation order differs between the code and the references (chunks,
// SYRK blocking, merges), so sums agree to rounding, far below any error.
constexpr double kRoundingTolerance = 1e-12;

// Activations shaped like a real site: per-channel scales over two decades,
// per-channel offsets (so Sx is not diagonal), a shared per-token factor (so
// channels correlate), rare outliers, and every fifth token all positive.
RowMatrixXf RandomActivations(int64_t tokens, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> scale(static_cast<size_t>(dim));
  std::vector<float> offset(static_cast<size_t>(dim));
  for (int64_t j = 0; j < dim; ++j) {
    scale[static_cast<size_t>(j)] = std::pow(10.0f, 2.0f * uniform(rng) - 1.0f);
    offset[static_cast<size_t>(j)] = 0.5f * normal(rng);
  }
  RowMatrixXf x(tokens, dim);
  for (int64_t t = 0; t < tokens; ++t) {
    const float shared = normal(rng);
    for (int64_t j = 0; j < dim; ++j) {
      float v = scale[static_cast<size_t>(j)] *
                (normal(rng) + 0.7f * shared + offset[static_cast<size_t>(j)]);
      if (uniform(rng) < 0.002f) v *= 30.0f;
      if (t % 5 == 4) v = std::abs(v);
      x(t, j) = v;
    }
  }
  return x;
}

// The definitions, in plain loops over doubles.
struct Naive {
  Eigen::MatrixXd sum;
  double asymmetric = 0.0;
  double symmetric = 0.0;
  double norm_sq = 0.0;
};

Naive NaiveStatistics(const RowMatrixXf& x) {
  const int64_t d = x.cols();
  Naive naive;
  naive.sum = Eigen::MatrixXd::Zero(d, d);
  for (int64_t t = 0; t < x.rows(); ++t) {
    double hi = 0.0;
    double lo = 0.0;
    double amax = 0.0;
    for (int64_t i = 0; i < d; ++i) {
      const double xi = x(t, i);
      hi = std::max(hi, xi);
      lo = std::min(lo, xi);
      amax = std::max(amax, std::abs(xi));
      naive.norm_sq += xi * xi;
      for (int64_t j = 0; j < d; ++j) naive.sum(i, j) += xi * static_cast<double>(x(t, j));
    }
    naive.asymmetric += (hi - lo) * (hi - lo);
    naive.symmetric += 4.0 * amax * amax;
  }
  return naive;
}

// max |a - b| / max |b|: the error relative to the matrix's scale.
double RelativeError(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  EXPECT_EQ(a.rows(), b.rows());
  EXPECT_EQ(a.cols(), b.cols());
  if (a.rows() != b.rows() || a.cols() != b.cols()) return std::numeric_limits<double>::infinity();
  return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}

double RelativeError(double a, double b) { return std::abs(a - b) / std::abs(b); }

SiteStatistics MakeOrDie(int64_t dim, SiteStatisticsOptions options = {}) {
  absl::StatusOr<SiteStatistics> stats = SiteStatistics::Create(dim, options);
  EXPECT_OK(stats);
  if (!stats.ok()) std::abort();
  return *std::move(stats);
}

Eigen::MatrixXd SumBlockOrDie(const SiteStatistics& stats, int64_t b) {
  absl::StatusOr<Eigen::MatrixXd> m = stats.SumBlock(b);
  EXPECT_OK(m);
  return m.ok() ? *m : Eigen::MatrixXd();
}

// Every stored quantity of `a` equals that of `b` to rounding.
void ExpectSameStatistics(const SiteStatistics& a, const SiteStatistics& b) {
  ASSERT_EQ(a.dim(), b.dim());
  ASSERT_EQ(a.block_size(), b.block_size());
  ASSERT_EQ(a.NumBlocks(), b.NumBlocks());
  EXPECT_EQ(a.tokens(), b.tokens());
  for (int64_t blk = 0; blk < a.NumBlocks(); ++blk) {
    EXPECT_LT(RelativeError(SumBlockOrDie(a, blk), SumBlockOrDie(b, blk)), kRoundingTolerance)
        << "block " << blk;
  }
  for (ActivationRange range : {ActivationRange::kAsymmetric, ActivationRange::kSymmetric}) {
    EXPECT_LT(RelativeError(a.range_sq_sum(range), b.range_sq_sum(range)), kRoundingTolerance);
  }
  EXPECT_LT(RelativeError(a.norm_sq_sum(), b.norm_sq_sum()), kRoundingTolerance);
  ASSERT_EQ(a.has_channel_absmax(), b.has_channel_absmax());
  EXPECT_EQ(a.channel_absmax(), b.channel_absmax());  // a maximum has no rounding
}

// ---------------------------------------------------------------------------
// Creation and accessors

TEST(SiteStatistics, CreateChoosesTheMode) {
  SiteStatistics full = MakeOrDie(172);
  EXPECT_TRUE(full.is_full());
  EXPECT_EQ(full.block_size(), 172);
  EXPECT_EQ(full.NumBlocks(), 1);
  EXPECT_EQ(full.tokens(), 0);

  // A block size at or above the dimension is the full matrix too.
  EXPECT_TRUE(MakeOrDie(172, {.block_size = 172}).is_full());
  EXPECT_TRUE(MakeOrDie(172, {.block_size = 500}).is_full());

  SiteStatistics blocks = MakeOrDie(172, {.block_size = 32});
  EXPECT_FALSE(blocks.is_full());
  EXPECT_EQ(blocks.block_size(), 32);
  ASSERT_EQ(blocks.NumBlocks(), 6);
  for (int64_t b = 0; b < 5; ++b) {
    EXPECT_EQ(blocks.BlockRange(b).begin, 32 * b);
    EXPECT_EQ(blocks.BlockRange(b).size, 32);
  }
  EXPECT_EQ(blocks.BlockRange(5).begin, 160);
  EXPECT_EQ(blocks.BlockRange(5).size, 12);
  EXPECT_EQ(blocks.BlockRange(5).end(), 172);
}

TEST(SiteStatistics, CreateRejectsBadOptions) {
  EXPECT_STATUS(SiteStatistics::Create(0), absl::StatusCode::kInvalidArgument, "dim must be in");
  EXPECT_STATUS(SiteStatistics::Create(-3), absl::StatusCode::kInvalidArgument, "got -3");
  EXPECT_STATUS(SiteStatistics::Create(8, {.block_size = -1}), absl::StatusCode::kInvalidArgument,
                "block_size must be >= 0");
  EXPECT_STATUS(SiteStatistics::Create(8, {.chunk_rows = -1}), absl::StatusCode::kInvalidArgument,
                "chunk_rows must be in");
  EXPECT_STATUS(SiteStatistics::Create(8, {.chunk_rows = SiteStatistics::kMaxChunkRows + 1}),
                absl::StatusCode::kInvalidArgument, "chunk_rows must be in");
  EXPECT_STATUS(SiteStatistics::Create(SiteStatistics::kMaxFullDim + 1),
                absl::StatusCode::kInvalidArgument, "use a block size below dim");
  // The same dimension in blocks is fine (and small: d * k doubles).
  EXPECT_OK(SiteStatistics::Create(SiteStatistics::kMaxFullDim + 1, {.block_size = 4}));
}

TEST(SiteStatistics, AccessorsRefuseWhatIsUndefined) {
  SiteStatistics blocks = MakeOrDie(10, {.block_size = 4});
  EXPECT_STATUS(blocks.SumBlock(3), absl::StatusCode::kOutOfRange, "block 3 out of range");
  EXPECT_STATUS(blocks.SumBlock(-1), absl::StatusCode::kOutOfRange, "3 blocks");
  EXPECT_STATUS(blocks.SecondMomentBlock(0), absl::StatusCode::kFailedPrecondition, "no tokens");
  EXPECT_STATUS(blocks.SumFull(), absl::StatusCode::kFailedPrecondition, "diagonal blocks");
  EXPECT_STATUS(blocks.SecondMomentFull(), absl::StatusCode::kFailedPrecondition,
                "diagonal blocks");
  EXPECT_STATUS(blocks.Concentration(ActivationRange::kAsymmetric),
                absl::StatusCode::kFailedPrecondition, "no tokens");

  // All-zero tokens: a sum of zero and concentration 0 / 0.
  ASSERT_OK(blocks.Accumulate(RowMatrixXf::Zero(3, 10)));
  EXPECT_EQ(blocks.tokens(), 3);
  EXPECT_EQ(SumBlockOrDie(blocks, 0), Eigen::MatrixXd::Zero(4, 4));
  EXPECT_STATUS(blocks.Concentration(ActivationRange::kSymmetric),
                absl::StatusCode::kFailedPrecondition, "every token is zero");
}

// ---------------------------------------------------------------------------
// Accumulation against the definitions

TEST(SiteStatistics, FullModeEqualsNaiveDoubleLoop) {
  const RowMatrixXf x = RandomActivations(300, 37, 1);
  const Naive naive = NaiveStatistics(x);
  // chunk_rows 64: five SYRK chunks, the last one short.
  SiteStatistics stats = MakeOrDie(37, {.chunk_rows = 64});
  ASSERT_OK(stats.Accumulate(x));
  EXPECT_EQ(stats.tokens(), 300);

  absl::StatusOr<Eigen::MatrixXd> sum = stats.SumFull();
  ASSERT_OK(sum);
  EXPECT_LT(RelativeError(*sum, naive.sum), kRoundingTolerance);
  EXPECT_EQ(*sum, sum->transpose()) << "SumFull must be exactly symmetric";

  absl::StatusOr<Eigen::MatrixXd> mean = stats.SecondMomentFull();
  ASSERT_OK(mean);
  EXPECT_LT(RelativeError(*mean, naive.sum / 300.0), kRoundingTolerance);
  absl::StatusOr<Eigen::MatrixXd> mean_block = stats.SecondMomentBlock(0);
  ASSERT_OK(mean_block);
  EXPECT_EQ(*mean_block, *mean);

  EXPECT_LT(RelativeError(stats.norm_sq_sum(), naive.norm_sq), kRoundingTolerance);
  EXPECT_LT(RelativeError(stats.norm_sq_sum(), naive.sum.trace()), kRoundingTolerance);
  EXPECT_LT(RelativeError(stats.range_sq_sum(ActivationRange::kAsymmetric), naive.asymmetric),
            kRoundingTolerance);
  EXPECT_LT(RelativeError(stats.range_sq_sum(ActivationRange::kSymmetric), naive.symmetric),
            kRoundingTolerance);
  absl::StatusOr<double> c = stats.Concentration(ActivationRange::kAsymmetric);
  ASSERT_OK(c);
  EXPECT_LT(RelativeError(*c, naive.norm_sq / naive.asymmetric), kRoundingTolerance);
}

// The asymmetric range is that of the grid, [min(x, 0), max(x, 0)], not
// max - min: for an all-positive token they differ.
TEST(SiteStatistics, RangesFollowTheGridDefinitions) {
  SiteStatistics stats = MakeOrDie(3);
  RowMatrixXf x(3, 3);
  x << 1.0f, 2.0f, 4.0f,    // all positive: asymmetric range 4 (not 3), symmetric 8
      -3.0f, 0.5f, 1.0f,    // mixed: asymmetric range 4, symmetric 6
      -1.0f, -2.0f, -0.5f;  // all negative: asymmetric range 2 (not 1.5), symmetric 4
  ASSERT_OK(stats.Accumulate(x));
  EXPECT_EQ(stats.range_sq_sum(ActivationRange::kAsymmetric), 16.0 + 16.0 + 4.0);
  EXPECT_EQ(stats.range_sq_sum(ActivationRange::kSymmetric), 64.0 + 36.0 + 16.0);
  EXPECT_EQ(stats.norm_sq_sum(), 21.0 + 10.25 + 5.25);
  absl::StatusOr<double> c = stats.Concentration(ActivationRange::kSymmetric);
  ASSERT_OK(c);
  EXPECT_DOUBLE_EQ(*c, 36.5 / 116.0);
}

TEST(SiteStatistics, BlockModeEqualsDiagonalBlocksOfFull) {
  const RowMatrixXf x = RandomActivations(400, 172, 2);
  SiteStatistics full = MakeOrDie(172, {.chunk_rows = 150});
  ASSERT_OK(full.Accumulate(x));
  absl::StatusOr<Eigen::MatrixXd> full_sum = full.SumFull();
  ASSERT_OK(full_sum);
  EXPECT_LT(RelativeError(*full_sum, NaiveStatistics(x).sum), kRoundingTolerance);

  for (int64_t k : {32, 1, 171}) {
    SCOPED_TRACE(absl::StrCat("k = ", k));
    SiteStatistics blocks = MakeOrDie(172, {.block_size = k, .chunk_rows = 150});
    ASSERT_OK(blocks.Accumulate(x));
    ASSERT_EQ(blocks.NumBlocks(), (172 + k - 1) / k);
    int64_t covered = 0;
    for (int64_t b = 0; b < blocks.NumBlocks(); ++b) {
      const ChannelRange range = blocks.BlockRange(b);
      EXPECT_EQ(range.begin, covered);
      covered = range.end();
      const Eigen::MatrixXd expected =
          full_sum->block(range.begin, range.begin, range.size, range.size);
      EXPECT_LT(RelativeError(SumBlockOrDie(blocks, b), expected), kRoundingTolerance)
          << "block " << b;
    }
    EXPECT_EQ(covered, 172);
    EXPECT_EQ(blocks.tokens(), full.tokens());
    EXPECT_LT(RelativeError(blocks.norm_sq_sum(), full.norm_sq_sum()), kRoundingTolerance);
    EXPECT_EQ(blocks.range_sq_sum(ActivationRange::kAsymmetric),
              full.range_sq_sum(ActivationRange::kAsymmetric));
  }
  // k = 32: five full blocks and a tail of 12.
  SiteStatistics k32 = MakeOrDie(172, {.block_size = 32});
  EXPECT_EQ(k32.BlockRange(5).size, 12);
}

TEST(SiteStatistics, MergeOfFourPartsEqualsOnePass) {
  const RowMatrixXf x = RandomActivations(403, 172, 3);
  for (int64_t k : {0, 32}) {
    SCOPED_TRACE(absl::StrCat("block_size = ", k));
    SiteStatistics one_pass = MakeOrDie(172, {.block_size = k});
    ASSERT_OK(one_pass.Accumulate(x));

    SiteStatistics merged = MakeOrDie(172, {.block_size = k});
    const int64_t bounds[] = {0, 100, 101, 290, 403};  // uneven parts
    for (int part = 0; part < 4; ++part) {
      SiteStatistics partial = MakeOrDie(172, {.block_size = k});
      ASSERT_OK(partial.Accumulate(x.middleRows(bounds[part], bounds[part + 1] - bounds[part])));
      ASSERT_OK(merged.Merge(partial));
    }
    ExpectSameStatistics(merged, one_pass);
  }
}

TEST(SiteStatistics, ChannelAbsMaxIsTheLargestMagnitudePerChannel) {
  const RowMatrixXf x = RandomActivations(300, 40, 5);
  SiteStatistics stats = MakeOrDie(40, {.block_size = 16});
  ASSERT_TRUE(stats.has_channel_absmax());
  EXPECT_TRUE(stats.channel_absmax().isZero());
  ASSERT_OK(stats.Accumulate(x.topRows(120)));
  ASSERT_OK(stats.Accumulate(x.bottomRows(180)));
  const Eigen::VectorXd want = x.cwiseAbs().colwise().maxCoeff().transpose().cast<double>();
  EXPECT_EQ(stats.channel_absmax(), want);
}

TEST(SiteStatistics, MergeWithItselfDoubles) {
  SiteStatistics stats = MakeOrDie(20, {.block_size = 8});
  ASSERT_OK(stats.Accumulate(RandomActivations(30, 20, 4)));
  SiteStatistics copy = stats;
  ASSERT_OK(stats.Merge(stats));
  EXPECT_EQ(stats.tokens(), 60);
  EXPECT_EQ(SumBlockOrDie(stats, 2), 2.0 * SumBlockOrDie(copy, 2));
  EXPECT_EQ(stats.norm_sq_sum(), 2.0 * copy.norm_sq_sum());
}

TEST(SiteStatistics, MergeRejectsADifferentShape) {
  SiteStatistics stats = MakeOrDie(16, {.block_size = 4});
  ASSERT_OK(stats.Accumulate(RandomActivations(5, 16, 5)));
  const SiteStatistics before = stats;
  EXPECT_STATUS(stats.Merge(MakeOrDie(17, {.block_size = 4})), absl::StatusCode::kInvalidArgument,
                "dim 17 into dim 16");
  EXPECT_STATUS(stats.Merge(MakeOrDie(16, {.block_size = 8})), absl::StatusCode::kInvalidArgument,
                "block_size 8 into block_size 4");
  EXPECT_STATUS(stats.Merge(MakeOrDie(16)), absl::StatusCode::kInvalidArgument,
                "block_size 16 into block_size 4");
  ExpectSameStatistics(stats, before);
  // chunk_rows is a speed setting, not part of the shape.
  EXPECT_OK(stats.Merge(MakeOrDie(16, {.block_size = 4, .chunk_rows = 3})));
}

TEST(SiteStatistics, ManySmallBatchesEqualOneBigBatch) {
  const RowMatrixXf x = RandomActivations(517, 172, 6);
  for (int64_t k : {0, 32}) {
    SCOPED_TRACE(absl::StrCat("block_size = ", k));
    SiteStatistics big = MakeOrDie(172, {.block_size = k});
    ASSERT_OK(big.Accumulate(x));

    // Batches of 1, 2, 3, ... rows (and an empty one), SYRK chunks of 7 rows.
    SiteStatistics small = MakeOrDie(172, {.block_size = k, .chunk_rows = 7});
    ASSERT_OK(small.Accumulate(x.topRows(0)));
    int64_t batches = 0;
    for (int64_t t = 0, n = 1; t < x.rows(); t += n, ++n, ++batches) {
      ASSERT_OK(small.Accumulate(x.middleRows(t, std::min(n, x.rows() - t))));
    }
    EXPECT_GT(batches, 20);
    ExpectSameStatistics(small, big);
  }
}

// A batch whose rows are strided in memory (columns of a wider matrix) is
// read in place, row by row at its own stride.
TEST(SiteStatistics, AcceptsStridedRows) {
  const RowMatrixXf wide = RandomActivations(90, 50, 7);
  const RowMatrixXf packed = wide.middleCols(10, 30);
  SiteStatistics from_view = MakeOrDie(30, {.block_size = 8, .chunk_rows = 16});
  SiteStatistics from_copy = MakeOrDie(30, {.block_size = 8, .chunk_rows = 16});
  ASSERT_OK(from_view.Accumulate(wide.middleCols(10, 30)));
  ASSERT_OK(from_copy.Accumulate(packed));
  for (int64_t b = 0; b < from_view.NumBlocks(); ++b) {
    EXPECT_EQ(SumBlockOrDie(from_view, b), SumBlockOrDie(from_copy, b));
  }
  EXPECT_EQ(from_view.norm_sq_sum(), from_copy.norm_sq_sum());
}

TEST(SiteStatistics, ResultDoesNotDependOnBlasThreads) {
  const RowMatrixXf x = RandomActivations(600, 300, 8);
  SiteStatistics one = MakeOrDie(300);
  SiteStatistics all = MakeOrDie(300);
  {
    ScopedBlasThreads threads(1);
    EXPECT_EQ(BlasThreads(), 1);
    ASSERT_OK(one.Accumulate(x));
  }
  {
    ScopedBlasThreads threads(BlasMaxThreads());
    ASSERT_OK(all.Accumulate(x));
  }
  ExpectSameStatistics(all, one);
}

TEST(Blas, SetThreadsRejectsZero) {
  EXPECT_STATUS(SetBlasThreads(0), absl::StatusCode::kInvalidArgument, "at least 1, got 0");
  const int before = BlasThreads();
  {
    ScopedBlasThreads threads(1);
    EXPECT_EQ(BlasThreads(), 1);
  }
  EXPECT_EQ(BlasThreads(), before);
  EXPECT_FALSE(BlasDescription().empty());
}

// ---------------------------------------------------------------------------
// Rejected batches

TEST(SiteStatistics, AccumulateRejectsNonFiniteValuesAndAddsNothing) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t k : {0, 4}) {
    // chunk_rows 4: the bad row sits in the third chunk, after two clean ones.
    SiteStatistics stats = MakeOrDie(10, {.block_size = k, .chunk_rows = 4});
    ASSERT_OK(stats.Accumulate(RandomActivations(6, 10, 9)));
    const SiteStatistics before = stats;

    RowMatrixXf x = RandomActivations(12, 10, 10);
    x(9, 7) = nan;
    EXPECT_STATUS(stats.Accumulate(x), absl::StatusCode::kInvalidArgument,
                  "batch row 9, column 7 is NaN");
    x(9, 7) = 1.0f;
    x(11, 0) = -inf;
    EXPECT_STATUS(stats.Accumulate(x), absl::StatusCode::kInvalidArgument,
                  "batch row 11, column 0 is -inf");
    x(11, 0) = 1.0f;
    x(2, 3) = inf;
    EXPECT_STATUS(stats.Accumulate(x), absl::StatusCode::kInvalidArgument,
                  "batch row 2, column 3 is +inf");

    EXPECT_EQ(stats.tokens(), 6);
    for (int64_t b = 0; b < stats.NumBlocks(); ++b) {
      EXPECT_EQ(SumBlockOrDie(stats, b), SumBlockOrDie(before, b));
    }
    EXPECT_EQ(stats.norm_sq_sum(), before.norm_sq_sum());
    EXPECT_EQ(stats.range_sq_sum(ActivationRange::kSymmetric),
              before.range_sq_sum(ActivationRange::kSymmetric));
  }
}

TEST(SiteStatistics, AccumulateRejectsWrongColumnCount) {
  SiteStatistics stats = MakeOrDie(172, {.block_size = 32});
  EXPECT_STATUS(stats.Accumulate(RowMatrixXf::Zero(4, 171)), absl::StatusCode::kInvalidArgument,
                "batch has 171 columns, expected 172");
  EXPECT_EQ(stats.tokens(), 0);
}

// ---------------------------------------------------------------------------
// File format

// Bit-equal: == on doubles would also pass for -0.0 vs 0.0.
bool BitEqual(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), static_cast<size_t>(a.size()) * sizeof(double)) == 0;
}
bool BitEqual(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

void ExpectBitEqual(const SiteStatistics& a, const SiteStatistics& b) {
  ASSERT_EQ(a.dim(), b.dim());
  ASSERT_EQ(a.block_size(), b.block_size());
  ASSERT_EQ(a.NumBlocks(), b.NumBlocks());
  EXPECT_EQ(a.tokens(), b.tokens());
  for (int64_t blk = 0; blk < a.NumBlocks(); ++blk) {
    EXPECT_TRUE(BitEqual(SumBlockOrDie(a, blk), SumBlockOrDie(b, blk))) << "block " << blk;
  }
  for (ActivationRange range : {ActivationRange::kAsymmetric, ActivationRange::kSymmetric}) {
    EXPECT_TRUE(BitEqual(a.range_sq_sum(range), b.range_sq_sum(range)));
  }
  EXPECT_TRUE(BitEqual(a.norm_sq_sum(), b.norm_sq_sum()));
}

TEST(SiteStatisticsFile, RoundTripIsBitExactInBothModes) {
  std::map<std::string, SiteStatistics> sites;
  const RowMatrixXf x = RandomActivations(200, 172, 11);
  sites.emplace("model.layers.0.attn_in", MakeOrDie(172));                      // full
  sites.emplace("model.layers.0.mlp_in", MakeOrDie(172, {.block_size = 32}));   // tail of 12
  sites.emplace("model.layers.1.mlp_out", MakeOrDie(172, {.block_size = 43}));  // no tail
  sites.emplace("s", MakeOrDie(1));
  for (auto& [key, stats] : sites) {
    ASSERT_OK(stats.Accumulate(x.leftCols(stats.dim())));
  }
  TempDir dir;
  const std::string path = dir.Join("stats.safetensors");
  ASSERT_OK(WriteSiteStatistics(Env::Default(), path, sites));

  // The layout documented in the header.
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_OK(file);
  EXPECT_EQ(file->tensors().size(), 4u * 5u + 1u);
  EXPECT_EQ(file->Find("model.layers.0.mlp_in.absmax")->shape, (std::vector<int64_t>{172}));
  EXPECT_EQ(file->Find("model.layers.0.attn_in.sx")->shape, (std::vector<int64_t>{172, 172}));
  EXPECT_EQ(file->Find("model.layers.0.mlp_in.sx")->shape, (std::vector<int64_t>{5, 32, 32}));
  EXPECT_EQ(file->Find("model.layers.0.mlp_in.sx_tail")->shape, (std::vector<int64_t>{12, 12}));
  EXPECT_EQ(file->Find("model.layers.1.mlp_out.sx")->shape, (std::vector<int64_t>{4, 43, 43}));
  EXPECT_FALSE(file->Contains("model.layers.1.mlp_out.sx_tail"));
  EXPECT_EQ(file->Find("s.tokens")->dtype, DType::kI64);
  EXPECT_EQ(file->Find("s.range_sq_sum")->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(file->Find("s.norm_sq_sum")->shape, (std::vector<int64_t>{1}));

  absl::StatusOr<std::map<std::string, SiteStatistics>> read = ReadSiteStatistics(path);
  ASSERT_OK(read);
  ASSERT_EQ(read->size(), sites.size());
  for (const auto& [key, stats] : sites) {
    SCOPED_TRACE(key);
    auto it = read->find(key);
    ASSERT_NE(it, read->end());
    ExpectBitEqual(it->second, stats);
  }

  // Some sites alone (a layer task's read), bit for bit; a key the file lacks
  // is NotFound naming it, after the path.
  const std::vector<std::string> some_keys = {"model.layers.0.mlp_in", "model.layers.1.mlp_out"};
  absl::StatusOr<std::map<std::string, SiteStatistics>> some =
      ReadSiteStatisticsOf(path, some_keys);
  ASSERT_OK(some);
  ASSERT_EQ(some->size(), 2u);
  for (const std::string& key : some_keys) ExpectBitEqual(some->at(key), sites.at(key));
  EXPECT_STATUS(ReadSiteStatisticsOf(path, {"model.layers.0.mlp_in", "model.layers.9.attn_in"}),
                absl::StatusCode::kNotFound,
                "stats.safetensors: no statistics for model.layers.9.attn_in");

  // Read statistics keep accumulating like the originals.
  const RowMatrixXf more = RandomActivations(50, 172, 12);
  SiteStatistics& original = sites.at("model.layers.0.mlp_in");
  SiteStatistics& reread = read->at("model.layers.0.mlp_in");
  ASSERT_OK(original.Accumulate(more));
  ASSERT_OK(reread.Accumulate(more));
  ExpectBitEqual(reread, original);
}

TEST(SiteStatisticsFile, WriteRefusesWhatCannotBeRead) {
  TempDir dir;
  const std::string path = dir.Join("stats.safetensors");
  EXPECT_STATUS(WriteSiteStatistics(Env::Default(), path, {}), absl::StatusCode::kInvalidArgument,
                "no site statistics");
  std::map<std::string, SiteStatistics> empty_site;
  empty_site.emplace("model.layers.0.attn_in", MakeOrDie(8));
  EXPECT_STATUS(WriteSiteStatistics(Env::Default(), path, empty_site),
                absl::StatusCode::kFailedPrecondition, "\"model.layers.0.attn_in\" has no tokens");
  std::map<std::string, SiteStatistics> no_key;
  no_key.emplace("", MakeOrDie(8));
  ASSERT_OK(no_key.at("").Accumulate(RowMatrixXf::Ones(1, 8)));
  EXPECT_STATUS(WriteSiteStatistics(Env::Default(), path, no_key),
                absl::StatusCode::kInvalidArgument, "empty site key");
  EXPECT_FALSE(Env::Default()->FileExists(path));
}

// The tensors of a file, to be altered and written back.
struct RawTensor {
  TensorSpec spec;
  std::string bytes;
};

class MalformedFileTest : public ::testing::Test {
 protected:
  static constexpr const char* kKey = "model.layers.3.mlp_in";

  // A valid file with one site of d = 10: full or blocks of 4 (tail of 2).
  void SetUp() override { raw_ = ValidRaw(/*block_size=*/4); }

  std::vector<RawTensor> ValidRaw(int64_t block_size) {
    std::map<std::string, SiteStatistics> sites;
    sites.emplace(kKey, MakeOrDie(10, {.block_size = block_size}));
    EXPECT_OK(sites.at(kKey).Accumulate(RandomActivations(40, 10, 13)));
    const std::string path = dir_.Join("valid.safetensors");
    EXPECT_OK(WriteSiteStatistics(Env::Default(), path, sites));
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    EXPECT_OK(file);
    std::vector<RawTensor> raw;
    for (const TensorInfo& info : file->tensors()) {
      raw.push_back({{info.name, info.dtype, info.shape}, std::string(file->View(info).bytes())});
    }
    return raw;
  }

  RawTensor& Tensor(absl::string_view suffix) {
    const std::string name = absl::StrCat(kKey, suffix);
    for (RawTensor& t : raw_) {
      if (t.spec.name == name) return t;
    }
    ADD_FAILURE() << "no tensor " << name;
    std::abort();
  }
  void Remove(absl::string_view suffix) {
    const std::string name = absl::StrCat(kKey, suffix);
    std::erase_if(raw_, [&](const RawTensor& t) { return t.spec.name == name; });
  }
  // The byte offset of element i of an 8-byte tensor.
  static size_t Offset(const RawTensor& t, int64_t i) {
    if (i < 0 || static_cast<size_t>(i + 1) * 8 > t.bytes.size()) {
      ADD_FAILURE() << t.spec.name << " has no element " << i;
      std::abort();
    }
    return static_cast<size_t>(i) * 8;
  }
  static double GetF64(const RawTensor& t, int64_t i) {
    double v;
    std::memcpy(&v, t.bytes.data() + Offset(t, i), 8);
    return v;
  }
  static void SetF64(RawTensor& t, int64_t i, double v) {
    std::memcpy(t.bytes.data() + Offset(t, i), &v, 8);
  }
  static void SetI64(RawTensor& t, int64_t i, int64_t v) {
    std::memcpy(t.bytes.data() + Offset(t, i), &v, 8);
  }

  // Writes raw_ and reads it back as statistics.
  absl::Status Read() {
    const std::string path = dir_.Join("bad.safetensors");
    std::vector<TensorSpec> specs;
    for (const RawTensor& t : raw_) specs.push_back(t.spec);
    absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
        SafetensorsWriter::Create(Env::Default(), path, specs);
    if (!writer.ok()) return writer.status();
    for (const RawTensor& t : raw_) {
      absl::Status status = (*writer)->Append(t.bytes);
      if (!status.ok()) return status;
    }
    absl::Status status = (*writer)->Finish();
    if (!status.ok()) return status;
    absl::StatusOr<std::map<std::string, SiteStatistics>> sites = ReadSiteStatistics(path);
    if (sites.ok()) return absl::OkStatus();
    // Every message of the reader starts with the path.
    EXPECT_EQ(sites.status().message().substr(0, path.size()), path) << sites.status();
    return sites.status();
  }

  TempDir dir_;
  std::vector<RawTensor> raw_;
};

TEST_F(MalformedFileTest, TheUnalteredFileReads) {
  EXPECT_OK(Read());
  raw_ = ValidRaw(/*block_size=*/0);
  EXPECT_OK(Read());
}

TEST_F(MalformedFileTest, MissingFileIsNotFound) {
  EXPECT_STATUS(ReadSiteStatistics(dir_.Join("absent.safetensors")), absl::StatusCode::kNotFound,
                "absent.safetensors");
}

TEST_F(MalformedFileTest, NonSymmetricBlock) {
  // Block 1 starts at element 16: [0, 2] is at 16 + 2, its mirror [2, 0] at
  // 16 + 8, the diagonal [0, 0] and [2, 2] at 16 and 16 + 10.
  RawTensor& sx = Tensor(".sx");
  const double scale = std::sqrt(GetF64(sx, 16) * GetF64(sx, 26));
  SetF64(sx, 16 + 2, GetF64(sx, 16 + 2) + 1e-6 * scale);
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.sx: block 1: not symmetric at [0, 2]");
}

TEST_F(MalformedFileTest, NonSymmetricFullMatrix) {
  raw_ = ValidRaw(/*block_size=*/0);
  RawTensor& sx = Tensor(".sx");
  SetF64(sx, 9 * 10 + 4, GetF64(sx, 9 * 10 + 4) + 1e-3 * GetF64(sx, 0));
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.sx: not symmetric at [4, 9]");
}

TEST_F(MalformedFileTest, AsymmetryWithinToleranceIsAccepted) {
  raw_ = ValidRaw(/*block_size=*/0);
  RawTensor& sx = Tensor(".sx");
  SetF64(sx, 9 * 10 + 4, GetF64(sx, 9 * 10 + 4) * (1.0 + 1e-13));
  EXPECT_OK(Read());
}

TEST_F(MalformedFileTest, NaNInMatrix) {
  SetF64(Tensor(".sx_tail"), 3, std::numeric_limits<double>::quiet_NaN());
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.sx_tail: [1, 1] is NaN");
}

TEST_F(MalformedFileTest, InfiniteSum) {
  SetF64(Tensor(".range_sq_sum"), 1, std::numeric_limits<double>::infinity());
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.range_sq_sum[1] (symmetric) is infinite");
}

TEST_F(MalformedFileTest, NegativeDiagonal) {
  RawTensor& sx = Tensor(".sx");
  SetF64(sx, 16 + 3 * 4 + 3, -1.0);  // block 1, [3, 3]
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.sx: block 1: diagonal [3, 3] = -1 is negative");
}

TEST_F(MalformedFileTest, NegativeNormSum) {
  SetF64(Tensor(".norm_sq_sum"), 0, -2.0);
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.norm_sq_sum = -2 is negative");
}

TEST_F(MalformedFileTest, NotPositiveSemiDefinite) {
  // Symmetric, but |S_01| > sqrt(S_00 S_11).
  RawTensor& sx = Tensor(".sx");
  const double big = 2.0 * std::sqrt(GetF64(sx, 0) * GetF64(sx, 5));
  SetF64(sx, 1, big);
  SetF64(sx, 4, big);
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.sx: block 0: [0, 1] = ");
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument, "Cauchy-Schwarz");
}

TEST_F(MalformedFileTest, ZeroTokens) {
  SetI64(Tensor(".tokens"), 0, 0);
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.tokens: 0 tokens, expected at least 1");
}

TEST_F(MalformedFileTest, MissingTensors) {
  for (absl::string_view suffix : {".sx", ".tokens", ".range_sq_sum", ".norm_sq_sum"}) {
    SCOPED_TRACE(suffix);
    raw_ = ValidRaw(4);
    Remove(suffix);
    EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                  absl::StrCat("model.layers.3.mlp_in", suffix, ": missing"));
  }
}

// Without its tail, the blocks look like a site of d = 8; the trace no longer
// matches the norm sum, which covers all ten channels.
TEST_F(MalformedFileTest, MissingTailIsCaughtByTheTrace) {
  Remove(".sx_tail");
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument, "model.layers.3.mlp_in.norm_sq_sum: ");
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument, "differs from the trace of");
}

// A producer that stores E[x x^T] instead of the sum.
TEST_F(MalformedFileTest, MeanInsteadOfSum) {
  raw_ = ValidRaw(/*block_size=*/0);
  RawTensor& sx = Tensor(".sx");
  for (int64_t i = 0; i < 100; ++i) SetF64(sx, i, GetF64(sx, i) / 40.0);
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument, "not means");
}

TEST_F(MalformedFileTest, SwappedRangeSums) {
  RawTensor& range = Tensor(".range_sq_sum");
  const double asymmetric = GetF64(range, 0);
  const double symmetric = GetF64(range, 1);
  ASSERT_GT(symmetric, asymmetric);
  SetF64(range, 0, symmetric);
  SetF64(range, 1, asymmetric);
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument, "swapped");
}

TEST_F(MalformedFileTest, RangeSumAboveNormSum) {
  RawTensor& range = Tensor(".range_sq_sum");
  const double norm_sq = GetF64(Tensor(".norm_sq_sum"), 0);
  SetF64(range, 0, 4.0 * norm_sq);
  SetF64(range, 1, 4.5 * norm_sq);
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument, "per token max|x|^2 <= ||x||^2");
}

TEST_F(MalformedFileTest, WrongShapes) {
  Tensor(".sx").spec.shape = {4, 4, 2};  // same bytes, not square blocks
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.sx: shape [4, 4, 2] is neither a full matrix");

  raw_ = ValidRaw(4);
  Tensor(".sx_tail").spec.shape = {1, 4};
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.sx_tail: shape [1, 4], expected [r, r] with 1 <= r < 4");

  raw_ = ValidRaw(4);
  Tensor(".tokens").spec.shape = {};
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.tokens: shape [], expected [1]");

  raw_ = ValidRaw(4);
  RawTensor& range = Tensor(".range_sq_sum");
  range.spec.shape = {3};
  range.bytes += std::string(8, '\0');
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.range_sq_sum: shape [3], expected [2]");
}

TEST_F(MalformedFileTest, TailBesideAFullMatrix) {
  std::vector<RawTensor> blocks = ValidRaw(4);
  raw_ = ValidRaw(0);
  for (RawTensor& t : blocks) {
    if (t.spec.name == absl::StrCat(kKey, ".sx_tail")) raw_.push_back(t);
  }
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.sx_tail: present, but model.layers.3.mlp_in.sx [10, 10]");
}

TEST_F(MalformedFileTest, SingleBlockWithoutTail) {
  raw_ = ValidRaw(0);
  Tensor(".sx").spec.shape = {1, 10, 10};
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "a single block [1, 10, 10] with no model.layers.3.mlp_in.sx_tail");
}

TEST_F(MalformedFileTest, WrongDTypes) {
  RawTensor& sx = Tensor(".sx");
  sx.spec.dtype = DType::kF32;
  sx.spec.shape = {4, 4, 4};  // the same bytes as F32
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.sx: dtype F32, expected F64");

  raw_ = ValidRaw(4);
  Tensor(".tokens").spec.dtype = DType::kF64;
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.tokens: dtype F64, expected I64");
}

TEST_F(MalformedFileTest, StrayTensors) {
  raw_.push_back({{"model.layers.3.mlp_in.mean", DType::kF64, {10}}, std::string(80, '\0')});
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.mean: not a site statistics tensor");

  raw_ = ValidRaw(4);
  raw_.push_back({{".tokens", DType::kI64, {1}}, std::string(8, '\1')});
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument, ".tokens: empty site key");
}

TEST_F(MalformedFileTest, AbsMaxIsOptional) {
  Remove(".absmax");
  ASSERT_OK(Read());
  absl::StatusOr<std::map<std::string, SiteStatistics>> sites =
      ReadSiteStatistics(dir_.Join("bad.safetensors"));
  ASSERT_OK(sites);
  EXPECT_FALSE(sites->begin()->second.has_channel_absmax());
}

TEST_F(MalformedFileTest, AbsMaxInconsistentWithTheDiagonal) {
  RawTensor& absmax = Tensor(".absmax");
  SetF64(absmax, 2, GetF64(absmax, 2) * 1e4);  // larger than any token allows
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.absmax: element 2 = ");
  raw_ = ValidRaw(4);
  SetF64(Tensor(".absmax"), 5, -1.0);
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument,
                "model.layers.3.mlp_in.absmax: element 5 is -1");
}

TEST_F(MalformedFileTest, NoSites) {
  raw_.clear();
  EXPECT_STATUS(Read(), absl::StatusCode::kInvalidArgument, "holds no site statistics");
}

}  // namespace
}  // namespace catq
