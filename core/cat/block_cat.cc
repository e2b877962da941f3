#include "core/cat/block_cat.h"

#include <Eigen/Eigenvalues>
#include <Eigen/LU>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

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

// cond_2 of `t` from its singular values; +Inf when singular.
double ConditionNumber(const Eigen::MatrixXd& t) {
  const Eigen::VectorXd sigma = Eigen::BDCSVD<Eigen::MatrixXd>(t).singularValues();
  const double smallest = sigma.minCoeff();
  return smallest > 0.0 ? sigma.maxCoeff() / smallest : std::numeric_limits<double>::infinity();
}

double InverseResidual(const Eigen::MatrixXd& t) {
  const Eigen::Index n = t.rows();
  const Eigen::PartialPivLU<Eigen::MatrixXd> lu(t);
  const Eigen::MatrixXd inverse = lu.solve(Eigen::MatrixXd::Identity(n, n));
  Eigen::MatrixXd residual = t * inverse;
  residual.diagonal().array() -= 1.0;
  return residual.cwiseAbs().maxCoeff();
}

struct BlockSolve {
  Eigen::MatrixXd t;
  bool damped = false;  // needed damping (BlockCatReport::damped_blocks)
  bool clipped = false;
  bool identity = false;
};

BlockSolve SolveOneBlock(const Eigen::MatrixXd& sx_lower, const Eigen::MatrixXd& sw_lower,
                         const BlockCatOptions& options) {
  const Eigen::Index n = sx_lower.rows();
  BlockSolve out;
  const Eigen::MatrixXd sx = FromLowerTriangle(sx_lower);
  const Eigen::MatrixXd sw = FromLowerTriangle(sw_lower);
  // A block with no activation energy or no weight energy: C_b = 0 and no T_b
  // exists. Damping scales with mean(diag S), so it cannot rescue it either.
  if (sx.diagonal().maxCoeff() <= 0.0 || sw.diagonal().maxCoeff() <= 0.0) {
    out.t = Eigen::MatrixXd::Identity(n, n);
    out.identity = true;
    return out;
  }

  double shift_x = 0.0;
  double shift_w = 0.0;
  const Eigen::MatrixXd sx_damped = Damp(sx, options.damping, &shift_x);
  const Eigen::MatrixXd sw_damped = Damp(sw, options.damping, &shift_w);

  const SymmetricPowers sx_powers(sx_damped, options.eigen_clip);
  // Damping shifts every eigenvalue by the same amount, so the undamped
  // spectrum of Sx_bb comes for free; Sw_bb needs its own eigenvalues.
  const bool sx_singular =
      NumericallySingular(sx_powers.min_eigenvalue() - shift_x,
                          sx_powers.max_eigenvalue() - shift_x, options.eigen_clip);
  const Eigen::VectorXd sw_eigenvalues =
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(sw, Eigen::EigenvaluesOnly).eigenvalues();
  const bool sw_singular =
      NumericallySingular(sw_eigenvalues.minCoeff(), sw_eigenvalues.maxCoeff(), options.eigen_clip);
  out.damped = sx_singular || sw_singular;

  const Eigen::MatrixXd sx_sqrt = sx_powers.Power(0.5);
  const Eigen::MatrixXd sx_inv_sqrt = sx_powers.Power(-0.5);
  Eigen::MatrixXd c(n, n);
  c.noalias() = sx_sqrt * sw_damped * sx_sqrt;
  // Rounding leaves C a little asymmetric; the eigensolver reads one triangle,
  // so make both agree.
  c = 0.5 * (c + c.transpose()).eval();
  const SymmetricPowers c_powers(c, options.eigen_clip);
  out.clipped = sx_powers.clipped() || c_powers.clipped();
  out.t.noalias() = c_powers.Power(0.25) * sx_inv_sqrt;
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

SymmetricPowers::SymmetricPowers(const Eigen::Ref<const Eigen::MatrixXd>& s, double eigen_clip) {
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(s, Eigen::ComputeEigenvectors);
  eigenvectors_ = solver.eigenvectors();
  eigenvalues_ = solver.eigenvalues();
  min_eigenvalue_ = eigenvalues_.minCoeff();
  max_eigenvalue_ = eigenvalues_.maxCoeff();
  const double floor = std::max(0.0, eigen_clip * max_eigenvalue_);
  clipped_ = min_eigenvalue_ < floor;
  eigenvalues_ = eigenvalues_.cwiseMax(floor);
}

Eigen::MatrixXd SymmetricPowers::Power(double p) const {
  const Eigen::VectorXd powered = eigenvalues_.array().pow(p).matrix();
  Eigen::MatrixXd out(eigenvectors_.rows(), eigenvectors_.rows());
  out.noalias() = eigenvectors_ * powered.asDiagonal() * eigenvectors_.transpose();
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
  for (size_t b = 0; b < sx_blocks.size(); ++b) {
    BlockSolve solve = SolveOneBlock(sx_blocks[b], sw_blocks[b], options);
    report.damped_blocks += solve.damped ? 1 : 0;
    report.clipped_blocks += solve.clipped ? 1 : 0;
    report.identity_blocks += solve.identity ? 1 : 0;
    const double condition = ConditionNumber(solve.t);
    report.block_condition.push_back(condition);
    report.max_condition = std::max(report.max_condition, condition);
    report.max_inverse_residual = std::max(report.max_inverse_residual, InverseResidual(solve.t));
    result.blocks.push_back(std::move(solve.t));
  }
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
