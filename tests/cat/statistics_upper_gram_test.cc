// The block-mode kernel of core/cat/upper_gram.h, alone and inside
// SiteStatistics, against plain float64 loops on shapes that exercise every
// edge: blocks whose size is not a multiple of the 4 x 12 tile, a smaller last
// block, token counts that are not multiples of a panel, k = 1 and k = d.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/cat/site_statistics.h"
#include "core/cat/upper_gram.h"
#include "core/math/blas.h"
#include "core/math/eigen_types.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

// Float64 sums agree with the references to rounding only (different order).
constexpr double kTolerance = 1e-12;

RowMatrixXf Activations(int64_t tokens, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  RowMatrixXf x(tokens, dim);
  for (int64_t t = 0; t < tokens; ++t) {
    const float shared = normal(rng);
    for (int64_t j = 0; j < dim; ++j) {
      // Channel scales over two decades and a shared factor: correlated
      // channels of very different sizes.
      x(t, j) = std::pow(10.0f, static_cast<float>(j % 7) / 3.0f - 1.0f) *
                (normal(rng) + 0.6f * shared + (j % 3 == 0 ? 0.5f : 0.0f));
    }
  }
  return x;
}

// sum_t x_ti x_tj over columns [begin, begin + n), as a plain float64 loop.
Eigen::MatrixXd PlainGram(const RowMatrixXf& x, int64_t begin, int64_t n) {
  Eigen::MatrixXd sum = Eigen::MatrixXd::Zero(n, n);
  for (int64_t t = 0; t < x.rows(); ++t) {
    for (int64_t i = 0; i < n; ++i) {
      const double xi = x(t, begin + i);
      for (int64_t j = 0; j < n; ++j) sum(i, j) += xi * static_cast<double>(x(t, begin + j));
    }
  }
  return sum;
}

// The largest |a_ij - b_ij| / sqrt(b_ii b_jj) over the upper triangle: the
// error relative to the scale of the two channels, so that small channels
// are held to the same relative accuracy as large ones.
double UpperRelativeError(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  double worst = 0.0;
  for (int64_t i = 0; i < b.rows(); ++i) {
    for (int64_t j = i; j < b.cols(); ++j) {
      const double scale = std::sqrt(b(i, i) * b(j, j));
      worst = std::max(worst, std::abs(a(i, j) - b(i, j)) / scale);
    }
  }
  return worst;
}

// A 32-byte-aligned panel for `rows` tokens of n channels.
struct Panel {
  Panel(int64_t rows, int64_t n)
      : storage(static_cast<size_t>(rows * upper_gram::PanelStride(n)) + 4) {
    data = storage.data();
    while (reinterpret_cast<uintptr_t>(data) % 32 != 0) ++data;
  }
  std::vector<double> storage;
  double* data = nullptr;
};

TEST(UpperGram, PackPanelWidensExactlyAndZerosThePadding) {
  if (!upper_gram::Available()) GTEST_SKIP() << "this CPU lacks AVX2/FMA: DSYRK is used instead";
  const RowMatrixXf x = Activations(5, 23, 1);
  for (int64_t n : {1, 3, 4, 8, 13, 20}) {
    SCOPED_TRACE(absl::StrCat("n = ", n));
    const int64_t ld = upper_gram::PanelStride(n);
    EXPECT_EQ(ld % 4, 0);
    EXPECT_GE(ld, n);
    Panel panel(5, n);
    // Columns [2, 2 + n) of each row, at the batch's row stride.
    upper_gram::PackPanel(x.data() + 2, x.outerStride(), 5, n, panel.data);
    for (int64_t t = 0; t < 5; ++t) {
      for (int64_t j = 0; j < ld; ++j) {
        const double want = j < n ? static_cast<double>(x(t, 2 + j)) : 0.0;
        EXPECT_EQ(panel.data[t * ld + j], want) << "t " << t << ", j " << j;
      }
    }
  }
}

// The one-pass token scan against its definition, on lengths around the
// 8-float vector, with a NaN or infinity at every position.
TEST(UpperGram, ScanTokenFollowsTheDefinitions) {
  if (!upper_gram::Available()) GTEST_SKIP() << "this CPU lacks AVX2/FMA";
  const RowMatrixXf x = Activations(4, 33, 6);
  for (int64_t n : {1, 7, 8, 9, 17, 33}) {
    for (int64_t t = 0; t < x.rows(); ++t) {
      SCOPED_TRACE(absl::StrCat("n = ", n, ", token ", t));
      std::vector<float> absmax(static_cast<size_t>(n), 0.5f);
      const upper_gram::TokenScan scan = upper_gram::ScanToken(&x(t, 0), n, absmax.data());
      float hi = 0.0f;
      float lo = 0.0f;
      for (int64_t j = 0; j < n; ++j) {
        hi = std::max(hi, x(t, j));
        lo = std::min(lo, x(t, j));
        EXPECT_EQ(absmax[static_cast<size_t>(j)], std::max(0.5f, std::abs(x(t, j)))) << j;
      }
      EXPECT_TRUE(scan.finite);
      EXPECT_EQ(scan.hi, hi);
      EXPECT_EQ(scan.lo, lo);

      for (float bad :
           {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
            -std::numeric_limits<float>::infinity()}) {
        for (int64_t j = 0; j < n; ++j) {
          std::vector<float> token(&x(t, 0), &x(t, 0) + n);
          token[static_cast<size_t>(j)] = bad;
          EXPECT_FALSE(upper_gram::ScanToken(token.data(), n, absmax.data()).finite)
              << bad << " at " << j;
        }
      }
    }
  }
}

// Every block size from 1 up past two 12-wide tiles and the bench's 128, with
// token counts below, at and above multiples of 2 (the 4-wide tile's pairs)
// and of a panel, into a C with a wider row stride whose extra columns and
// lower triangle the kernel must leave alone or ignore.
TEST(UpperGram, EqualsPlainFloat64Loop) {
  if (!upper_gram::Available()) GTEST_SKIP() << "this CPU lacks AVX2/FMA: DSYRK is used instead";
  const RowMatrixXf x = Activations(67, 131, 2);
  for (int64_t n : {1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 16, 23, 24, 25, 29, 36, 127, 128, 131}) {
    for (int64_t rows : {1, 2, 3, 32, 33, 67}) {
      SCOPED_TRACE(absl::StrCat("n = ", n, ", rows = ", rows));
      const RowMatrixXf part = x.topRows(rows);
      Panel panel(rows, n);
      upper_gram::PackPanel(part.data(), part.outerStride(), rows, n, panel.data);
      // Start from a known C, as accumulation does: C = its initial value
      // plus the Gram sum.
      const int64_t ldc = n + 3;
      constexpr double kSentinel = 12345.0;
      RowMatrixXd c = RowMatrixXd::Constant(n, ldc, kSentinel);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = i; j < n; ++j) c(i, j) = 0.5;
      }
      upper_gram::AddUpperGram(panel.data, rows, n, c.data(), ldc);

      const Eigen::MatrixXd want = PlainGram(part, 0, n).array() + 0.5;
      EXPECT_LT(UpperRelativeError(c.leftCols(n), want), kTolerance);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = n; j < ldc; ++j) {
          EXPECT_EQ(c(i, j), kSentinel) << "wrote past column n - 1 at " << i << ", " << j;
        }
      }
    }
  }
}

// SiteStatistics in block mode (the kernel where the CPU has it, DSYRK
// otherwise) against the plain loop per block: a smaller last block, k = 1,
// block sizes that are not multiples of 4, the largest kernel block and one
// past it (DSYRK), and k = d (full mode), each over token counts that are
// not multiples of the kernel's groups and panels, in two batches.
TEST(UpperGram, BlockModeStatisticsEqualPlainFloat64Loop) {
  constexpr int64_t kDim = 300;
  const RowMatrixXf x = Activations(131, kDim, 3);
  for (int64_t k : {1, 5, 7, 12, 128, 131, 256, 257, 299, 300}) {
    for (int64_t tokens : {1, 63, 64, 65, 131}) {
      SCOPED_TRACE(absl::StrCat("k = ", k, ", tokens = ", tokens));
      absl::StatusOr<SiteStatistics> stats = SiteStatistics::Create(kDim, {.block_size = k});
      ASSERT_OK(stats);
      const int64_t first = tokens / 3;
      ASSERT_OK(stats->Accumulate(x.topRows(first)));
      ASSERT_OK(stats->Accumulate(x.middleRows(first, tokens - first)));
      ASSERT_EQ(stats->NumBlocks(), (kDim + k - 1) / k);
      const RowMatrixXf part = x.topRows(tokens);
      for (int64_t b = 0; b < stats->NumBlocks(); ++b) {
        const ChannelRange range = stats->BlockRange(b);
        absl::StatusOr<Eigen::MatrixXd> sum = stats->SumBlock(b);
        ASSERT_OK(sum);
        EXPECT_LT(UpperRelativeError(*sum, PlainGram(part, range.begin, range.size)), kTolerance)
            << "block " << b;
      }
    }
  }
}

// The kernel's single pass adds group after group of tokens as it checks
// them: a NaN or infinity in a late group must still leave the statistics
// bit for bit as they were, from empty and from non-empty statistics.
TEST(UpperGram, ABadTokenInALateGroupLeavesTheStatisticsAsTheyWere) {
  const RowMatrixXf clean = Activations(300, 260, 5);
  for (int64_t k : {7, 128}) {
    for (int64_t tokens_before : {0, 50}) {
      SCOPED_TRACE(absl::StrCat("k = ", k, ", tokens before = ", tokens_before));
      absl::StatusOr<SiteStatistics> stats = SiteStatistics::Create(260, {.block_size = k});
      ASSERT_OK(stats);
      ASSERT_OK(stats->Accumulate(clean.topRows(tokens_before)));
      const SiteStatistics before = *stats;

      RowMatrixXf bad = clean.bottomRows(250);
      bad(201, 250) = std::numeric_limits<float>::quiet_NaN();  // the fourth group of 64
      EXPECT_STATUS(stats->Accumulate(bad), absl::StatusCode::kInvalidArgument,
                    "batch row 201, column 250 is NaN");
      bad(201, 250) = 0.0f;
      bad(249, 0) = -std::numeric_limits<float>::infinity();  // the last row
      EXPECT_STATUS(stats->Accumulate(bad), absl::StatusCode::kInvalidArgument,
                    "batch row 249, column 0 is -inf");

      EXPECT_EQ(stats->tokens(), tokens_before);
      for (int64_t b = 0; b < stats->NumBlocks(); ++b) {
        absl::StatusOr<Eigen::MatrixXd> now = stats->SumBlock(b);
        absl::StatusOr<Eigen::MatrixXd> was = before.SumBlock(b);
        ASSERT_OK(now);
        ASSERT_OK(was);
        EXPECT_EQ(*now, *was) << "block " << b;
      }
      EXPECT_EQ(stats->channel_absmax(), before.channel_absmax());
      EXPECT_EQ(stats->range_sq_sum(ActivationRange::kAsymmetric),
                before.range_sq_sum(ActivationRange::kAsymmetric));
      EXPECT_EQ(stats->range_sq_sum(ActivationRange::kSymmetric),
                before.range_sq_sum(ActivationRange::kSymmetric));
    }
  }
}

// Job outputs are compared byte for byte across runs and worker counts: the
// same batches give the same bits, whatever the OpenBLAS thread count.
TEST(UpperGram, BlockModeIsTheSameBitsOnEveryRunAndThreadCount) {
  const RowMatrixXf x = Activations(300, 520, 4);
  std::vector<Eigen::MatrixXd> first;
  for (int threads : {1, BlasMaxThreads(), 1}) {
    SCOPED_TRACE(absl::StrCat("threads = ", threads));
    ScopedBlasThreads scoped(threads);
    absl::StatusOr<SiteStatistics> stats = SiteStatistics::Create(520, {.block_size = 128});
    ASSERT_OK(stats);
    ASSERT_OK(stats->Accumulate(x.topRows(100)));
    ASSERT_OK(stats->Accumulate(x.bottomRows(200)));
    for (int64_t b = 0; b < stats->NumBlocks(); ++b) {
      absl::StatusOr<Eigen::MatrixXd> sum = stats->SumBlock(b);
      ASSERT_OK(sum);
      if (first.size() < static_cast<size_t>(stats->NumBlocks())) {
        first.push_back(*sum);
      } else {
        EXPECT_EQ(*sum, first[static_cast<size_t>(b)]) << "block " << b;
      }
    }
  }
}

}  // namespace
}  // namespace catq
