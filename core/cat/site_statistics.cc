// Accumulation and accessors of SiteStatistics; the file format is in
// site_statistics_io.cc.
#include "core/cat/site_statistics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/cat/upper_gram.h"
#include "core/math/blas.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// The default chunk: about 16 MB of doubles, at least 256 rows. SYRK reads
// and writes its output triangle once per call, so a chunk must be tall
// enough (K rows) for the flops to outweigh that traffic; from 256 rows on,
// the kernel runs at its full speed (bench/statistics_bench.cc). Whole rows
// are converted even in block mode: reading the batch sequentially is faster
// than gathering one block's columns at a time.
constexpr int64_t kChunkElements = int64_t{1} << 21;
constexpr int64_t kMinDefaultChunkRows = 256;
constexpr int64_t kMaxDefaultChunkRows = 4096;

int64_t DefaultChunkRows(int64_t dim) {
  return std::clamp(kChunkElements / dim, kMinDefaultChunkRows, kMaxDefaultChunkRows);
}

// What upper_gram::ScanToken finds (bar the channel maxima), where the CPU
// lacks AVX2: three vectorized float reductions, which beat one fused scalar
// loop at the baseline ISA. x * 0 is NaN exactly for a NaN or infinite
// x, so the sum of x * 0 is the finiteness test; max and min count only when
// it passes.
upper_gram::TokenScan PortableScanToken(const float* v, int64_t n) {
  const Eigen::Map<const Eigen::ArrayXf> x(v, n);
  upper_gram::TokenScan scan;
  scan.finite = std::isfinite((x * 0.0f).sum());
  scan.hi = std::max(x.maxCoeff(), 0.0f);
  scan.lo = std::min(x.minCoeff(), 0.0f);
  return scan;
}

// Widens n floats to doubles. Written in groups of four because g++ at -O2
// vectorizes straight-line code but not this loop: the groups become packed
// conversions, twice as fast as a scalar loop or Eigen's cast here.
void Widen(const float* src, double* dst, int64_t n) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    dst[j] = src[j];
    dst[j + 1] = src[j + 1];
    dst[j + 2] = src[j + 2];
    dst[j + 3] = src[j + 3];
  }
  for (; j < n; ++j) dst[j] = src[j];
}

absl::Status NonFiniteError(const float* row, int64_t t, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    if (!std::isfinite(row[j])) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch row ", t, ", column ", j, " is ",
                       std::isnan(row[j]) ? "NaN" : (row[j] > 0 ? "+inf" : "-inf"),
                       "; nothing of the batch was added"));
    }
  }
  return absl::InternalError(absl::StrCat("batch row ", t, ": no non-finite value found"));
}

// Block mode with the kernel of upper_gram.h, for blocks up to this size: a
// panel of kPanelBytes holds at least 16 tokens. Larger blocks use DSYRK,
// which is fast enough there (0.73x of DGEMM and up from k = 256).
constexpr int64_t kMaxKernelBlock = 256;
// A panel of tokens by one block's channels in float64: 32 KB stays in L1
// (48 KB) beside the C tile being summed.
constexpr int64_t kPanelBytes = 32 * 1024;
// Tokens per group: each group goes through every block before the next
// group, in panels of up to kPanelBytes. Measured on the bench's d = 4096,
// k = 128: 64 beats 32 and 256 to 8192.
constexpr int64_t kGroupTokens = 64;

bool UsesGramKernel(int64_t dim, int64_t block_size) {
  return block_size < dim && block_size <= kMaxKernelBlock && upper_gram::Available();
}

// Adds x^T x into the upper triangles of the diagonal blocks `upper` (of
// block_size channels, the last maybe fewer) with the kernel of upper_gram.h,
// kGroupTokens tokens at a time through every block. `scratch` is reused for
// the panel. REQUIRES: UsesGramKernel(...).
void AddBlocksWithKernel(const Eigen::Ref<const RowMatrixXf>& x, int64_t block_size,
                         std::vector<RowMatrixXd>& upper, std::vector<double>& scratch) {
  const int64_t panel_tokens = std::clamp<int64_t>(
      kPanelBytes / (upper_gram::PanelStride(block_size) * static_cast<int64_t>(sizeof(double))), 1,
      kGroupTokens);
  const size_t panel_doubles =
      static_cast<size_t>(panel_tokens * upper_gram::PanelStride(block_size));
  // Room to align the panel to 32 bytes.
  if (scratch.size() < panel_doubles + 4) scratch.resize(panel_doubles + 4);
  double* panel = scratch.data();
  while (reinterpret_cast<uintptr_t>(panel) % 32 != 0) ++panel;

  const int64_t rows = x.rows();
  const int64_t stride = x.outerStride();
  for (int64_t g0 = 0; g0 < rows; g0 += kGroupTokens) {
    const int64_t g1 = std::min(rows, g0 + kGroupTokens);
    for (size_t b = 0; b < upper.size(); ++b) {
      const int64_t begin = static_cast<int64_t>(b) * block_size;
      const int64_t n = upper[b].rows();
      for (int64_t t0 = g0; t0 < g1; t0 += panel_tokens) {
        const int64_t m = std::min(panel_tokens, g1 - t0);
        upper_gram::PackPanel(x.data() + t0 * stride + begin, stride, m, n, panel);
        upper_gram::AddUpperGram(panel, m, n, upper[b].data(), n);
      }
    }
  }
}

}  // namespace

// What a batch contributes besides x x^T, summed token by token in order.
struct SiteStatistics::BatchScan {
  explicit BatchScan(int64_t dim) : absmax(Eigen::ArrayXf::Zero(dim)) {}

  // Checks tokens [t0, t1) of x and adds their ranges and magnitudes.
  // InvalidArgument naming the first NaN or infinity (a batch row index).
  absl::Status Rows(const Eigen::Ref<const RowMatrixXf>& x, int64_t t0, int64_t t1) {
    const int64_t dim = x.cols();
    // The AVX2 scan where the CPU has it: the same values, one read.
    const bool single_pass = upper_gram::Available();
    for (int64_t t = t0; t < t1; ++t) {
      const float* row = x.data() + t * x.outerStride();
      const upper_gram::TokenScan token = single_pass
                                              ? upper_gram::ScanToken(row, dim, absmax.data())
                                              : PortableScanToken(row, dim);
      if (!token.finite) return NonFiniteError(row, t, dim);
      if (!single_pass) absmax = absmax.max(Eigen::Map<const Eigen::ArrayXf>(row, dim).abs());
      const double hi = token.hi;
      const double lo = token.lo;
      const double asymmetric_range = hi - lo;
      const double symmetric_range = 2.0 * std::max(hi, -lo);
      asymmetric += asymmetric_range * asymmetric_range;
      symmetric += symmetric_range * symmetric_range;
    }
    return absl::OkStatus();
  }

  double asymmetric = 0.0;
  double symmetric = 0.0;
  Eigen::ArrayXf absmax;
};

SiteStatistics::SiteStatistics(int64_t dim, int64_t block_size, int64_t chunk_rows)
    : dim_(dim),
      block_size_(block_size),
      chunk_rows_(chunk_rows),
      channel_absmax_(Eigen::VectorXd::Zero(dim)) {
  const int64_t blocks = (dim + block_size - 1) / block_size;
  upper_.reserve(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t size = std::min(block_size, dim - b * block_size);
    upper_.push_back(RowMatrixXd::Zero(size, size));
  }
}

absl::StatusOr<SiteStatistics> SiteStatistics::Create(int64_t dim,
                                                      const SiteStatisticsOptions& options) {
  if (dim < 1 || dim > kMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat("dim must be in [1, ", kMaxDim, "], got ", dim));
  }
  if (options.block_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_size must be >= 0 (0: full matrix), got ", options.block_size));
  }
  if (options.chunk_rows < 0 || options.chunk_rows > kMaxChunkRows) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_rows must be in [0, ", kMaxChunkRows,
                                                   "] (0: automatic), got ", options.chunk_rows));
  }
  const bool full = options.block_size == 0 || options.block_size >= dim;
  if (full && dim > kMaxFullDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("dim ", dim, " exceeds ", kMaxFullDim, ", the largest kept as a full matrix (",
                     "block_size ", options.block_size, "); use a block size below dim"));
  }
  return SiteStatistics(dim, full ? dim : options.block_size,
                        options.chunk_rows > 0 ? options.chunk_rows : DefaultChunkRows(dim));
}

absl::Status SiteStatistics::Accumulate(const Eigen::Ref<const RowMatrixXf>& x) {
  if (x.cols() != dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch has ", x.cols(), " columns, expected ", dim_, " (the site dimension)"));
  }
  const int64_t rows = x.rows();
  if (rows == 0) return absl::OkStatus();
  if (rows > std::numeric_limits<int64_t>::max() - tokens_) {
    return absl::OutOfRangeError(
        absl::StrCat("token count ", tokens_, " + ", rows, " overflows int64"));
  }

  BatchScan scan(dim_);
  if (UsesGramKernel(dim_, block_size_)) {
    CATQ_RETURN_IF_ERROR(AddWithKernel(x, scan));
  } else {
    // The whole batch is checked, and what concentration needs summed,
    // before any of it is added, so that an error leaves the statistics as
    // they were.
    CATQ_RETURN_IF_ERROR(scan.Rows(x, 0, rows));
    AddWithSyrk(x);
  }

  tokens_ += rows;
  if (has_channel_absmax()) {
    channel_absmax_ = channel_absmax_.cwiseMax(scan.absmax.matrix().cast<double>());
  }
  range_sq_sum_[static_cast<size_t>(ActivationRange::kAsymmetric)] += scan.asymmetric;
  range_sq_sum_[static_cast<size_t>(ActivationRange::kSymmetric)] += scan.symmetric;
  return absl::OkStatus();
}

// One pass over the batch: each group of kGroupTokens tokens is scanned,
// then added while it is still in cache (reading a large batch from memory
// twice, once to check it and once to add it, costs about as much as the
// conversion). An error in a later group must leave the statistics as they
// were, so the blocks are restored: zeroed when there were no tokens (what
// calibration's per-sequence buffers hold), else copied back from a
// snapshot taken first (d*k doubles, small beside a batch's work).
absl::Status SiteStatistics::AddWithKernel(const Eigen::Ref<const RowMatrixXf>& x,
                                           BatchScan& scan) {
  const bool snapshot = tokens_ > 0;
  if (snapshot) {
    scratch_.backup.resize(upper_.size());
    for (size_t b = 0; b < upper_.size(); ++b) scratch_.backup[b] = upper_[b];
  }
  const int64_t rows = x.rows();
  for (int64_t g0 = 0; g0 < rows; g0 += kGroupTokens) {
    const int64_t g1 = std::min(rows, g0 + kGroupTokens);
    if (absl::Status status = scan.Rows(x, g0, g1); !status.ok()) {
      for (size_t b = 0; b < upper_.size(); ++b) {
        if (snapshot) {
          upper_[b] = scratch_.backup[b];
        } else {
          upper_[b].setZero();
        }
      }
      return status;
    }
    AddBlocksWithKernel(x.middleRows(g0, g1 - g0), block_size_, upper_, scratch_.data);
  }
  return absl::OkStatus();
}

// Float64 copies of chunk_rows_ tokens at a time, each added with one SYRK
// per block on its column slice (lda = dim: no gather needed).
void SiteStatistics::AddWithSyrk(const Eigen::Ref<const RowMatrixXf>& x) {
  const int64_t rows = x.rows();
  const int64_t chunk = std::min(chunk_rows_, rows);
  if (scratch_.data.size() < static_cast<size_t>(chunk * dim_)) {
    scratch_.data.resize(static_cast<size_t>(chunk * dim_));
  }
  double* a = scratch_.data.data();
  const int lda = static_cast<int>(dim_);
  for (int64_t t0 = 0; t0 < rows; t0 += chunk) {
    const int64_t n = std::min(chunk, rows - t0);
    for (int64_t t = 0; t < n; ++t) {
      Widen(x.data() + (t0 + t) * x.outerStride(), a + t * dim_, dim_);
    }
    for (size_t b = 0; b < upper_.size(); ++b) {
      const int64_t begin = static_cast<int64_t>(b) * block_size_;
      const int k = static_cast<int>(upper_[b].rows());
      // Row-major C += A^T A for the n x k slice A: upper triangle only.
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, k, static_cast<int>(n), 1.0, a + begin,
                  lda, 1.0, upper_[b].data(), k);
    }
  }
}

absl::Status SiteStatistics::Merge(const SiteStatistics& other) {
  if (other.dim_ != dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot merge statistics: dim ", other.dim_, " into dim ", dim_));
  }
  if (other.block_size_ != block_size_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge statistics: block_size ",
                                                   other.block_size_, " into block_size ",
                                                   block_size_, " (dim ", dim_, ")"));
  }
  if (other.tokens_ > std::numeric_limits<int64_t>::max() - tokens_) {
    return absl::OutOfRangeError(
        absl::StrCat("token count ", tokens_, " + ", other.tokens_, " overflows int64"));
  }
  // Whole matrices: the lower triangles are never read, and one flat add is
  // simpler and as fast as a triangular one.
  for (size_t b = 0; b < upper_.size(); ++b) upper_[b] += other.upper_[b];
  tokens_ += other.tokens_;
  for (size_t i = 0; i < range_sq_sum_.size(); ++i) range_sq_sum_[i] += other.range_sq_sum_[i];
  // A maximum is known only when both sides know theirs.
  if (has_channel_absmax() && other.has_channel_absmax()) {
    channel_absmax_ = channel_absmax_.cwiseMax(other.channel_absmax_);
  } else {
    channel_absmax_.resize(0);
  }
  return absl::OkStatus();
}

void SiteStatistics::Clear() {
  for (RowMatrixXd& block : upper_) block.setZero();
  tokens_ = 0;
  range_sq_sum_ = {0.0, 0.0};
  channel_absmax_ = Eigen::VectorXd::Zero(dim_);
}

double SiteStatistics::norm_sq_sum() const {
  double trace = 0.0;
  for (const RowMatrixXd& block : upper_) trace += block.trace();
  return trace;
}

ChannelRange SiteStatistics::BlockRange(int64_t b) const {
  return ChannelRange{b * block_size_, upper_[static_cast<size_t>(b)].rows()};
}

absl::StatusOr<Eigen::MatrixXd> SiteStatistics::SumBlock(int64_t b) const {
  if (b < 0 || b >= NumBlocks()) {
    return absl::OutOfRangeError(
        absl::StrCat("block ", b, " out of range: the site has ", NumBlocks(), " blocks"));
  }
  Eigen::MatrixXd sum = upper_[static_cast<size_t>(b)].selfadjointView<Eigen::Upper>();
  return sum;
}

absl::StatusOr<Eigen::MatrixXd> SiteStatistics::SecondMomentBlock(int64_t b) const {
  if (tokens_ == 0) {
    return absl::FailedPreconditionError("no tokens accumulated: the second moment is undefined");
  }
  absl::StatusOr<Eigen::MatrixXd> sum = SumBlock(b);
  if (!sum.ok()) return sum.status();
  *sum /= static_cast<double>(tokens_);
  return sum;
}

absl::StatusOr<Eigen::MatrixXd> SiteStatistics::SumFull() const {
  if (!is_full()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the statistics keep only the diagonal blocks (block_size ", block_size_,
                     ", dim ", dim_, "), not the full matrix"));
  }
  return SumBlock(0);
}

absl::StatusOr<Eigen::MatrixXd> SiteStatistics::SecondMomentFull() const {
  if (!is_full()) return SumFull().status();
  return SecondMomentBlock(0);
}

absl::StatusOr<double> SiteStatistics::Concentration(ActivationRange range) const {
  if (tokens_ == 0) {
    return absl::FailedPreconditionError("no tokens accumulated: concentration is undefined");
  }
  const double range_sq = range_sq_sum(range);
  if (range_sq == 0.0) {
    return absl::FailedPreconditionError("every token is zero: concentration is undefined (0 / 0)");
  }
  return norm_sq_sum() / range_sq;
}

}  // namespace catq
