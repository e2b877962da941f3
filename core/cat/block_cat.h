// File: core/cat/block_cat.h
//
// Block CAT (cat-method.md sections 2.3 and 2.4): the alignment-optimal
// block-diagonal transform of one activation site, solved block by block in
// float64 from the diagonal k x k blocks of the activation second moment Sx
// and of the weight second moment Sw:
//
//   T_b = C_b^(1/4) Sx_bb^(-1/2),   C_b = Sx_bb^(1/2) Sw_bb Sx_bb^(1/2)
//
// after damping S <- S + lambda * mean(diag S) * I of both Sx_bb and Sw_bb and
// with eigenvalues clipped below eigen_clip * (largest eigenvalue). k = 1 is
// the diagonal x_j' = x_j * (Sw_jj / Sx_jj)^(1/4); one block of size d is full
// CAT. Also here: the max-based SmoothQuant diagonal, for comparison.
//
//   CATQ_ASSIGN_OR_RETURN(BlockPartition blocks, BlockPartition::Create(d, 128));
//   CATQ_ASSIGN_OR_RETURN(std::vector<Eigen::MatrixXd> sx_blocks,
//                         ExtractDiagonalBlocks(sx, blocks));
//   CATQ_ASSIGN_OR_RETURN(BlockCatResult cat, SolveBlockCat(sx_blocks, sw_blocks, {}));
//   // cat.blocks[b] acts as x'[b*k:(b+1)*k] = cat.blocks[b] * x[b*k:(b+1)*k].
//
// Thread-safety: pure functions; concurrent calls are safe. Each call runs on
// the calling thread only (sites are the unit of parallelism).
#ifndef CATQ_CORE_CAT_BLOCK_CAT_H_
#define CATQ_CORE_CAT_BLOCK_CAT_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace catq {

// BlockPartition
//
// The diagonal blocks of a site of `dim` channels for block size k: block b
// covers channels [b*k, min((b+1)*k, dim)). When k does not divide dim the
// last block is smaller (the "tail", cat-method.md 2.3 (choice)); a block size
// of dim or more gives one block of dim channels (full CAT).
class BlockPartition {
 public:
  // InvalidArgument for dim < 1 or block_size < 1.
  static absl::StatusOr<BlockPartition> Create(int64_t dim, int64_t block_size);

  int64_t dim() const { return dim_; }
  // The effective k: min(requested block size, dim).
  int64_t block_size() const { return block_size_; }
  // ceil(dim / k).
  int64_t num_blocks() const { return (dim_ + block_size_ - 1) / block_size_; }
  // The blocks of size k: dim / k.
  int64_t num_full_blocks() const { return dim_ / block_size_; }
  // The size of the smaller last block, 0 when k divides dim.
  int64_t tail_size() const { return dim_ % block_size_; }
  // REQUIRES: 0 <= b < num_blocks().
  int64_t begin(int64_t b) const { return b * block_size_; }
  int64_t size(int64_t b) const;

 private:
  BlockPartition(int64_t dim, int64_t block_size) : dim_(dim), block_size_(block_size) {}
  int64_t dim_;
  int64_t block_size_;
};

// ExtractDiagonalBlocks
//
// Copies the diagonal blocks of the symmetric `s` (dim x dim) for
// `partition`. InvalidArgument when `s` is not dim x dim.
absl::StatusOr<std::vector<Eigen::MatrixXd>> ExtractDiagonalBlocks(
    const Eigen::Ref<const Eigen::MatrixXd>& s, const BlockPartition& partition);

// SymmetricPowers
//
// The eigendecomposition S = U diag(e) U^T of a symmetric matrix (lower
// triangle read) with eigenvalues below `eigen_clip * max(e)` raised to that
// floor, so that S^p exists for every real p. This is the one helper every
// matrix root of the CAT engine comes from (LAPACK dsyevd, core/cat/lapack.h:
// the same bits on every run and OpenBLAS thread count).
class SymmetricPowers {
 public:
  // SymmetricPowers::Create()
  //
  // REQUIRES: s finite, eigen_clip >= 0. A matrix whose largest eigenvalue
  // is <= 0 has floor 0 (and no finite negative powers); callers check
  // max_eigenvalue() first. Errors from SymmetricEigen: a non-square `s`, no
  // convergence.
  static absl::StatusOr<SymmetricPowers> Create(const Eigen::Ref<const Eigen::MatrixXd>& s,
                                                double eigen_clip);

  // U diag(e^p) U^T with the clipped eigenvalues.
  Eigen::MatrixXd Power(double p) const;
  // The eigenvalues after clipping, ascending.
  const Eigen::VectorXd& eigenvalues() const { return eigenvalues_; }
  // The smallest and largest eigenvalue before clipping.
  double min_eigenvalue() const { return min_eigenvalue_; }
  double max_eigenvalue() const { return max_eigenvalue_; }
  // Whether any eigenvalue was raised to the floor.
  bool clipped() const { return clipped_; }

 private:
  SymmetricPowers() = default;

  Eigen::MatrixXd eigenvectors_;
  Eigen::VectorXd eigenvalues_;
  double min_eigenvalue_ = 0.0;
  double max_eigenvalue_ = 0.0;
  bool clipped_ = false;
};

struct BlockCatOptions {
  // Damping lambda >= 0: S <- S + lambda * mean(diag S) * I for both Sx_bb and
  // Sw_bb before solving. Default 1e-2 (cat-method.md 2.4).
  double damping = 1e-2;
  // Relative eigenvalue floor in [0, 1): eigenvalues of the damped Sx_bb and of
  // C_b below eigen_clip * (largest eigenvalue) are raised to it. Default 1e-12.
  double eigen_clip = 1e-12;
};

// What a solve did, per site (cat-method.md 2.4 asks for these three).
struct BlockCatReport {
  int64_t num_blocks = 0;
  // max over blocks of the 2-norm condition number sigma_max / sigma_min of T_b.
  double max_condition = 1.0;
  // cond_2 of the whole block-diagonal T: the largest singular value over all
  // blocks over the smallest (what SiteTransform::ConditionNumber gives,
  // there on the blocks rounded to float32). From the same one SVD per block.
  double condition = 1.0;
  // max over blocks of max_ij |T_b X_b - I|_ij, X_b = T_b^-1 computed with the
  // partial-pivoting LU that SiteTransform::TransformWeight solves with: how far
  // W T^-1 can be trusted.
  double max_inverse_residual = 0.0;
  // Blocks that needed damping: the undamped Sx_bb or Sw_bb is numerically
  // singular, i.e. its smallest eigenvalue is <= eigen_clip * its largest (the
  // clip would have fired without damping: fewer tokens than k, dead
  // channels, weight columns that are all zero). With damping = 0 these blocks
  // rely on clipping alone and their T_b is badly conditioned.
  int64_t damped_blocks = 0;
  // Blocks where clipping fired after damping (on Sx_bb or C_b).
  int64_t clipped_blocks = 0;
  // Blocks where Sx_bb or Sw_bb is all zero: no transform can align them and
  // damping cannot help (its shift is 0), so T_b = I.
  int64_t identity_blocks = 0;
  // cond(T_b) per block.
  std::vector<double> block_condition;
};

struct BlockCatResult {
  // T_b, one per input block, same sizes.
  std::vector<Eigen::MatrixXd> blocks;
  BlockCatReport report;
};

// SolveBlockCat
//
// T_b for every block from the matching diagonal blocks of Sx and Sw (each
// square and symmetric, only the lower triangle is read; any sizes, usually a
// BlockPartition's). Errors (InvalidArgument, naming the block): different
// block counts or sizes, an empty list or block, a non-finite element, a
// negative diagonal element, options out of range.
absl::StatusOr<BlockCatResult> SolveBlockCat(absl::Span<const Eigen::MatrixXd> sx_blocks,
                                             absl::Span<const Eigen::MatrixXd> sw_blocks,
                                             const BlockCatOptions& options = {});

// SmoothQuantDiagonal
//
// The diagonal of the SmoothQuant transform T = diag(1 / s_j) (x_j' = x_j / s_j,
// W_:,j' = s_j W_:,j) with s_j = max|x_j|^alpha / max|W_:,j|^(1-alpha), from the
// per-channel activation absolute maxima and the weight column absolute maxima
// (over all weights reading the site). A channel whose activation or weight
// maximum is 0 keeps t_j = 1 (there is nothing to balance). InvalidArgument
// for different lengths, an empty vector, a negative or non-finite entry, or
// alpha outside [0, 1].
absl::StatusOr<Eigen::VectorXd> SmoothQuantDiagonal(
    const Eigen::Ref<const Eigen::VectorXd>& activation_absmax,
    const Eigen::Ref<const Eigen::VectorXd>& weight_absmax, double alpha);

}  // namespace catq

#endif  // CATQ_CORE_CAT_BLOCK_CAT_H_
