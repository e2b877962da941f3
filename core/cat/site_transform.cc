#include "core/cat/site_transform.h"

#include <cblas.h>

#include <Eigen/LU>
#include <Eigen/SVD>
#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// Tokens multiplied per GEMM: the scratch buffer stays small (512 x k) and
// in cache whatever the number of tokens.
constexpr int64_t kTokenChunk = 512;
// Weight rows converted to float64 at a time by the float TransformWeight.
constexpr int64_t kWeightRowChunk = 256;

template <typename Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <typename Scalar>
absl::Status CheckMatrix(const char* what, const Eigen::Ref<const RowMatrix<Scalar>>& m,
                         int64_t dim, bool check_finite) {
  if (m.cols() != dim) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is %dx%d, expected %d columns", what, m.rows(), m.cols(), dim));
  }
  if (m.rows() > INT_MAX || m.outerStride() > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s has %d rows: too many for BLAS", what, m.rows()));
  }
  if (check_finite) {
    for (Eigen::Index i = 0; i < m.rows(); ++i) {
      for (Eigen::Index j = 0; j < m.cols(); ++j) {
        if (!std::isfinite(m(i, j))) {
          return absl::InvalidArgumentError(absl::StrFormat("%s[%d, %d] is not finite (%g)", what,
                                                            i, j, static_cast<double>(m(i, j))));
        }
      }
    }
  }
  return absl::OkStatus();
}

TransformTensorF32 ToTensor(std::vector<int64_t> shape, const Eigen::MatrixXd& m) {
  TransformTensorF32 tensor{std::move(shape), {}};
  tensor.values.reserve(m.size());
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      tensor.values.push_back(static_cast<float>(m(i, j)));
  }
  return tensor;
}

}  // namespace

absl::StatusOr<SiteTransform> SiteTransform::Identity(int64_t dim) {
  return Create(dim, {}, std::nullopt);
}

absl::StatusOr<SiteTransform> SiteTransform::Create(int64_t dim,
                                                    std::vector<Eigen::MatrixXd> blocks,
                                                    std::optional<MixingMatrix> mixing,
                                                    const SiteTransformOptions& options) {
  if (dim < 1 || dim > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrFormat("dim: %d is outside [1, 2^31)", dim));
  }
  if (mixing && mixing->dim() != dim) {
    return absl::InvalidArgumentError(
        absl::StrFormat("mixing matrix is for d = %d, the site has d = %d", mixing->dim(), dim));
  }
  SiteTransform transform(dim, std::move(mixing));
  if (blocks.empty()) return transform;

  const int64_t k = blocks[0].rows();
  int64_t total = 0;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const Eigen::MatrixXd& block = blocks[b];
    const bool last = b + 1 == blocks.size();
    if (block.rows() != block.cols() || block.rows() < 1 || block.rows() > k ||
        (!last && block.rows() != k)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "block %d is %dx%d; expected %dx%d blocks with a smaller square last block", b,
          block.rows(), block.cols(), k, k));
    }
    if (!block.allFinite()) {
      return absl::InvalidArgumentError(absl::StrFormat("block %d has a non-finite element", b));
    }
    total += block.rows();
  }
  if (total != dim) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the blocks cover %d channels, the site has %d", total, dim));
  }
  if (options.round_blocks_to_f32) {
    for (Eigen::MatrixXd& block : blocks) block = block.cast<float>().cast<double>();
  }
  transform.block_size_ = k;
  if (k == 1) {
    transform.diagonal_.resize(dim);
    for (int64_t j = 0; j < dim; ++j) transform.diagonal_(j) = blocks[j](0, 0);
  } else {
    transform.blocks_ = std::move(blocks);
  }
  CATQ_RETURN_IF_ERROR(transform.Factorize());
  return transform;
}

absl::StatusOr<SiteTransform> SiteTransform::CreateDiagonal(
    const Eigen::Ref<const Eigen::VectorXd>& t, std::optional<MixingMatrix> mixing,
    const SiteTransformOptions& options) {
  std::vector<Eigen::MatrixXd> blocks;
  blocks.reserve(t.size());
  for (Eigen::Index j = 0; j < t.size(); ++j)
    blocks.push_back(Eigen::MatrixXd::Constant(1, 1, t(j)));
  return Create(t.size(), std::move(blocks), std::move(mixing), options);
}

absl::Status SiteTransform::Factorize() {
  if (block_size_ == 1) {
    for (int64_t j = 0; j < dim_; ++j) {
      if (diagonal_(j) == 0.0) {
        return absl::InvalidArgumentError(absl::StrFormat("diagonal element %d is 0", j));
      }
    }
    return absl::OkStatus();
  }
  lu_.reserve(blocks_.size());
  lu_permutation_.reserve(blocks_.size());
  for (size_t b = 0; b < blocks_.size(); ++b) {
    const Eigen::PartialPivLU<Eigen::MatrixXd> lu(blocks_[b]);
    const Eigen::VectorXd pivots = lu.matrixLU().diagonal();
    if ((pivots.array() == 0.0).any() || !pivots.allFinite()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("block %d is singular (zero pivot in its LU)", b));
    }
    lu_.emplace_back(lu.matrixLU());
    lu_permutation_.push_back(lu.permutationP().indices());
    blocks_f32_.push_back(blocks_[b].cast<float>());
  }
  return absl::OkStatus();
}

template <typename Scalar>
void SiteTransform::MultiplyBlocks(Eigen::Ref<RowMatrix<Scalar>> x) const {
  if (block_size_ == 1) {
    x.array().rowwise() *= diagonal_.transpose().cast<Scalar>().array();
    return;
  }
  const int64_t tokens = x.rows();
  const int ld = static_cast<int>(x.outerStride());
  RowMatrix<Scalar> scratch(std::min(kTokenChunk, tokens), block_size_);
  for (int64_t t0 = 0; t0 < tokens; t0 += kTokenChunk) {
    const int64_t rows = std::min(kTokenChunk, tokens - t0);
    int64_t begin = 0;
    for (size_t b = 0; b < blocks_.size(); ++b) {
      const int n = static_cast<int>(blocks_[b].rows());
      Scalar* x_block = x.data() + t0 * x.outerStride() + begin;
      // X_b B_b^T: column-major B_b read as row-major is B_b^T, so NoTrans.
      if constexpr (std::is_same_v<Scalar, double>) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), n, n, 1.0,
                    x_block, ld, blocks_[b].data(), n, 0.0, scratch.data(), n);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), n, n, 1.0f,
                    x_block, ld, blocks_f32_[b].data(), n, 0.0f, scratch.data(), n);
      }
      x.block(t0, begin, rows, n) = Eigen::Map<const RowMatrix<Scalar>, 0, Eigen::OuterStride<>>(
          scratch.data(), rows, n, Eigen::OuterStride<>(n));
      begin += n;
    }
  }
}

void SiteTransform::SolveBlocks(Eigen::Ref<RowMatrixXd> w) const {
  if (block_size_ == 1) {
    w.array().rowwise() /= diagonal_.transpose().array();
    return;
  }
  const int m = static_cast<int>(w.rows());
  const int ld = static_cast<int>(w.outerStride());
  Eigen::VectorXd row(block_size_);
  int64_t begin = 0;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    const int n = static_cast<int>(blocks_[b].rows());
    double* w_block = w.data() + begin;
    // X B_b = W_b with B_b = P^-1 L U: Z = W_b U^-1 L^-1 solves Z L U = W_b,
    // and X = Z P, i.e. X[:, i] = Z[:, p(i)].
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, m, n, 1.0,
                lu_[b].data(), n, w_block, ld);
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasUnit, m, n, 1.0,
                lu_[b].data(), n, w_block, ld);
    const Eigen::VectorXi& p = lu_permutation_[b];
    for (int i = 0; i < m; ++i) {
      double* r = w_block + static_cast<int64_t>(i) * ld;
      std::copy(r, r + n, row.data());
      for (int c = 0; c < n; ++c) r[c] = row(p(c));
    }
    begin += n;
  }
}

absl::Status SiteTransform::ApplyToActivations(Eigen::Ref<RowMatrixXd> x) const {
  CATQ_RETURN_IF_ERROR(CheckMatrix<double>("activations", x, dim_, /*check_finite=*/false));
  if (has_blocks()) MultiplyBlocks<double>(x);
  if (mixing_) mixing_->ApplyToRows(x);
  return absl::OkStatus();
}

absl::Status SiteTransform::ApplyToActivations(Eigen::Ref<RowMatrixXf> x) const {
  CATQ_RETURN_IF_ERROR(CheckMatrix<float>("activations", x, dim_, /*check_finite=*/false));
  if (has_blocks()) MultiplyBlocks<float>(x);
  if (mixing_) mixing_->ApplyToRows(x);
  return absl::OkStatus();
}

absl::Status SiteTransform::TransformWeightInPlace(Eigen::Ref<RowMatrixXd> w) const {
  CATQ_RETURN_IF_ERROR(CheckMatrix<double>("weight", w, dim_, /*check_finite=*/true));
  if (has_blocks()) SolveBlocks(w);
  // W B^-1 M^T: a row r becomes (M r^T)^T.
  if (mixing_) mixing_->ApplyToRows(w);
  return absl::OkStatus();
}

absl::StatusOr<RowMatrixXd> SiteTransform::TransformWeight(
    const Eigen::Ref<const RowMatrixXd>& w) const {
  RowMatrixXd out = w;
  CATQ_RETURN_IF_ERROR(TransformWeightInPlace(out));
  return out;
}

absl::Status SiteTransform::TransformWeightInPlace(Eigen::Ref<RowMatrixXf> w) const {
  CATQ_RETURN_IF_ERROR(CheckMatrix<float>("weight", w, dim_, /*check_finite=*/true));
  RowMatrixXd chunk(std::min(kWeightRowChunk, static_cast<int64_t>(w.rows())), w.cols());
  for (int64_t r = 0; r < w.rows(); r += kWeightRowChunk) {
    const int64_t n = std::min(kWeightRowChunk, static_cast<int64_t>(w.rows()) - r);
    chunk.topRows(n) = w.middleRows(r, n).cast<double>();
    Eigen::Ref<RowMatrixXd> rows = chunk.topRows(n);
    if (has_blocks()) SolveBlocks(rows);
    if (mixing_) mixing_->ApplyToRows(rows);
    w.middleRows(r, n) = chunk.topRows(n).cast<float>();
  }
  return absl::OkStatus();
}

absl::StatusOr<RowMatrixXf> SiteTransform::TransformWeight(
    const Eigen::Ref<const RowMatrixXf>& w) const {
  RowMatrixXf out = w;
  CATQ_RETURN_IF_ERROR(TransformWeightInPlace(out));
  return out;
}

absl::StatusOr<Eigen::VectorXd> SiteTransform::DiagonalOfT() const {
  if (has_mixing()) {
    return absl::FailedPreconditionError("T has a mixing factor, so it is not diagonal");
  }
  if (block_size_ > 1) {
    return absl::FailedPreconditionError(
        absl::StrFormat("T has %dx%d blocks, so it is not diagonal", block_size_, block_size_));
  }
  if (block_size_ == 1) return diagonal_;
  return Eigen::VectorXd::Ones(dim_);
}

absl::Status SiteTransform::FoldIntoVector(Eigen::Ref<Eigen::VectorXd> g) const {
  CATQ_ASSIGN_OR_RETURN(const Eigen::VectorXd t, DiagonalOfT());
  if (g.size() != dim_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vector has %d entries, the site has %d", g.size(), dim_));
  }
  g.array() *= t.array();
  return absl::OkStatus();
}

absl::Status SiteTransform::FoldIntoVector(Eigen::Ref<Eigen::VectorXf> g) const {
  CATQ_ASSIGN_OR_RETURN(const Eigen::VectorXd t, DiagonalOfT());
  if (g.size() != dim_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vector has %d entries, the site has %d", g.size(), dim_));
  }
  g = (g.cast<double>().array() * t.array()).cast<float>().matrix();
  return absl::OkStatus();
}

absl::Status SiteTransform::FoldIntoRows(Eigen::Ref<RowMatrixXf> w) const {
  CATQ_ASSIGN_OR_RETURN(const Eigen::VectorXd t, DiagonalOfT());
  if (w.rows() != dim_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("weight has %d rows, the site has %d channels", w.rows(), dim_));
  }
  for (int64_t j = 0; j < dim_; ++j) {
    w.row(j) = (w.row(j).cast<double>() * t(j)).cast<float>();
  }
  return absl::OkStatus();
}

Eigen::MatrixXd SiteTransform::Dense() const {
  Eigen::MatrixXd b = Eigen::MatrixXd::Identity(dim_, dim_);
  if (block_size_ == 1) {
    b.diagonal() = diagonal_;
  } else {
    int64_t begin = 0;
    for (const Eigen::MatrixXd& block : blocks_) {
      b.block(begin, begin, block.rows(), block.cols()) = block;
      begin += block.rows();
    }
  }
  if (!mixing_) return b;
  Eigen::MatrixXd t(dim_, dim_);
  t.noalias() = mixing_->Dense() * b;
  return t;
}

double SiteTransform::ConditionNumber() const {
  if (block_size_ == 1) {
    const Eigen::ArrayXd magnitude = diagonal_.array().abs();
    return magnitude.maxCoeff() / magnitude.minCoeff();
  }
  if (blocks_.empty()) return 1.0;
  double largest = 0.0;
  double smallest = std::numeric_limits<double>::infinity();
  for (const Eigen::MatrixXd& block : blocks_) {
    const Eigen::VectorXd sigma = Eigen::BDCSVD<Eigen::MatrixXd>(block).singularValues();
    largest = std::max(largest, sigma.maxCoeff());
    smallest = std::min(smallest, sigma.minCoeff());
  }
  return smallest > 0.0 ? largest / smallest : std::numeric_limits<double>::infinity();
}

SiteTransformTensors SiteTransform::ExportTensors() const {
  SiteTransformTensors tensors;
  if (block_size_ == 1) {
    tensors.blocks = ToTensor({dim_, 1, 1}, diagonal_);
  } else if (block_size_ > 1) {
    const int64_t k = block_size_;
    const int64_t full = dim_ / k;
    TransformTensorF32 stacked{{full, k, k}, {}};
    stacked.values.reserve(full * k * k);
    for (int64_t b = 0; b < full; ++b) {
      const TransformTensorF32 one = ToTensor({k, k}, blocks_[b]);
      stacked.values.insert(stacked.values.end(), one.values.begin(), one.values.end());
    }
    tensors.blocks = std::move(stacked);
    if (dim_ % k != 0) {
      const Eigen::MatrixXd& tail = blocks_.back();
      tensors.blocks_tail = ToTensor({tail.rows(), tail.cols()}, tail);
    }
  }
  if (mixing_ && mixing_->q() > 1) {
    tensors.rot_q = ToTensor({mixing_->q(), mixing_->q()}, mixing_->rot_q());
  }
  return tensors;
}

absl::StatusOr<SiteTransform> MakeSmoothQuantTransform(
    const Eigen::Ref<const Eigen::VectorXd>& activation_absmax,
    const Eigen::Ref<const Eigen::VectorXd>& weight_absmax, double alpha) {
  CATQ_ASSIGN_OR_RETURN(const Eigen::VectorXd t,
                        SmoothQuantDiagonal(activation_absmax, weight_absmax, alpha));
  return SiteTransform::CreateDiagonal(t, std::nullopt);
}

absl::StatusOr<SiteTransform> MakeHadamardTransform(int64_t dim, const MixingOptions& mixing) {
  CATQ_ASSIGN_OR_RETURN(MixingMatrix m, MixingMatrix::Create(dim, mixing));
  return SiteTransform::Create(dim, {}, std::move(m));
}

absl::StatusOr<CatTransform> MakeCatTransform(absl::Span<const Eigen::MatrixXd> sx_blocks,
                                              absl::Span<const Eigen::MatrixXd> sw_blocks,
                                              const BlockCatOptions& options, bool hadamard,
                                              const MixingOptions& mixing) {
  CATQ_ASSIGN_OR_RETURN(BlockCatResult solved, SolveBlockCat(sx_blocks, sw_blocks, options));
  int64_t dim = 0;
  for (const Eigen::MatrixXd& block : solved.blocks) dim += block.rows();
  std::optional<MixingMatrix> m;
  if (hadamard) {
    CATQ_ASSIGN_OR_RETURN(m, MixingMatrix::Create(dim, mixing));
  }
  CATQ_ASSIGN_OR_RETURN(SiteTransform transform,
                        SiteTransform::Create(dim, std::move(solved.blocks), std::move(m)));
  return CatTransform{std::move(transform), std::move(solved.report)};
}

absl::StatusOr<SiteTransformResult> MakeSiteTransform(const Recipe& recipe,
                                                      const SiteTransformInputs& inputs) {
  switch (recipe.method) {
    case Method::kRtn: {
      CATQ_ASSIGN_OR_RETURN(SiteTransform t, SiteTransform::Identity(inputs.dim));
      return SiteTransformResult{std::move(t), std::nullopt};
    }
    case Method::kSmoothQuant: {
      if (inputs.activation_absmax.size() != inputs.dim) {
        return absl::InvalidArgumentError(
            absl::StrFormat("smoothquant: activation_absmax has %d entries, the site has %d",
                            inputs.activation_absmax.size(), inputs.dim));
      }
      CATQ_ASSIGN_OR_RETURN(SiteTransform t,
                            MakeSmoothQuantTransform(inputs.activation_absmax, inputs.weight_absmax,
                                                     recipe.smoothquant_alpha));
      return SiteTransformResult{std::move(t), std::nullopt};
    }
    case Method::kHadamard: {
      CATQ_ASSIGN_OR_RETURN(SiteTransform t, MakeHadamardTransform(inputs.dim, inputs.mixing));
      return SiteTransformResult{std::move(t), std::nullopt};
    }
    case Method::kCat: {
      CATQ_ASSIGN_OR_RETURN(const BlockPartition partition,
                            BlockPartition::Create(inputs.dim, recipe.block_size));
      if (static_cast<int64_t>(inputs.sx_blocks.size()) != partition.num_blocks()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "cat: %d Sx blocks given, block size %d over d = %d needs %d", inputs.sx_blocks.size(),
            recipe.block_size, inputs.dim, partition.num_blocks()));
      }
      for (int64_t b = 0; b < partition.num_blocks(); ++b) {
        if (inputs.sx_blocks[b].rows() != partition.size(b)) {
          return absl::InvalidArgumentError(
              absl::StrFormat("cat: Sx block %d has %d rows, the partition needs %d", b,
                              inputs.sx_blocks[b].rows(), partition.size(b)));
        }
      }
      BlockCatOptions options;
      options.damping = recipe.damping;
      options.eigen_clip = inputs.eigen_clip;
      CATQ_ASSIGN_OR_RETURN(CatTransform cat,
                            MakeCatTransform(inputs.sx_blocks, inputs.sw_blocks, options,
                                             recipe.cat_hadamard, inputs.mixing));
      return SiteTransformResult{std::move(cat.transform), std::move(cat.report)};
    }
  }
  return absl::InvalidArgumentError("unknown method");
}

}  // namespace catq
