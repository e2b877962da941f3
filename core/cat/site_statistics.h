// File: core/cat/site_statistics.h
//
// SiteStatistics: what the CAT engine needs to know about the activations of
// one site (cat-method.md sections 1 and 2.3), accumulated over calibration
// tokens without keeping them. For a site of dimension d and tokens x_t:
//
//   Sx sum          sum_t x_t x_t^T, float64, either the full d x d matrix or
//                   only its k x k diagonal blocks (block CAT needs no more)
//   tokens          the number of tokens
//   norm_sq_sum     sum_t ||x_t||^2, the trace of the Sx sum (read off its
//                   diagonal, which holds sum_t x_ti^2, rather than summed twice)
//   range_sq_sum    sum_t r(x_t)^2 for the two per-token ranges:
//                     [0] asymmetric: r = max(x, 0) - min(x, 0), the range of the
//                         asymmetric activation grid (architecture.md section 4);
//                         for a token of mixed signs it equals max x - min x
//                     [1] symmetric:  r = 2 max|x|
//   channel absmax  max_t |x_tj| per channel j (float64 [d]), what the
//                   max-based SmoothQuant scales need
//
// so that Sx = E[x x^T] = sum / tokens and the concentration of cat-method.md,
// C(x) = E||x||^2 / E[r(x)^2] = norm_sq_sum / range_sq_sum, need no second pass.
//
//   CATQ_ASSIGN_OR_RETURN(SiteStatistics stats,
//                         SiteStatistics::Create(4096, {.block_size = 128}));
//   for (const RowMatrixXf& x : batches) {       // each [tokens, 4096], row-major
//     CATQ_RETURN_IF_ERROR(stats.Accumulate(x));
//   }
//   CATQ_ASSIGN_OR_RETURN(Eigen::MatrixXd sx_0, stats.SecondMomentBlock(0));  // 128 x 128
//   CATQ_RETURN_IF_ERROR(WriteSiteStatistics(env, path, {{"model.layers.3.mlp_in", stats}}));
//
// Numerics: full mode converts each batch to float64 in chunks of rows (a
// buffer the object keeps and reuses) and adds them with an OpenBLAS DSYRK
// into the upper triangle of the matrix. Block mode with k <= 256 on a CPU
// with AVX2 and FMA uses the kernel of core/cat/upper_gram.h instead, in one
// pass over the batch: each group of 64 tokens is checked and scanned, then,
// while still in cache, each block's columns are widened into a float64
// panel that stays in L1 and summed in 4 x 12 register tiles (1.4x the speed
// of DSYRK on 128 columns, bench/README.md); larger blocks, and CPUs without
// AVX2, use DSYRK. Either way the sums are float64, the lower triangle is
// never read and the accessors return symmetrized copies. Blocks are column
// ranges [b k, (b+1) k); when k does not divide d the last block is smaller
// (d - (n-1) k). Block mode keeps d*k doubles, full mode d*d, both plus the
// conversion buffer (chunk_rows x d doubles, about 16 MB by default; a 32 KB
// panel for the kernel, and a copy of the blocks once a batch is added to
// non-empty statistics). Nothing of a rejected batch is added: DSYRK's path
// checks the whole batch first; the kernel's restores the blocks.
//
// Thread-safety: const methods may run concurrently; Accumulate and Merge need
// exclusive access. Accumulate runs one SYRK per block and chunk with as many
// OpenBLAS threads as are set (core/math/blas.h); the block kernel runs on
// the calling thread (the worker pool runs OpenBLAS on one thread anyway).
// Copyable (the conversion buffer is not copied) and movable.
//
// ---------------------------------------------------------------------------
// File format (WriteSiteStatistics / ReadSiteStatistics)
//
// A safetensors file holding the statistics of any number of sites. For a
// site key K (any non-empty name, by convention "model.layers.{i}.{site}" with
// site attn_in, attn_out, mlp_in or mlp_out, e.g. "model.layers.3.mlp_in"):
//
//   K.sx            F64  [d, d]        full mode: the Sx *sum* (not the mean)
//                   F64  [n, k, k]     block mode: the n = floor(d / k) full
//                                      diagonal blocks of the Sx sum, block b
//                                      covering channels [b k, (b+1) k)
//   K.sx_tail       F64  [r, r]        block mode with r = d mod k > 0 only:
//                                      the last, smaller block (channels [n k, d))
//   K.tokens        I64  [1]           token count, >= 1
//   K.range_sq_sum  F64  [2]           [asymmetric, symmetric] as above
//   K.norm_sq_sum   F64  [1]           sum_t ||x_t||^2 (the trace of the Sx sum,
//                                      for readers that want only C(x))
//   K.absmax        F64  [d]           optional: max_t |x_tj| per channel; a file
//                                      without it serves every method but
//                                      SmoothQuant
//
// Matrices are row-major and stored whole (both triangles). The file is also
// the user's "precomputed statistics" calibration input, so reading checks
// everything and every message names the tensor:
//   - no other tensors; every site has all of its tensors, with these dtypes
//     and shapes; [1, k, k] with no tail is refused (that is the full matrix:
//     store [d, d]); a tail needs 1 <= r < k;
//   - every value finite; tokens >= 1; sums >= 0; Sx diagonal >= 0;
//   - Sx symmetric: |S_ij - S_ji| <= 1e-9 sqrt(S_ii S_jj) (the upper triangle is
//     what is read); |S_ij| <= (1 + 1e-6) sqrt(S_ii S_jj) (Cauchy-Schwarz, a
//     cheap part of positive semi-definiteness);
//   - consistency, to relative 1e-6: norm_sq_sum equals the trace of Sx (so a
//     mean stored in place of a sum is caught), and the per-token bounds
//     S / 4 <= A <= S and S / 4 <= norm_sq_sum <= d S / 4 hold for the sums
//     A = range_sq_sum[0], S = range_sq_sum[1] (a swapped pair is caught);
//   - absmax, when present: absmax_j^2 <= Sx_jj <= tokens * absmax_j^2 (one
//     token reaches the maximum, none exceeds it).
#ifndef CATQ_CORE_CAT_SITE_STATISTICS_H_
#define CATQ_CORE_CAT_SITE_STATISTICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/io/env.h"
#include "core/math/eigen_types.h"

namespace catq {

// The per-token range r(x) whose square SiteStatistics sums.
enum class ActivationRange {
  // max(x, 0) - min(x, 0): the asymmetric activation grid's range.
  kAsymmetric = 0,
  // 2 max|x|: the symmetric grid's range.
  kSymmetric = 1,
};

struct SiteStatisticsOptions {
  // Block size k in channels. 0, or any k >= dim, keeps the full d x d matrix
  // (then block_size() == dim); 1 <= k < dim keeps only the diagonal blocks.
  // Default 0 (full).
  int64_t block_size = 0;
  // Rows of a batch converted to float64 per SYRK call, at most
  // SiteStatistics::kMaxChunkRows (unused where block mode runs the kernel
  // of upper_gram.h). 0 picks a size from the dimension (a buffer of about
  // 16 MB). Changes speed and the order of rounding, never the result beyond
  // rounding. Default 0.
  int64_t chunk_rows = 0;
};

// A range of channels [begin, begin + size).
struct ChannelRange {
  int64_t begin = 0;
  int64_t size = 0;
  int64_t end() const { return begin + size; }
};

namespace site_statistics_internal {
struct Access;
}  // namespace site_statistics_internal

class SiteStatistics {
 public:
  // The largest dimension kept as a full matrix (32 GiB of doubles); larger
  // sites use blocks.
  static constexpr int64_t kMaxFullDim = 65536;
  // The largest dimension at all: OpenBLAS takes 32-bit sizes.
  static constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;
  static constexpr int64_t kMaxChunkRows = 65536;

  // SiteStatistics::Create()
  //
  // Empty statistics (no tokens) for a site of dimension `dim`.
  // InvalidArgument naming the field when dim is outside [1, kMaxDim], the
  // block size or chunk_rows is negative, chunk_rows > kMaxChunkRows, or a
  // full matrix is asked for with dim > kMaxFullDim.
  static absl::StatusOr<SiteStatistics> Create(int64_t dim,
                                               const SiteStatisticsOptions& options = {});

  // SiteStatistics::Accumulate()
  //
  // Adds the tokens of `x`, [tokens, dim] row-major, one token per row; zero
  // rows are fine. InvalidArgument when x has the wrong column count ("batch
  // has 100 columns, expected 172 ..."), or names the row and column of the
  // first NaN or infinity; OutOfRange if the token count would pass INT64_MAX.
  // On error nothing is added: the batch is checked before any of it is.
  absl::Status Accumulate(const Eigen::Ref<const RowMatrixXf>& x);

  // SiteStatistics::Merge()
  //
  // Adds the statistics of `other`, as if its tokens had been accumulated
  // here (to rounding). InvalidArgument naming the field ("dim" or
  // "block_size") and both values when they differ; OutOfRange if the token
  // count would overflow. On error nothing changes.
  absl::Status Merge(const SiteStatistics& other);

  // SiteStatistics::Clear()
  //
  // Back to no tokens, as Create left it, keeping the memory: for a buffer
  // that takes one part's statistics after another.
  void Clear();

  int64_t dim() const { return dim_; }
  // block_size: k in block mode; dim() in full mode.
  int64_t block_size() const { return block_size_; }
  bool is_full() const { return block_size_ == dim_; }
  int64_t chunk_rows() const { return chunk_rows_; }
  int64_t tokens() const { return tokens_; }

  // NumBlocks: ceil(dim / block_size); 1 in full mode.
  int64_t NumBlocks() const { return static_cast<int64_t>(upper_.size()); }
  // BlockRange: the channels of block b. REQUIRES: 0 <= b < NumBlocks().
  ChannelRange BlockRange(int64_t b) const;

  // SiteStatistics::SumBlock()
  //
  // Block b of sum_t x_t x_t^T, symmetrized: a new BlockRange(b).size square
  // matrix. OutOfRange naming b and NumBlocks() for a bad index.
  absl::StatusOr<Eigen::MatrixXd> SumBlock(int64_t b) const;

  // SiteStatistics::SecondMomentBlock()
  //
  // Block b of the second moment E[x x^T] = SumBlock(b) / tokens(), what
  // block CAT solves with. OutOfRange as SumBlock; FailedPrecondition when
  // tokens() == 0.
  absl::StatusOr<Eigen::MatrixXd> SecondMomentBlock(int64_t b) const;

  // SiteStatistics::SumFull() / SecondMomentFull()
  //
  // The full d x d sum or mean. FailedPrecondition in block mode (only the
  // diagonal blocks exist) and, for the mean, when tokens() == 0.
  absl::StatusOr<Eigen::MatrixXd> SumFull() const;
  absl::StatusOr<Eigen::MatrixXd> SecondMomentFull() const;

  // UpperSumBlock: the stored block b of the sum, without a copy. Only its
  // upper triangle (i <= j) is meaningful; read it through
  // `.selfadjointView<Eigen::Upper>()`. The reference is valid until the next
  // non-const call. REQUIRES: 0 <= b < NumBlocks().
  const RowMatrixXd& UpperSumBlock(int64_t b) const { return upper_[static_cast<size_t>(b)]; }

  // norm_sq_sum: sum_t ||x_t||^2, the trace of the Sx sum (O(dim) to compute).
  double norm_sq_sum() const;
  // range_sq_sum: sum_t r(x_t)^2 for the given range.
  double range_sq_sum(ActivationRange range) const {
    return range_sq_sum_[static_cast<size_t>(range)];
  }

  // has_channel_absmax: false only for statistics read from a file without
  // K.absmax; accumulated statistics always have it.
  bool has_channel_absmax() const { return channel_absmax_.size() == dim_; }
  // channel_absmax: max_t |x_tj| per channel (zeros before the first token).
  // Empty when !has_channel_absmax().
  const Eigen::VectorXd& channel_absmax() const { return channel_absmax_; }

  // SiteStatistics::Concentration()
  //
  // C(x) = E||x||^2 / E[r(x)^2] (cat-method.md section 1), unitless.
  // FailedPrecondition when there are no tokens or every token was zero.
  absl::StatusOr<double> Concentration(ActivationRange range) const;

 private:
  friend struct site_statistics_internal::Access;

  // Scratch memory reused across Accumulate calls. Copies start empty: a
  // buffer is not part of the value.
  struct Scratch {
    Scratch() = default;
    Scratch(const Scratch&) {}
    Scratch& operator=(const Scratch&) { return *this; }
    Scratch(Scratch&&) = default;
    Scratch& operator=(Scratch&&) = default;
    std::vector<double> data;
    // The blocks before a batch, when block mode's kernel needs them back.
    std::vector<RowMatrixXd> backup;
  };

  SiteStatistics(int64_t dim, int64_t block_size, int64_t chunk_rows);

  // What a batch adds besides x x^T: ranges, channel maxima (the .cc).
  struct BatchScan;

  // Adds x^T x to every block with OpenBLAS DSYRK (see Accumulate).
  void AddWithSyrk(const Eigen::Ref<const RowMatrixXf>& x);
  // Block mode with the kernel of upper_gram.h: scans x into `scan` and adds
  // x^T x group by group; on an error in the scan, the blocks are as before.
  absl::Status AddWithKernel(const Eigen::Ref<const RowMatrixXf>& x, BatchScan& scan);

  int64_t dim_;
  int64_t block_size_;
  int64_t chunk_rows_;
  int64_t tokens_ = 0;
  // One matrix per block, upper triangle accumulated (see UpperSumBlock).
  std::vector<RowMatrixXd> upper_;
  std::array<double, 2> range_sq_sum_ = {0.0, 0.0};  // Indexed by ActivationRange.
  Eigen::VectorXd channel_absmax_;                   // [dim_], or empty (see above)
  Scratch scratch_;  // chunk_rows_ x dim_ doubles, row-major, once used.
};

// WriteSiteStatistics
//
// Writes `sites` (site key -> statistics) to `path` in the format above,
// atomically (SafetensorsWriter: a crash never leaves a torn file). Sites are
// stored in key order. InvalidArgument for an empty map or an empty key,
// FailedPrecondition naming the site when it has no tokens (the reader would
// refuse it); I/O errors come from `env`.
absl::Status WriteSiteStatistics(Env* env, const std::string& path,
                                 const std::map<std::string, SiteStatistics>& sites);

// ReadSiteStatistics
//
// Reads and validates a file in the format above (every check listed there).
// Errors from opening the file pass through (NotFound for a missing one);
// every failed check is InvalidArgument whose message starts with the path
// and names the tensor, e.g.
//   "/c/stats.safetensors: model.layers.0.mlp_in.sx: not symmetric at [3, 5]: ..."
// The statistics read use the default chunk_rows.
absl::StatusOr<std::map<std::string, SiteStatistics>> ReadSiteStatistics(const std::string& path,
                                                                         Env* env = Env::Default());

// ReadSiteStatisticsOf: the sites `keys` only, with the same checks, and
// NotFound (prefixed with the path) naming a key the file lacks. The bytes
// read are released from the process's memory afterwards (MappedFile::Release),
// so a job that reads one layer's sites at a time from the statistics of a
// whole model holds one layer's.
absl::StatusOr<std::map<std::string, SiteStatistics>> ReadSiteStatisticsOf(
    const std::string& path, const std::vector<std::string>& keys, Env* env = Env::Default());

}  // namespace catq

#endif  // CATQ_CORE_CAT_SITE_STATISTICS_H_
