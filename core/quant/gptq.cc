// GPTQ on the RTN grid (see gptq.h). The heavy steps are OpenBLAS calls on
// column-major doubles: a blocked Cholesky, a blocked triangular inverse and
// the lazy batch updates.
#include "core/quant/gptq.h"

#include <cblas.h>

#include <Eigen/Cholesky>
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/quant/internal/grid.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// |H[i, j] - H[j, i]| may be at most this times sqrt(H[i, i] * H[j, j]): a
// Hessian summed in float by a GEMM is symmetric only up to rounding, while a
// real asymmetry (a transposed or wrong matrix) is far larger.
constexpr double kSymmetryTolerance = 1e-5;

// Panel width of the blocked Cholesky and triangular inverse.
constexpr int64_t kFactorBlock = 256;

const char* NonFiniteName(double v) { return std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"); }

absl::Status CheckWeight(const Eigen::Ref<const RowMatrixXf>& w) {
  if (w.rows() == 0 || w.cols() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight: shape [", w.rows(), ", ", w.cols(), "] is empty"));
  }
  // BLAS takes int dimensions.
  if (w.rows() > INT_MAX || w.cols() > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight: shape [", w.rows(), ", ", w.cols(), "] is too large for BLAS"));
  }
  for (Eigen::Index r = 0; r < w.rows(); ++r) {
    for (Eigen::Index c = 0; c < w.cols(); ++c) {
      if (std::isfinite(w(r, c))) continue;
      return absl::InvalidArgumentError(
          absl::StrCat("weight[", r, ", ", c, "] is ", NonFiniteName(w(r, c))));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckHessian(const Eigen::Ref<const Eigen::MatrixXd>& h, int64_t d) {
  if (h.rows() != d || h.cols() != d) {
    return absl::InvalidArgumentError(absl::StrCat("hessian: shape [", h.rows(), ", ", h.cols(),
                                                   "], expected [", d, ", ", d,
                                                   "] for a weight with ", d, " input columns"));
  }
  for (int64_t j = 0; j < d; ++j) {
    for (int64_t i = 0; i < d; ++i) {
      if (std::isfinite(h(i, j))) continue;
      return absl::InvalidArgumentError(
          absl::StrCat("hessian[", i, ", ", j, "] is ", NonFiniteName(h(i, j))));
    }
  }
  for (int64_t j = 0; j < d; ++j) {
    if (h(j, j) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("hessian[", j, ", ", j, "] is ", h(j, j),
                       "; a second moment E[x x^T] has no negative diagonal entry"));
    }
  }
  for (int64_t j = 0; j < d; ++j) {
    for (int64_t i = j + 1; i < d; ++i) {
      const double tolerance = kSymmetryTolerance * std::sqrt(h(i, i)) * std::sqrt(h(j, j));
      if (std::fabs(h(i, j) - h(j, i)) <= tolerance) continue;
      return absl::InvalidArgumentError(absl::StrCat("hessian is not symmetric: [", i, ", ", j,
                                                     "] is ", h(i, j), " but [", j, ", ", i,
                                                     "] is ", h(j, i)));
    }
  }
  return absl::OkStatus();
}

absl::Status NotPositiveDefinite(double damping, double mean_diagonal) {
  return absl::InvalidArgumentError(absl::StrCat(
      "hessian is not positive definite even after damping ", damping, " x mean diagonal ",
      mean_diagonal, " (Cholesky failed); raise GptqOptions::damping"));
}

// Overwrites the lower triangle of the column-major `a` (n x n, SPD) with its
// Cholesky factor L (a = L L^T), panel by panel: Eigen factors the small
// diagonal block, OpenBLAS does the O(n^3) panel solve and trailing update.
// Returns false when a pivot is not positive. The strict upper triangle is
// neither read nor written.
bool CholeskyLowerInPlace(Eigen::MatrixXd& a) {
  const int64_t n = a.rows();
  const auto lda = static_cast<blasint>(n);
  for (int64_t j = 0; j < n; j += kFactorBlock) {
    const int64_t b = std::min(kFactorBlock, n - j);
    const int64_t t = n - j - b;
    Eigen::Ref<Eigen::MatrixXd> a11 = a.block(j, j, b, b);
    Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>, Eigen::Lower> llt(a11);
    if (llt.info() != Eigen::Success) return false;
    if (t == 0) break;
    double* a21 = &a(j + b, j);
    // A21 <- A21 L11^-T, then A22 <- A22 - A21 A21^T (lower triangle).
    cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit,
                static_cast<blasint>(t), static_cast<blasint>(b), 1.0, &a(j, j), lda, a21, lda);
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, static_cast<blasint>(t),
                static_cast<blasint>(b), -1.0, a21, lda, 1.0, &a(j + b, j + b), lda);
  }
  return true;
}

// Overwrites the lower triangular L in the lower triangle of `a` with L^-1,
// from the last panel to the first: with L = [L11 0; L21 L22] and L22^-1
// already in place, L21 <- -L22^-1 L21 L11^-1, then L11 <- L11^-1.
void InvertLowerInPlace(Eigen::MatrixXd& a) {
  const int64_t n = a.rows();
  const auto lda = static_cast<blasint>(n);
  for (int64_t j = (n - 1) / kFactorBlock * kFactorBlock; j >= 0; j -= kFactorBlock) {
    const int64_t b = std::min(kFactorBlock, n - j);
    const int64_t t = n - j - b;
    if (t > 0) {
      double* a21 = &a(j + b, j);
      cblas_dtrmm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit,
                  static_cast<blasint>(t), static_cast<blasint>(b), -1.0, &a(j + b, j + b), lda,
                  a21, lda);
      cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit,
                  static_cast<blasint>(t), static_cast<blasint>(b), 1.0, &a(j, j), lda, a21, lda);
    }
    Eigen::MatrixXd inverse = Eigen::MatrixXd::Identity(b, b);
    a.block(j, j, b, b).triangularView<Eigen::Lower>().solveInPlace(inverse);
    a.block(j, j, b, b).triangularView<Eigen::Lower>() = inverse;
  }
}

// The upper U with U^T U = H^-1 for the damped Hessian in processing order,
// Hp[k, l] = H[order[k], order[l]]. With J the reversal, J Hp J = L L^T gives
// Hp = M M^T for the upper M = J L J, so U = M^-1 = J L^-1 J: one Cholesky and
// one triangular inverse, no explicit Hp^-1. The strict lower part is zero.
absl::StatusOr<Eigen::MatrixXd> InverseHessianFactor(const Eigen::Ref<const Eigen::MatrixXd>& h,
                                                     const std::vector<double>& diagonal,
                                                     const std::vector<int64_t>& order,
                                                     double damping, double mean_diagonal) {
  const auto d = static_cast<int64_t>(order.size());
  const double damp = damping * mean_diagonal;
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(d, d);
  // Tiled, so that reading H by rows as well as by columns stays in cache.
  constexpr int64_t kTile = 64;
  for (int64_t j0 = 0; j0 < d; j0 += kTile) {
    const int64_t j1 = std::min(j0 + kTile, d);
    for (int64_t i0 = j0; i0 < d; i0 += kTile) {
      const int64_t i1 = std::min(i0 + kTile, d);
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t pj = order[d - 1 - j];
        for (int64_t i = std::max(i0, j + 1); i < i1; ++i) {
          const int64_t pi = order[d - 1 - i];
          // Averaging the two triangles keeps the result independent of
          // which one a caller's GEMM rounded differently.
          a(i, j) = 0.5 * (h(pi, pj) + h(pj, pi));
        }
      }
    }
  }
  for (int64_t j = 0; j < d; ++j) a(j, j) = diagonal[order[d - 1 - j]] + damp;
  if (!CholeskyLowerInPlace(a)) return NotPositiveDefinite(damping, mean_diagonal);
  InvertLowerInPlace(a);
  a.reverseInPlace();
  a.triangularView<Eigen::StrictlyLower>().setZero();
  for (int64_t j = 0; j < d; ++j) {
    if (!(a(j, j) > 0) || !a.col(j).head(j + 1).allFinite()) {
      return NotPositiveDefinite(damping, mean_diagonal);
    }
  }
  return a;
}

// Rows per pass over a lazy block: the block's slice of the working copy
// (64 x 128 doubles, 64 KiB) stays in cache while its columns are rounded one
// by one. Rows are independent in GPTQ, so this changes no result.
constexpr int64_t kRowChunk = 64;

// The grid of one (row, group): value = (q_u - zero_u) * scale. zero_u is
// only used by the asymmetric grid.
struct Grid {
  float scale = 0.0f;
  int zero_u = 0;
};

// The range [min(v, 0), max(v, 0)] of each row of a group's values, rounded
// to float as QuantizeRtn reads them, gathered column by column because
// columns are what is contiguous in the working copy.
class GroupRange {
 public:
  explicit GroupRange(int64_t rows) : lo_(rows, 0.0f), hi_(rows, 0.0f) {}

  // Adds one column, values[0 .. rows). Returns the first row whose value is
  // not finite as a float, or -1.
  int64_t Add(const double* values) {
    for (size_t r = 0; r < lo_.size(); ++r) {
      const float x = static_cast<float>(values[r]);
      if (!std::isfinite(x)) return static_cast<int64_t>(r);
      lo_[r] = std::min(lo_[r], x);
      hi_[r] = std::max(hi_[r], x);
    }
    return -1;
  }

  // The grid QuantizeRtn gives row r of these values (rtn.h); the symmetric
  // amax max(|v|) is max(hi, -lo). A scale that round_scale makes infinite is
  // an error naming the weight row and group, as in QuantizeRtn.
  absl::StatusOr<Grid> MakeGrid(int64_t r, int64_t weight_row, int64_t group,
                                const WeightQuantOptions& options,
                                ScaleRounding round_scale) const {
    Grid grid;
    if (options.symmetric) {
      grid.scale = quant_internal::SymmetricScale(std::max(hi_[r], -lo_[r]), options.bits);
      if (round_scale != nullptr) grid.scale = round_scale(grid.scale);
    } else {
      const quant_internal::AsymmetricGrid asymmetric =
          quant_internal::MakeAsymmetricGrid(lo_[r], hi_[r], options.bits, round_scale);
      grid.scale = asymmetric.scale;
      grid.zero_u = asymmetric.zero_u;
    }
    if (!std::isfinite(grid.scale)) {
      return absl::InvalidArgumentError(absl::StrCat("weight row ", weight_row, " group ", group,
                                                     ": scale ", grid.scale,
                                                     " is not representable in the scale dtype"));
    }
    return grid;
  }

 private:
  std::vector<float> lo_;
  std::vector<float> hi_;
};

absl::Status Diverged(int64_t row, int64_t column, double damping) {
  return absl::InvalidArgumentError(absl::StrCat(
      "weight[", row, ", ", column,
      "] is no longer finite after GPTQ updates; the hessian is too ill-conditioned, raise "
      "GptqOptions::damping (now ",
      damping, ")"));
}

// One GPTQ pass over a weight: the working copy in processing order, the
// factor U, the grids, and the scaled errors of the current lazy block.
class GptqRun {
 public:
  GptqRun(const Eigen::Ref<const RowMatrixXf>& w, const std::vector<bool>& dead,
          std::vector<int64_t> order, Eigen::MatrixXd u, const GptqOptions& gptq,
          ScaleRounding round_scale, QuantizedWeight& qw)
      : qw_(qw),
        gptq_(gptq),
        round_scale_(round_scale),
        rows_(w.rows()),
        d_(w.cols()),
        order_(std::move(order)),
        u_(std::move(u)),
        work_(rows_, d_),
        errors_(rows_, std::min<int64_t>(gptq.block_size, d_)),
        grids_(rows_) {
    // The working copy in processing order, column-major so that a column is
    // contiguous; dead columns start (and stay, up to updates) at 0. Copied
    // in tiles, since w is row-major and a plain loop would stride one side.
    constexpr int64_t kTile = 32;
    for (int64_t r0 = 0; r0 < rows_; r0 += kTile) {
      const int64_t r1 = std::min(r0 + kTile, rows_);
      for (int64_t k0 = 0; k0 < d_; k0 += kTile) {
        const int64_t k1 = std::min(k0 + kTile, d_);
        for (int64_t k = k0; k < k1; ++k) {
          const int64_t c = order_[k];
          for (int64_t r = r0; r < r1; ++r) work_(r, k) = dead[c] ? 0.0 : w(r, c);
        }
      }
    }
  }

  // Static groups: every grid from the working copy before any update.
  absl::Status SetStaticGrids() {
    const int64_t groups = qw_.groups();
    static_grids_.resize(rows_ * groups);
    std::vector<int64_t> position(d_);
    for (int64_t k = 0; k < d_; ++k) position[order_[k]] = k;
    for (int64_t g = 0; g < groups; ++g) {
      const ColumnRange span = GroupColumns(g, d_, qw_.options.group_size);
      GroupRange range(rows_);
      for (int64_t c = span.begin; c < span.end; ++c) {
        const int64_t bad = range.Add(&work_(0, position[c]));
        if (bad >= 0) return Diverged(bad, c, gptq_.damping);  // Unreachable: w is finite.
      }
      for (int64_t r = 0; r < rows_; ++r) {
        CATQ_ASSIGN_OR_RETURN(static_grids_[r * groups + g],
                              range.MakeGrid(r, r, g, qw_.options, round_scale_));
        Record(r, g, static_grids_[r * groups + g]);
      }
    }
    return absl::OkStatus();
  }

  absl::Status Run() {
    const bool dynamic = static_grids_.empty();
    const auto ldw = static_cast<blasint>(rows_);
    const auto ldu = static_cast<blasint>(d_);
    for (int64_t i1 = 0; i1 < d_; i1 += gptq_.block_size) {
      const int64_t i2 = std::min<int64_t>(i1 + gptq_.block_size, d_);
      for (int64_t r0 = 0; r0 < rows_; r0 += kRowChunk) {
        const int64_t r1 = std::min(r0 + kRowChunk, rows_);
        for (int64_t k = i1; k < i2; ++k) {
          if (dynamic && IsGroupStart(k)) CATQ_RETURN_IF_ERROR(SetDynamicGrids(i1, i2, k, r0, r1));
          CATQ_RETURN_IF_ERROR(QuantizeColumn(k, k - i1, r0, r1));
          // Spread this column's error over the rest of the block now; the
          // columns after the block get the whole block's at once below.
          if (k + 1 < i2) {
            cblas_dger(CblasColMajor, static_cast<blasint>(r1 - r0),
                       static_cast<blasint>(i2 - k - 1), -1.0, &errors_(r0, k - i1), 1,
                       &u_(k, k + 1), ldu, &work_(r0, k + 1), ldw);
          }
        }
      }
      if (i2 < d_) {
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, ldw, static_cast<blasint>(d_ - i2),
                    static_cast<blasint>(i2 - i1), -1.0, errors_.data(), ldw, &u_(i1, i2), ldu, 1.0,
                    &work_(0, i2), ldw);
      }
    }
    return absl::OkStatus();
  }

 private:
  // Dynamic grids exist only in the original order or per channel (see
  // QuantizeGptq), where the groups are position ranges.
  bool IsGroupStart(int64_t k) const {
    return qw_.options.group_size == kPerChannelGroupSize ? k == 0
                                                          : k % qw_.options.group_size == 0;
  }

  void Record(int64_t r, int64_t g, const Grid& grid) {
    const int64_t at = r * qw_.groups() + g;
    qw_.scales[at] = grid.scale;
    if (!qw_.options.symmetric) {
      qw_.zeros[at] =
          static_cast<int8_t>(grid.zero_u - quant_internal::SignedOffset(qw_.options.bits));
    }
  }

  // The dynamic grids of rows [r0, r1) for the group starting at position k
  // of the block [i1, i2). For these rows the positions before i2 are up to
  // date in work_; those after it still miss the updates from the block's
  // columns i1 .. k-1, which are added to a copy here.
  absl::Status SetDynamicGrids(int64_t i1, int64_t i2, int64_t k, int64_t r0, int64_t r1) {
    const int64_t g = GroupOfColumn(k, qw_.options.group_size);
    const ColumnRange span = GroupColumns(g, d_, qw_.options.group_size);
    const int64_t n = r1 - r0;
    GroupRange range(n);
    const int64_t current_end = k == i1 ? span.end : std::min(span.end, i2);
    for (int64_t p = span.begin; p < current_end; ++p) {
      const int64_t bad = range.Add(&work_(r0, p));
      if (bad >= 0) return Diverged(r0 + bad, order_[p], gptq_.damping);
    }
    if (current_end < span.end) {
      const int64_t width = span.end - current_end;
      pending_ = work_.block(r0, current_end, n, width);
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(n),
                  static_cast<blasint>(width), static_cast<blasint>(k - i1), -1.0, &errors_(r0, 0),
                  static_cast<blasint>(rows_), &u_(i1, current_end), static_cast<blasint>(d_), 1.0,
                  pending_.data(), static_cast<blasint>(n));
      for (int64_t p = 0; p < width; ++p) {
        const int64_t bad = range.Add(&pending_(0, p));
        if (bad >= 0) return Diverged(r0 + bad, order_[current_end + p], gptq_.damping);
      }
    }
    for (int64_t r = 0; r < n; ++r) {
      CATQ_ASSIGN_OR_RETURN(grids_[r0 + r],
                            range.MakeGrid(r, r0 + r, g, qw_.options, round_scale_));
      Record(r0 + r, g, grids_[r0 + r]);
    }
    return absl::OkStatus();
  }

  // Rounds position k of rows [r0, r1) on its grid, stores q at its original
  // column, and writes the scaled error (w - value) / U[k, k] to errors_(:, e).
  absl::Status QuantizeColumn(int64_t k, int64_t e, int64_t r0, int64_t r1) {
    const int64_t column = order_[k];
    const int bits = qw_.options.bits;
    const int offset = quant_internal::SignedOffset(bits);
    const int64_t groups = qw_.groups();
    const int64_t group = GroupOfColumn(column, qw_.options.group_size);
    const double diagonal = u_(k, k);
    for (int64_t r = r0; r < r1; ++r) {
      const float x = static_cast<float>(work_(r, k));
      if (!std::isfinite(x)) return Diverged(r, column, gptq_.damping);
      const Grid& grid = static_grids_.empty() ? grids_[r] : static_grids_[r * groups + group];
      int q = 0;
      float value = 0.0f;
      if (qw_.options.symmetric) {
        q = grid.scale > 0.0f ? quant_internal::SymmetricLevel(x, grid.scale, bits) : 0;
        value = static_cast<float>(q) * grid.scale;
      } else {
        const quant_internal::AsymmetricGrid asymmetric{grid.scale, grid.zero_u};
        const int q_u =
            grid.scale > 0.0f ? quant_internal::AsymmetricLevel(x, asymmetric, bits) : grid.zero_u;
        q = q_u - offset;
        value = static_cast<float>(q_u - grid.zero_u) * grid.scale;
      }
      qw_.q[r * d_ + column] = static_cast<int8_t>(q);
      errors_(r, e) = (work_(r, k) - static_cast<double>(value)) / diagonal;
    }
    return absl::OkStatus();
  }

  QuantizedWeight& qw_;
  const GptqOptions& gptq_;
  const ScaleRounding round_scale_;
  const int64_t rows_;
  const int64_t d_;
  const std::vector<int64_t> order_;  // order_[k]: the column at position k
  const Eigen::MatrixXd u_;           // [d, d] upper, in processing order
  Eigen::MatrixXd work_;              // [rows, d] weights being updated
  Eigen::MatrixXd errors_;            // [rows, block_size]
  Eigen::MatrixXd pending_;           // scratch of SetDynamicGrids
  std::vector<Grid> grids_;           // [rows] of the current dynamic group
  std::vector<Grid> static_grids_;    // [rows, groups]; empty when dynamic
};

}  // namespace

absl::Status GptqOptions::Validate() const {
  if (!std::isfinite(damping) || damping < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("damping: ", damping, " must be finite and >= 0"));
  }
  if (block_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("block_size: ", block_size, " must be >= 1"));
  }
  return absl::OkStatus();
}

absl::StatusOr<QuantizedWeight> QuantizeGptq(const Eigen::Ref<const RowMatrixXf>& w,
                                             const Eigen::Ref<const Eigen::MatrixXd>& hessian,
                                             const WeightQuantOptions& options,
                                             const GptqOptions& gptq, ScaleRounding round_scale) {
  CATQ_RETURN_IF_ERROR(Prefix("options", options.Validate()));
  CATQ_RETURN_IF_ERROR(Prefix("gptq", gptq.Validate()));
  const bool grouped = options.group_size != kPerChannelGroupSize;
  if (gptq.act_order && grouped && !gptq.static_groups) {
    return absl::InvalidArgumentError(
        absl::StrCat("gptq: act_order with group_size ", options.group_size,
                     " needs static_groups: groups scaled in activation order would mix columns of "
                     "other groups and need a g_idx"));
  }
  CATQ_RETURN_IF_ERROR(CheckWeight(w));
  const int64_t d = w.cols();
  CATQ_RETURN_IF_ERROR(CheckHessian(hessian, d));

  // Dead inputs: their weights cannot matter on the calibration data, so
  // they become 0 and their Hessian diagonal 1 (as in the reference GPTQ).
  std::vector<bool> dead(d);
  std::vector<double> diagonal(d);
  for (int64_t j = 0; j < d; ++j) {
    dead[j] = hessian(j, j) == 0.0;
    diagonal[j] = dead[j] ? 1.0 : hessian(j, j);
  }
  const double mean_diagonal =
      std::accumulate(diagonal.begin(), diagonal.end(), 0.0) / static_cast<double>(d);

  std::vector<int64_t> order(d);
  std::iota(order.begin(), order.end(), 0);
  if (gptq.act_order) {
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return diagonal[a] > diagonal[b]; });
  }
  CATQ_ASSIGN_OR_RETURN(Eigen::MatrixXd u, InverseHessianFactor(hessian, diagonal, order,
                                                                gptq.damping, mean_diagonal));

  QuantizedWeight qw;
  qw.rows = w.rows();
  qw.cols = d;
  qw.options = options;
  qw.q.resize(qw.rows * qw.cols);
  qw.scales.resize(qw.rows * qw.groups());
  if (!options.symmetric) qw.zeros.resize(qw.rows * qw.groups());

  GptqRun run(w, dead, std::move(order), std::move(u), gptq, round_scale, qw);
  // Per channel, static and dynamic grids are the same (the one group starts
  // before any update); the dynamic path avoids a second copy of the grids.
  if (gptq.static_groups && grouped) CATQ_RETURN_IF_ERROR(run.SetStaticGrids());
  CATQ_RETURN_IF_ERROR(run.Run());
  return qw;
}

}  // namespace catq
