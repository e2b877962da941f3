#include "core/cat/weight_moments.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <type_traits>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// Rows converted to float64 at a time: bounds the scratch memory for tall
// weights (11008 rows) while keeping each SYRK large enough to run at speed.
constexpr int64_t kRowChunk = 256;

template <typename Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Checks shape and finiteness of `w`; returns ||w||_F^2 in float64.
template <typename Scalar>
absl::StatusOr<double> CheckWeight(const Eigen::Ref<const RowMatrix<Scalar>>& w, int64_t dim) {
  if (w.rows() < 1 || w.cols() != dim) {
    return absl::InvalidArgumentError(
        absl::StrFormat("weight is %dx%d, expected [out >= 1, %d]", w.rows(), w.cols(), dim));
  }
  if (w.rows() > INT_MAX || w.cols() > INT_MAX || w.outerStride() > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrFormat("weight is %dx%d: too large for BLAS", w.rows(), w.cols()));
  }
  double sum = 0.0;
  for (Eigen::Index i = 0; i < w.rows(); ++i) {
    for (Eigen::Index j = 0; j < w.cols(); ++j) {
      const double v = static_cast<double>(w(i, j));
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("weight[%d, %d] is not finite (%g)", i, j, v));
      }
      sum += v * v;
    }
  }
  return sum;
}

// blocks[b] += alpha * A_b^T A_b, A = `rows` rows of a row-major float64
// matrix at `a` with row stride `lda`, A_b its columns of block b. Only the
// lower triangle is updated.
void AddGram(const BlockPartition& partition, const double* a, int64_t rows, int64_t lda,
             double alpha, std::vector<Eigen::MatrixXd>& blocks) {
  for (int64_t b = 0; b < partition.num_blocks(); ++b) {
    const int64_t size = partition.size(b);
    // Row-major A_b (rows x size, stride lda) is the column-major A_b^T
    // (size x rows, leading dimension lda), so C += A_b^T (A_b^T)^T is NoTrans.
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, static_cast<int>(size),
                static_cast<int>(rows), alpha, a + partition.begin(b), static_cast<int>(lda), 1.0,
                blocks[b].data(), static_cast<int>(size));
  }
}

}  // namespace

WeightMomentAccumulator::WeightMomentAccumulator(const BlockPartition& partition,
                                                 const WeightMomentOptions& options)
    : partition_(partition), options_(options) {
  blocks_.reserve(partition.num_blocks());
  for (int64_t b = 0; b < partition.num_blocks(); ++b) {
    blocks_.push_back(Eigen::MatrixXd::Zero(partition.size(b), partition.size(b)));
  }
}

absl::StatusOr<WeightMomentAccumulator> WeightMomentAccumulator::Create(
    const BlockPartition& partition, const WeightMomentOptions& options) {
  if (partition.dim() > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrFormat("dim %d is too large for BLAS", partition.dim()));
  }
  return WeightMomentAccumulator(partition, options);
}

template <typename Scalar>
absl::Status WeightMomentAccumulator::AddImpl(const Eigen::Ref<const RowMatrix<Scalar>>& w) {
  CATQ_ASSIGN_OR_RETURN(const double frobenius_sq, CheckWeight<Scalar>(w, partition_.dim()));
  ++num_weights_;
  if (frobenius_sq == 0.0) return absl::OkStatus();  // Adds nothing, normalized or not.
  const double alpha = options_.normalize_by_frobenius ? 1.0 / frobenius_sq : 1.0;
  if constexpr (std::is_same_v<Scalar, double>) {
    AddGram(partition_, w.data(), w.rows(), w.outerStride(), alpha, blocks_);
  } else {
    RowMatrixXd chunk(std::min<int64_t>(kRowChunk, w.rows()), w.cols());
    for (int64_t r = 0; r < w.rows(); r += kRowChunk) {
      const int64_t n = std::min<int64_t>(kRowChunk, w.rows() - r);
      chunk.topRows(n) = w.middleRows(r, n).template cast<double>();
      AddGram(partition_, chunk.data(), n, chunk.cols(), alpha, blocks_);
    }
  }
  // SYRK fills the lower triangle; blocks() promises symmetric matrices.
  for (Eigen::MatrixXd& block : blocks_) {
    block.triangularView<Eigen::StrictlyUpper>() = block.transpose();
  }
  return absl::OkStatus();
}

absl::Status WeightMomentAccumulator::Add(const Eigen::Ref<const RowMatrixXf>& w) {
  return AddImpl<float>(w);
}

absl::Status WeightMomentAccumulator::Add(const Eigen::Ref<const RowMatrixXd>& w) {
  return AddImpl<double>(w);
}

namespace {

absl::StatusOr<std::vector<Eigen::MatrixXd>> SumBlocks(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, int64_t block_size,
    const WeightMomentOptions& options) {
  if (weights.empty()) return absl::InvalidArgumentError("no weights");
  const int64_t dim = weights[0].cols();
  CATQ_ASSIGN_OR_RETURN(const BlockPartition partition, BlockPartition::Create(dim, block_size));
  CATQ_ASSIGN_OR_RETURN(WeightMomentAccumulator sum,
                        WeightMomentAccumulator::Create(partition, options));
  for (size_t l = 0; l < weights.size(); ++l) {
    CATQ_RETURN_IF_ERROR(Prefix(absl::StrFormat("weight %d", l), sum.Add(weights[l])));
  }
  return std::move(sum).TakeBlocks();
}

}  // namespace

absl::StatusOr<Eigen::MatrixXd> WeightSecondMoment(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, const WeightMomentOptions& options) {
  if (weights.empty()) return absl::InvalidArgumentError("no weights");
  CATQ_ASSIGN_OR_RETURN(std::vector<Eigen::MatrixXd> blocks,
                        SumBlocks(weights, std::max<int64_t>(1, weights[0].cols()), options));
  return std::move(blocks[0]);
}

absl::StatusOr<std::vector<Eigen::MatrixXd>> WeightSecondMomentBlocks(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, int64_t block_size,
    const WeightMomentOptions& options) {
  if (block_size < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("block_size: %d is < 1", block_size));
  }
  return SumBlocks(weights, block_size, options);
}

absl::StatusOr<Eigen::VectorXd> WeightColumnAbsMax(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights) {
  if (weights.empty()) return absl::InvalidArgumentError("no weights");
  const int64_t dim = weights[0].cols();
  Eigen::VectorXd absmax = Eigen::VectorXd::Zero(dim);
  for (size_t l = 0; l < weights.size(); ++l) {
    CATQ_RETURN_IF_ERROR(
        Prefix(absl::StrFormat("weight %d", l), CheckWeight<float>(weights[l], dim).status()));
    absmax = absmax.cwiseMax(
        weights[l].cwiseAbs().colwise().maxCoeff().transpose().template cast<double>());
  }
  return absmax;
}

}  // namespace catq
