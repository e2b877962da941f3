// File: core/cat/weight_moments.h
//
// The weight second moment of an activation site, Sw = sum_l W_l^T W_l over
// the linears reading the site (q/k/v_proj for attn_in, gate/up_proj for
// mlp_in; cat-method.md section 3), accumulated in float64. Optionally each
// term is weighted by 1 / ||W_l||_F^2 (choice) so that the largest weight
// (q_proj) does not decide the transform alone. Block CAT needs only the
// diagonal k x k blocks of Sw, which cost d*k instead of d^2 memory.
//
//   CATQ_ASSIGN_OR_RETURN(BlockPartition blocks, BlockPartition::Create(4096, 128));
//   CATQ_ASSIGN_OR_RETURN(WeightMomentAccumulator sw, WeightMomentAccumulator::Create(blocks, {}));
//   CATQ_RETURN_IF_ERROR(sw.Add(q_proj));  // each Eigen::Map<const RowMatrixXf> [out, 4096]
//   CATQ_RETURN_IF_ERROR(sw.Add(k_proj));
//   CATQ_RETURN_IF_ERROR(sw.Add(v_proj));
//   std::vector<Eigen::MatrixXd> sw_blocks = std::move(sw).TakeBlocks();  // 32 of 128 x 128
//
// Thread-safety: WeightMomentAccumulator is not synchronized; the free
// functions are pure.
#ifndef CATQ_CORE_CAT_WEIGHT_MOMENTS_H_
#define CATQ_CORE_CAT_WEIGHT_MOMENTS_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/cat/block_cat.h"
#include "core/math/eigen_types.h"

namespace catq {

struct WeightMomentOptions {
  // Weight each term W_l^T W_l by 1 / ||W_l||_F^2, so that every linear of the
  // site counts the same whatever its scale (cat-method.md 3 (choice); fixes
  // v_proj losing SQNR to q_proj at attn_in). An all-zero weight adds nothing
  // either way. Default false: the plain sum.
  bool normalize_by_frobenius = false;
};

// WeightMomentAccumulator
//
// Sums W_l^T W_l (float64, a SYRK per block) over the weights added, keeping
// the diagonal blocks of `partition` only; a partition with one block keeps
// the full d x d matrix.
class WeightMomentAccumulator {
 public:
  static absl::StatusOr<WeightMomentAccumulator> Create(const BlockPartition& partition,
                                                        const WeightMomentOptions& options = {});

  // WeightMomentAccumulator::Add()
  //
  // Adds W^T W (times 1 / ||W||_F^2 when normalizing) of `w` [out, dim],
  // read in place when row-major. InvalidArgument when `w` has no rows, its
  // column count is not dim, or an element is not finite (names it); nothing
  // is added then.
  absl::Status Add(const Eigen::Ref<const RowMatrixXf>& w);
  absl::Status Add(const Eigen::Ref<const RowMatrixXd>& w);

  const BlockPartition& partition() const { return partition_; }
  int64_t num_weights() const { return num_weights_; }
  // The symmetric blocks summed so far (all zero before the first Add).
  const std::vector<Eigen::MatrixXd>& blocks() const { return blocks_; }
  std::vector<Eigen::MatrixXd> TakeBlocks() && { return std::move(blocks_); }

 private:
  WeightMomentAccumulator(const BlockPartition& partition, const WeightMomentOptions& options);
  template <typename Scalar>
  absl::Status AddImpl(const Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic,
                                                            Eigen::RowMajor>>& w);

  BlockPartition partition_;
  WeightMomentOptions options_;
  int64_t num_weights_ = 0;
  std::vector<Eigen::MatrixXd> blocks_;
};

// WeightSecondMoment
//
// The full Sw (dim x dim) of the weights reading one site; dim is their
// column count. InvalidArgument for an empty list, differing column counts, or
// as Add().
absl::StatusOr<Eigen::MatrixXd> WeightSecondMoment(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights,
    const WeightMomentOptions& options = {});

// WeightSecondMomentBlocks
//
// The diagonal blocks of Sw for block size `block_size` (BlockPartition: a
// smaller last block when it does not divide dim). Errors as above, and
// InvalidArgument for block_size < 1.
absl::StatusOr<std::vector<Eigen::MatrixXd>> WeightSecondMomentBlocks(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, int64_t block_size,
    const WeightMomentOptions& options = {});

// WeightColumnAbsMax
//
// max over the weights and their rows of |W_l[i, j]|, per input column j: the
// weight side of SmoothQuant. Errors as WeightSecondMoment.
absl::StatusOr<Eigen::VectorXd> WeightColumnAbsMax(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights);

}  // namespace catq

#endif  // CATQ_CORE_CAT_WEIGHT_MOMENTS_H_
