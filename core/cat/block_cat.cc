#include "core/cat/block_cat.h"

#include <cblas.h>

#include <Eigen/LU>
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "core/cat/lapack.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// The symmetric matrix whose lower triangle is that of `s`.
Eigen::MatrixXd FromLowerTriangle(const Eigen::MatrixXd& s) {
  Eigen::MatrixXd full = s.selfadjointView<Eigen::Lower>();
  return full;
}

// S + lambda * mean(diag S) * I; `shift` gets lambda * mean(diag S).
Eigen::MatrixXd Damp(const Eigen::MatrixXd& s, double lambda, double* shift) {
  *shift = lambda * s.diagonal().mean();
  Eigen::MatrixXd damped = s;
  damped.diagonal().array() += *shift;
  return damped;
}

// True when the smallest eigenvalue of the symmetric `s` is <= clip * its
// largest, i.e. the eigenvalue clip would fire on it.
bool NumericallySingular(double min_eigenvalue, double max_eigenvalue, double clip) {
  return max_eigenvalue <= 0.0 || min_eigenvalue <= clip * max_eigenvalue;
}

absl::Status CheckBlock(const char* what, int64_t b, const Eigen::MatrixXd& s) {
  if (s.rows() == 0 || s.rows() != s.cols()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s block %d is %dx%d, expected square and "
                        "non-empty",
                        what, b, s.rows(), s.cols()));
  }
  for (Eigen::Index j = 0; j < s.cols(); ++j) {
    for (Eigen::Index i = j; i < s.rows(); ++i) {
      if (!std::isfinite(s(i, j))) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s block %d element [%d, %d] is not finite", what, b, i, j));
      }
    }
    if (s(j, j) < 0.0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s block %d diagonal element %d is %g < 0: not a second moment", what, b, j, s(j, j)));
    }
  }
  return absl::OkStatus();
}

// C = A B (trans_b: A B^T), all n x n, through OpenBLAS: 2-3x Eigen's
// product at k = 128. OpenBLAS splits a GEMM over its threads by rows and
// columns of C, never along the sum, so the bits do not depend on the count.
void Multiply(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, bool trans_b,
              Eigen::MatrixXd& c) {
  const int n = static_cast<int>(a.rows());
  c.resize(n, n);
  cblas_dgemm(CblasColMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, n, n, n, 1.0,
              a.data(), n, b.data(), n, 0.0, c.data(), n);
}

// The singular value extremes of `t` (k x k), from one dgesdd.
absl::StatusOr<std::pair<double, double>> SingularValueRange(const Eigen::MatrixXd& t) {
  CATQ_ASSIGN_OR_RETURN(const Eigen::VectorXd sigma, SingularValues(t));
  return std::make_pair(sigma.minCoeff(), sigma.maxCoeff());
}

// sigma_max / sigma_min; +Inf when singular.
double ConditionOf(double smallest, double largest) {
  return smallest > 0.0 ? largest / smallest : std::numeric_limits<double>::infinity();
}

// max_ij |T X - I|_ij with X = T^-1 from the partial-pivoting LU of T, as
// SiteTransform solves with it: X = U^-1 L^-1 P by two triangular solves on
// the permutation matrix P, then one product.
double InverseResidual(const Eigen::MatrixXd& t) {
  const int n = static_cast<int>(t.rows());
  const Eigen::PartialPivLU<Eigen::MatrixXd> lu(t);
  Eigen::MatrixXd inverse = lu.permutationP() * Eigen::MatrixXd::Identity(n, n);
  cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, n, n, 1.0,
              lu.matrixLU().data(), n, inverse.data(), n);
  cblas_dtrsm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, n, n, 1.0,
              lu.matrixLU().data(), n, inverse.data(), n);
  Eigen::MatrixXd residual;
  Multiply(t, inverse, /*trans_b=*/false, residual);
  residual.diagonal().array() -= 1.0;
  return residual.cwiseAbs().maxCoeff();
}

struct BlockSolve {
  Eigen::MatrixXd t;
  bool damped = false;  // needed damping (BlockCatReport::damped_blocks)
  bool clipped = false;
  bool identity = false;
};

// True when the undamped `sw` is numerically singular (BlockCatReport::
// damped_blocks), from its eigenvalues alone.
absl::StatusOr<bool> WeightMomentSingular(const Eigen::MatrixXd& sw_lower, double clip) {
  Eigen::MatrixXd scratch = sw_lower;
  Eigen::VectorXd eigenvalues;
  CATQ_RETURN_IF_ERROR(SymmetricEigen(scratch, eigenvalues, EigenJob::kValuesOnly));
  return NumericallySingular(eigenvalues.minCoeff(), eigenvalues.maxCoeff(), clip);
}

absl::StatusOr<BlockSolve> SolveOneBlock(const Eigen::MatrixXd& sx_lower,
                                         const Eigen::MatrixXd& sw_lower,
                                         const BlockCatOptions& options) {
  const Eigen::Index n = sx_lower.rows();
  BlockSolve out;
  // A block with no activation energy or no weight energy: C_b = 0 and no T_b
  // exists. Damping scales with mean(diag S), so it cannot rescue it either.
  if (sx_lower.diagonal().maxCoeff() <= 0.0 || sw_lower.diagonal().maxCoeff() <= 0.0) {
    out.t = Eigen::MatrixXd::Identity(n, n);
    out.identity = true;
    return out;
  }
  const Eigen::MatrixXd sw = FromLowerTriangle(sw_lower);

  double shift_x = 0.0;
  double shift_w = 0.0;
  const Eigen::MatrixXd sx_damped = Damp(sx_lower, options.damping, &shift_x);
  const Eigen::MatrixXd sw_damped = Damp(sw, options.damping, &shift_w);

  CATQ_ASSIGN_OR_RETURN(const SymmetricPowers sx_powers,
                        SymmetricPowers::Create(sx_damped, options.eigen_clip));
  // Damping shifts every eigenvalue by the same amount, so the undamped
  // spectrum of Sx_bb comes for free; Sw_bb needs its own eigenvalues.
  const bool sx_singular =
      NumericallySingular(sx_powers.min_eigenvalue() - shift_x,
                          sx_powers.max_eigenvalue() - shift_x, options.eigen_clip);
  CATQ_ASSIGN_OR_RETURN(const bool sw_singular, WeightMomentSingular(sw_lower, options.eigen_clip));
  out.damped = sx_singular || sw_singular;

  const Eigen::MatrixXd sx_sqrt = sx_powers.Power(0.5);
  Eigen::MatrixXd sw_sx_sqrt;
  Multiply(sw_damped, sx_sqrt, /*trans_b=*/false, sw_sx_sqrt);
  Eigen::MatrixXd c;
  Multiply(sx_sqrt, sw_sx_sqrt, /*trans_b=*/false, c);
  // Rounding leaves C a little asymmetric; the eigensolver reads one triangle,
  // so make both agree.
  c = 0.5 * (c + c.transpose()).eval();
  CATQ_ASSIGN_OR_RETURN(const SymmetricPowers c_powers,
                        SymmetricPowers::Create(c, options.eigen_clip));
  out.clipped = sx_powers.clipped() || c_powers.clipped();
  Multiply(c_powers.Power(0.25), sx_powers.Power(-0.5), /*trans_b=*/false, out.t);
  return out;
}

}  // namespace

absl::StatusOr<BlockPartition> BlockPartition::Create(int64_t dim, int64_t block_size) {
  if (dim < 1) return absl::InvalidArgumentError(absl::StrFormat("dim: %d is < 1", dim));
  if (block_size < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("block_size: %d is < 1", block_size));
  }
  return BlockPartition(dim, std::min(dim, block_size));
}

int64_t BlockPartition::size(int64_t b) const {
  return std::min(block_size_, dim_ - b * block_size_);
}

absl::StatusOr<std::vector<Eigen::MatrixXd>> ExtractDiagonalBlocks(
    const Eigen::Ref<const Eigen::MatrixXd>& s, const BlockPartition& partition) {
  if (s.rows() != partition.dim() || s.cols() != partition.dim()) {
    return absl::InvalidArgumentError(absl::StrFormat("second moment is %dx%d, expected %dx%d",
                                                      s.rows(), s.cols(), partition.dim(),
                                                      partition.dim()));
  }
  std::vector<Eigen::MatrixXd> blocks;
  blocks.reserve(partition.num_blocks());
  for (int64_t b = 0; b < partition.num_blocks(); ++b) {
    const int64_t begin = partition.begin(b);
    const int64_t size = partition.size(b);
    blocks.emplace_back(s.block(begin, begin, size, size));
  }
  return blocks;
}

absl::StatusOr<SymmetricPowers> SymmetricPowers::Create(const Eigen::Ref<const Eigen::MatrixXd>& s,
                                                        double eigen_clip) {
  SymmetricPowers powers;
  powers.eigenvectors_ = s;
  CATQ_RETURN_IF_ERROR(
      SymmetricEigen(powers.eigenvectors_, powers.eigenvalues_, EigenJob::kVectors));
  Eigen::VectorXd& e = powers.eigenvalues_;
  powers.min_eigenvalue_ = e.size() > 0 ? e.minCoeff() : 0.0;
  powers.max_eigenvalue_ = e.size() > 0 ? e.maxCoeff() : 0.0;
  const double floor = std::max(0.0, eigen_clip * powers.max_eigenvalue_);
  powers.clipped_ = powers.min_eigenvalue_ < floor;
  e = e.cwiseMax(floor);
  return powers;
}

Eigen::MatrixXd SymmetricPowers::Power(double p) const {
  const Eigen::VectorXd powered = eigenvalues_.array().pow(p).matrix();
  const Eigen::MatrixXd scaled = eigenvectors_ * powered.asDiagonal();
  Eigen::MatrixXd out;
  Multiply(scaled, eigenvectors_, /*trans_b=*/true, out);
  return out;
}

absl::StatusOr<BlockCatResult> SolveBlockCat(absl::Span<const Eigen::MatrixXd> sx_blocks,
                                             absl::Span<const Eigen::MatrixXd> sw_blocks,
                                             const BlockCatOptions& options) {
  if (!(options.damping >= 0.0) || !std::isfinite(options.damping)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("damping: %g is not a finite value >= 0", options.damping));
  }
  if (!(options.eigen_clip >= 0.0 && options.eigen_clip < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("eigen_clip: %g is outside [0, 1)", options.eigen_clip));
  }
  if (sx_blocks.empty()) return absl::InvalidArgumentError("no Sx blocks");
  if (sx_blocks.size() != sw_blocks.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d Sx blocks but %d Sw blocks", sx_blocks.size(), sw_blocks.size()));
  }
  for (size_t b = 0; b < sx_blocks.size(); ++b) {
    if (absl::Status s = CheckBlock("Sx", b, sx_blocks[b]); !s.ok()) return s;
    if (absl::Status s = CheckBlock("Sw", b, sw_blocks[b]); !s.ok()) return s;
    if (sx_blocks[b].rows() != sw_blocks[b].rows()) {
      return absl::InvalidArgumentError(absl::StrFormat("block %d: Sx is %dx%d but Sw is %dx%d", b,
                                                        sx_blocks[b].rows(), sx_blocks[b].cols(),
                                                        sw_blocks[b].rows(), sw_blocks[b].cols()));
    }
  }

  BlockCatResult result;
  BlockCatReport& report = result.report;
  report.num_blocks = static_cast<int64_t>(sx_blocks.size());
  result.blocks.reserve(sx_blocks.size());
  report.block_condition.reserve(sx_blocks.size());
  // One OpenBLAS thread for the whole solve: LAPACK's bits depend on the
  // count (lapack.h), and 128 x 128 blocks gain little from more.
  const SerialBlasScope serial;
  double largest_singular_value = 0.0;
  double smallest_singular_value = std::numeric_limits<double>::infinity();
  for (size_t b = 0; b < sx_blocks.size(); ++b) {
    absl::StatusOr<BlockSolve> solve = SolveOneBlock(sx_blocks[b], sw_blocks[b], options);
    if (!solve.ok()) return Prefix(absl::StrFormat("block %d", b), solve.status());
    report.damped_blocks += solve->damped ? 1 : 0;
    report.clipped_blocks += solve->clipped ? 1 : 0;
    report.identity_blocks += solve->identity ? 1 : 0;
    // cond(T_b) and the inverse residual are computed once here; the site's
    // report reads them from this one.
    std::pair<double, double> range(1.0, 1.0);  // an identity block's
    if (!solve->identity) {
      absl::StatusOr<std::pair<double, double>> sigma = SingularValueRange(solve->t);
      if (!sigma.ok()) return Prefix(absl::StrFormat("block %d", b), sigma.status());
      range = *sigma;
      report.max_inverse_residual =
          std::max(report.max_inverse_residual, InverseResidual(solve->t));
    }
    const double condition = ConditionOf(range.first, range.second);
    report.block_condition.push_back(condition);
    report.max_condition = std::max(report.max_condition, condition);
    smallest_singular_value = std::min(smallest_singular_value, range.first);
    largest_singular_value = std::max(largest_singular_value, range.second);
    result.blocks.push_back(std::move(solve->t));
  }
  report.condition = ConditionOf(smallest_singular_value, largest_singular_value);
  return result;
}

absl::StatusOr<Eigen::VectorXd> SmoothQuantDiagonal(
    const Eigen::Ref<const Eigen::VectorXd>& activation_absmax,
    const Eigen::Ref<const Eigen::VectorXd>& weight_absmax, double alpha) {
  if (!(alpha >= 0.0 && alpha <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat("alpha: %g is outside [0, 1]", alpha));
  }
  if (activation_absmax.size() == 0 || activation_absmax.size() != weight_absmax.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("activation maxima have %d entries, weight maxima %d; expected the same "
                        "non-zero count",
                        activation_absmax.size(), weight_absmax.size()));
  }
  Eigen::VectorXd t(activation_absmax.size());
  for (Eigen::Index j = 0; j < t.size(); ++j) {
    const double a = activation_absmax(j);
    const double w = weight_absmax(j);
    if (!std::isfinite(a) || a < 0.0 || !std::isfinite(w) || w < 0.0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "channel %d: activation max %g, weight max %g; expected finite values >= 0", j, a, w));
    }
    t(j) = (a > 0.0 && w > 0.0) ? std::pow(w, 1.0 - alpha) / std::pow(a, alpha) : 1.0;
  }
  return t;
}

}  // namespace catq
