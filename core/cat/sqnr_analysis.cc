#include "core/cat/sqnr_analysis.h"

#include <cblas.h>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/cat/block_cat.h"
#include "core/quant/activation_quant.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/rtn.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// Tokens (or weight rows) converted to float64 at a time.
constexpr int64_t kChunk = 256;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// c = a b^T for row-major a [n, d], b [m, d]; c is resized to [n, m].
void MultiplyTransposed(const RowMatrixXd& a, const RowMatrixXd& b, RowMatrixXd& c) {
  c.resize(a.rows(), b.rows());
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(a.rows()),
              static_cast<int>(b.rows()), static_cast<int>(a.cols()), 1.0, a.data(),
              static_cast<int>(a.cols()), b.data(), static_cast<int>(b.cols()), 0.0, c.data(),
              static_cast<int>(b.rows()));
}

absl::Status CheckFinite(const char* what, const Eigen::Ref<const RowMatrixXf>& m) {
  if (m.rows() > INT_MAX || m.cols() > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s is %dx%d: too large", what, m.rows(), m.cols()));
  }
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    for (Eigen::Index j = 0; j < m.cols(); ++j) {
      if (!std::isfinite(m(i, j))) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s[%d, %d] is not finite (%g)", what, i, j, m(i, j)));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOptions(const SqnrOptions& options) {
  CATQ_RETURN_IF_ERROR(Prefix("weights", options.weights.Validate()));
  if (options.activation_bits < kMinActivationBits ||
      options.activation_bits > kMaxActivationBits) {
    return absl::InvalidArgumentError(absl::StrFormat("activation_bits: %d is outside [%d, %d]",
                                                      options.activation_bits, kMinActivationBits,
                                                      kMaxActivationBits));
  }
  return absl::OkStatus();
}

GridNoiseModel ActivationModel(const SqnrOptions& options) {
  return options.paper_noise_model
             ? PaperGridModel(options.activation_bits, options.activation_symmetric)
             : GridModel(options.activation_bits, options.activation_symmetric);
}

GridNoiseModel WeightModel(const SqnrOptions& options) {
  return options.paper_noise_model ? PaperGridModel(options.weights.bits, options.weights.symmetric)
                                   : GridModel(options.weights.bits, options.weights.symmetric);
}

// The numerator and denominator of C(W).
struct WeightRangeTerms {
  double frobenius_sq = 0.0;
  double weighted_range_sq = 0.0;
};

absl::StatusOr<WeightRangeTerms> ComputeWeightRangeTerms(const Eigen::Ref<const RowMatrixXf>& w,
                                                         int group_size, RangeKind range) {
  if (w.rows() < 1 || w.cols() < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("weight is %dx%d: empty", w.rows(), w.cols()));
  }
  if (group_size != kPerChannelGroupSize && group_size < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("group_size: %d is invalid", group_size));
  }
  CATQ_RETURN_IF_ERROR(CheckFinite("weight", w));
  const int64_t d = w.cols();
  const int64_t groups = NumGroups(d, group_size);
  WeightRangeTerms terms;
  std::vector<float> row(d);
  for (Eigen::Index i = 0; i < w.rows(); ++i) {
    for (int64_t j = 0; j < d; ++j) {
      row[j] = w(i, j);
      terms.frobenius_sq += static_cast<double>(row[j]) * row[j];
    }
    for (int64_t g = 0; g < groups; ++g) {
      const ColumnRange cols = GroupColumns(g, d, group_size);
      const double r =
          RangeOf(absl::MakeConstSpan(row.data() + cols.begin, cols.end - cols.begin), range);
      terms.weighted_range_sq += static_cast<double>(cols.end - cols.begin) / d * r * r;
    }
  }
  if (terms.weighted_range_sq <= 0.0) {
    return absl::InvalidArgumentError("weight is all zero: its SQNR is undefined");
  }
  return terms;
}

// X^T X / tokens in float64.
Eigen::MatrixXd SecondMomentOfSamples(const Eigen::Ref<const RowMatrixXf>& x) {
  const int64_t d = x.cols();
  Eigen::MatrixXd sx = Eigen::MatrixXd::Zero(d, d);
  RowMatrixXd chunk(std::min<int64_t>(kChunk, x.rows()), d);
  for (int64_t t = 0; t < x.rows(); t += kChunk) {
    const int64_t n = std::min<int64_t>(kChunk, x.rows() - t);
    chunk.topRows(n) = x.middleRows(t, n).cast<double>();
    // Row-major chunk [n, d] is the column-major chunk^T [d, n].
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, static_cast<int>(d), static_cast<int>(n),
                1.0, chunk.data(), static_cast<int>(d), 1.0, sx.data(), static_cast<int>(d));
  }
  sx.triangularView<Eigen::StrictlyUpper>() = sx.transpose();
  sx /= static_cast<double>(x.rows());
  return sx;
}

// A_max from the eigenvalues c_i of a Gram matrix whose eigenvalues are the
// s_i^2. A backward-stable eigensolver leaves each of them off by about
// n * eps * c_max, and sqrt turns that noise in the null space (rank-deficient
// W Sx^(1/2)) into sqrt(eps)-sized terms of sum s_i, so eigenvalues within it
// are taken as 0.
double MaxAlignmentFromGram(const Eigen::MatrixXd& gram) {
  Eigen::VectorXd c =
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(gram, Eigen::EigenvaluesOnly).eigenvalues();
  const double noise =
      static_cast<double>(c.size()) * std::numeric_limits<double>::epsilon() * c.maxCoeff();
  c = (c.array() <= noise).select(0.0, c);
  const double sum_sqrt = c.array().sqrt().sum();
  return c.sum() / (sum_sqrt * sum_sqrt);
}

// C = Sx^(1/2) Sw Sx^(1/2) from a precomputed Sx^(1/2).
double MaxAlignmentFromRoot(const Eigen::MatrixXd& sw, const Eigen::MatrixXd& sx_sqrt) {
  Eigen::MatrixXd c(sw.rows(), sw.rows());
  c.noalias() = sx_sqrt * sw * sx_sqrt;
  return MaxAlignmentFromGram(0.5 * (c + c.transpose()));
}

// The statistics of one weight against Sx that the prediction needs.
struct WeightAgainstSx {
  WeightRangeTerms range;
  double signal = 0.0;  // tr(W Sx W^T) = E||W x||^2
  double max_alignment = kNaN;
};

// Sx^(1/2) (negative rounding eigenvalues clipped to 0), computed on first use.
class LazyRoot {
 public:
  // `sx` must outlive this object.
  explicit LazyRoot(const Eigen::Ref<const Eigen::MatrixXd>& sx) : sx_(sx) {}
  absl::StatusOr<const Eigen::MatrixXd*> Get() {
    if (!root_) {
      CATQ_ASSIGN_OR_RETURN(const SymmetricPowers powers, SymmetricPowers::Create(sx_, 0.0));
      root_ = powers.Power(0.5);
    }
    return &*root_;
  }

 private:
  const Eigen::Ref<const Eigen::MatrixXd> sx_;
  std::optional<Eigen::MatrixXd> root_;
};

absl::StatusOr<WeightAgainstSx> AnalyzeWeightAgainstSx(const Eigen::Ref<const RowMatrixXf>& w,
                                                       const Eigen::Ref<const Eigen::MatrixXd>& sx,
                                                       const SqnrOptions& options,
                                                       LazyRoot& sx_root) {
  WeightAgainstSx out;
  CATQ_ASSIGN_OR_RETURN(out.range, ComputeWeightRangeTerms(w, options.weights.group_size,
                                                           WeightModel(options).range));
  const int64_t m = w.rows();
  const int64_t d = w.cols();
  // W Sx W^T row block by row block: its trace is the signal, and when
  // m <= d its eigenvalues are the s_i^2 of W Sx^(1/2) (one m x m
  // eigendecomposition instead of a root of Sx and one of d x d).
  const bool gram_path = options.compute_max_alignment && m <= d;
  Eigen::MatrixXd gram;
  RowMatrixXd wd;
  if (gram_path) {
    gram.resize(m, m);
    wd = w.cast<double>();
  }
  RowMatrixXd chunk(std::min<int64_t>(kChunk, m), d);
  RowMatrixXd chunk_sx(chunk.rows(), d);
  for (int64_t r = 0; r < m; r += kChunk) {
    const int64_t n = std::min<int64_t>(kChunk, m - r);
    chunk.topRows(n) = w.middleRows(r, n).cast<double>();
    chunk_sx.topRows(n).noalias() = chunk.topRows(n) * sx;
    out.signal += (chunk_sx.topRows(n).array() * chunk.topRows(n).array()).sum();
    if (gram_path) gram.middleRows(r, n).noalias() = chunk_sx.topRows(n) * wd.transpose();
  }
  if (gram_path) {
    out.max_alignment = MaxAlignmentFromGram(0.5 * (gram + gram.transpose()));
  } else if (options.compute_max_alignment) {
    const Eigen::MatrixXd sw = w.cast<double>().transpose() * w.cast<double>();
    CATQ_ASSIGN_OR_RETURN(const Eigen::MatrixXd* root, sx_root.Get());
    out.max_alignment = MaxAlignmentFromRoot(sw, *root);
  }
  return out;
}

// Fills the predicted fields of `report` (linear-scale inputs).
void FillPrediction(double activation_concentration, const WeightRangeTerms& range, double signal,
                    double tr_sx, double max_alignment, const SqnrOptions& options,
                    LinearSqnrReport& report) {
  const double weight_concentration = range.frobenius_sq / range.weighted_range_sq;
  const double alignment = signal / (range.frobenius_sq * tr_sx);
  const double sqnr_x =
      PredictedSqnr(ActivationModel(options).steps, activation_concentration, alignment);
  const double sqnr_w = PredictedSqnr(WeightModel(options).steps, weight_concentration, alignment);
  report.activation_concentration_db = ToDb(activation_concentration);
  report.weight_concentration_db = ToDb(weight_concentration);
  report.alignment_db = ToDb(alignment);
  report.max_alignment_db = ToDb(max_alignment);
  report.predicted_activation_sqnr_db = ToDb(sqnr_x);
  report.predicted_weight_sqnr_db = ToDb(sqnr_w);
  report.predicted_sqnr_db = ToDb(CombineSqnr(sqnr_x, sqnr_w));
  report.measured_activation_sqnr_db = kNaN;
  report.measured_weight_sqnr_db = kNaN;
  report.measured_sqnr_db = kNaN;
}

// Output energies on the samples: signal and the three noises.
struct MeasuredEnergies {
  double signal = 0.0;
  double noise_x = 0.0;     // W Q(x)
  double noise_w = 0.0;     // Q(W) x
  double noise_both = 0.0;  // Q(W) Q(x)
};

void FillMeasured(const MeasuredEnergies& e, LinearSqnrReport& report) {
  report.measured_activation_sqnr_db = ToDb(e.signal / e.noise_x);
  report.measured_weight_sqnr_db = ToDb(e.signal / e.noise_w);
  report.measured_sqnr_db = ToDb(e.signal / e.noise_both);
}

absl::StatusOr<std::vector<MeasuredEnergies>> Measure(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, const Eigen::Ref<const RowMatrixXf>& x,
    const SqnrOptions& options, absl::Span<const RowMatrixXf> quantized) {
  std::vector<RowMatrixXd> w(weights.size());
  std::vector<RowMatrixXd> wq(weights.size());
  for (size_t l = 0; l < weights.size(); ++l) {
    if (!quantized.empty()) {
      if (quantized[l].rows() != weights[l].rows() || quantized[l].cols() != weights[l].cols()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "quantized weight %d is [%d, %d], the weight [%d, %d]", l, quantized[l].rows(),
            quantized[l].cols(), weights[l].rows(), weights[l].cols()));
      }
      w[l] = weights[l].cast<double>();
      wq[l] = quantized[l].cast<double>();
      continue;
    }
    absl::StatusOr<QuantizedWeight> q = QuantizeRtn(weights[l], options.weights);
    if (!q.ok()) return Prefix(absl::StrFormat("weight %d", l), q.status());
    w[l] = weights[l].cast<double>();
    wq[l] = Dequantize(*q).cast<double>();
  }
  std::vector<MeasuredEnergies> energies(weights.size());
  const int64_t d = x.cols();
  RowMatrixXf xq_f(std::min<int64_t>(kChunk, x.rows()), d);
  RowMatrixXd xd, xq;
  RowMatrixXd y, y_x, y_w, y_both;
  for (int64_t t = 0; t < x.rows(); t += kChunk) {
    const int64_t n = std::min<int64_t>(kChunk, x.rows() - t);
    xq_f.resize(n, d);
    xq_f = x.middleRows(t, n);
    for (int64_t i = 0; i < n; ++i) {
      const absl::Span<float> token(xq_f.row(i).data(), d);
      if (options.activation_symmetric) {
        FakeQuantizeTokenSymmetric(token, options.activation_bits);
      } else {
        FakeQuantizeTokenAsymmetric(token, options.activation_bits);
      }
    }
    xd = x.middleRows(t, n).cast<double>();
    xq = xq_f.cast<double>();
    for (size_t l = 0; l < weights.size(); ++l) {
      MultiplyTransposed(xd, w[l], y);
      MultiplyTransposed(xq, w[l], y_x);
      MultiplyTransposed(xd, wq[l], y_w);
      MultiplyTransposed(xq, wq[l], y_both);
      energies[l].signal += y.squaredNorm();
      energies[l].noise_x += (y_x - y).squaredNorm();
      energies[l].noise_w += (y_w - y).squaredNorm();
      energies[l].noise_both += (y_both - y).squaredNorm();
    }
  }
  return energies;
}

absl::Status CheckWeights(absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, int64_t d) {
  if (weights.empty()) return absl::InvalidArgumentError("no weights");
  for (size_t l = 0; l < weights.size(); ++l) {
    if (weights[l].cols() != d || weights[l].rows() < 1) {
      return absl::InvalidArgumentError(
          absl::StrFormat("weight %d is %dx%d, expected [out >= 1, %d]", l, weights[l].rows(),
                          weights[l].cols(), d));
    }
  }
  return absl::OkStatus();
}

}  // namespace

GridNoiseModel GridModel(int bits, bool symmetric) {
  if (symmetric) return {RangeKind::kSymmetric, std::ldexp(1.0, bits) - 2.0};
  return {RangeKind::kMinMaxWithZero, std::ldexp(1.0, bits) - 1.0};
}

GridNoiseModel PaperGridModel(int bits, bool symmetric) {
  return {symmetric ? RangeKind::kSymmetric : RangeKind::kMinMax, std::ldexp(1.0, bits) - 1.0};
}

double RangeOf(absl::Span<const float> v, RangeKind kind) {
  if (v.empty()) return 0.0;
  double lo = v[0];
  double hi = v[0];
  for (const float e : v) {
    lo = std::min(lo, static_cast<double>(e));
    hi = std::max(hi, static_cast<double>(e));
  }
  switch (kind) {
    case RangeKind::kSymmetric:
      return 2.0 * std::max(std::abs(lo), std::abs(hi));
    case RangeKind::kMinMax:
      return hi - lo;
    case RangeKind::kMinMaxWithZero:
      return std::max(hi, 0.0) - std::min(lo, 0.0);
  }
  return 0.0;
}

absl::StatusOr<ActivationRangeStats> ComputeActivationRangeStats(
    const Eigen::Ref<const RowMatrixXf>& x, RangeKind range) {
  if (x.rows() < 1 || x.cols() < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("activation samples are %dx%d: empty", x.rows(), x.cols()));
  }
  CATQ_RETURN_IF_ERROR(CheckFinite("activations", x));
  ActivationRangeStats stats;
  stats.tokens = x.rows();
  std::vector<float> token(x.cols());
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      token[j] = x(t, j);
      stats.mean_sq_norm += static_cast<double>(token[j]) * token[j];
    }
    const double r = RangeOf(token, range);
    stats.mean_sq_range += r * r;
  }
  stats.mean_sq_norm /= static_cast<double>(stats.tokens);
  stats.mean_sq_range /= static_cast<double>(stats.tokens);
  return stats;
}

absl::StatusOr<double> ActivationConcentration(const ActivationRangeStats& stats) {
  if (!std::isfinite(stats.mean_sq_norm) || !std::isfinite(stats.mean_sq_range) ||
      stats.mean_sq_range <= 0.0 || stats.mean_sq_norm < 0.0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "activation statistics E||x||^2 = %g, E[r^2] = %g: need finite values and E[r^2] > 0",
        stats.mean_sq_norm, stats.mean_sq_range));
  }
  return stats.mean_sq_norm / stats.mean_sq_range;
}

absl::StatusOr<double> WeightConcentration(const Eigen::Ref<const RowMatrixXf>& w, int group_size,
                                           RangeKind range) {
  CATQ_ASSIGN_OR_RETURN(const WeightRangeTerms terms,
                        ComputeWeightRangeTerms(w, group_size, range));
  return terms.frobenius_sq / terms.weighted_range_sq;
}

namespace {

absl::Status CheckMomentPair(const Eigen::Ref<const Eigen::MatrixXd>& sw,
                             const Eigen::Ref<const Eigen::MatrixXd>& sx) {
  if (sw.rows() < 1 || sw.rows() != sw.cols() || sx.rows() != sw.rows() || sx.cols() != sw.cols()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Sw is %dx%d and Sx is %dx%d: need two square matrices of one size",
                        sw.rows(), sw.cols(), sx.rows(), sx.cols()));
  }
  if (!sw.allFinite() || !sx.allFinite()) {
    return absl::InvalidArgumentError("Sw or Sx has a non-finite element");
  }
  if (!(sw.trace() > 0.0) || !(sx.trace() > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tr Sw = %g, tr Sx = %g: both must be > 0", sw.trace(), sx.trace()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> Alignment(const Eigen::Ref<const Eigen::MatrixXd>& sw,
                                 const Eigen::Ref<const Eigen::MatrixXd>& sx) {
  CATQ_RETURN_IF_ERROR(CheckMomentPair(sw, sx));
  // tr(Sw Sx) = sum_ij Sw_ij Sx_ji = sum_ij Sw_ij Sx_ij for symmetric Sx.
  return (sw.array() * sx.array()).sum() / (sw.trace() * sx.trace());
}

absl::StatusOr<double> MaxAlignment(const Eigen::Ref<const Eigen::MatrixXd>& sw,
                                    const Eigen::Ref<const Eigen::MatrixXd>& sx) {
  CATQ_RETURN_IF_ERROR(CheckMomentPair(sw, sx));
  CATQ_ASSIGN_OR_RETURN(const SymmetricPowers powers, SymmetricPowers::Create(sx, 0.0));
  return MaxAlignmentFromRoot(sw, powers.Power(0.5));
}

double PredictedSqnr(double steps, double concentration, double alignment) {
  return 12.0 * steps * steps * concentration * alignment;
}

double CombineSqnr(double a, double b) { return 1.0 / (1.0 / a + 1.0 / b); }

double ToDb(double v) { return 10.0 * std::log10(v); }

absl::StatusOr<LinearSqnrReport> PredictLinearSqnr(const Eigen::Ref<const RowMatrixXf>& w,
                                                   const Eigen::Ref<const Eigen::MatrixXd>& sx,
                                                   const ActivationRangeStats& stats,
                                                   const SqnrOptions& options) {
  CATQ_RETURN_IF_ERROR(CheckOptions(options));
  if (sx.rows() != w.cols() || sx.cols() != w.cols() || !sx.allFinite() || !(sx.trace() > 0.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Sx is %dx%d for a weight with %d columns: need a finite square Sx of that size with "
        "positive trace",
        sx.rows(), sx.cols(), w.cols()));
  }
  CATQ_ASSIGN_OR_RETURN(const double cx, ActivationConcentration(stats));
  LazyRoot root(sx);
  CATQ_ASSIGN_OR_RETURN(const WeightAgainstSx terms, AnalyzeWeightAgainstSx(w, sx, options, root));
  LinearSqnrReport report;
  FillPrediction(cx, terms.range, terms.signal, sx.trace(), terms.max_alignment, options, report);
  return report;
}

absl::StatusOr<SiteSqnrReport> AnalyzeSite(absl::Span<const Eigen::Ref<const RowMatrixXf>> weights,
                                           const Eigen::Ref<const RowMatrixXf>& x,
                                           const SqnrOptions& options,
                                           absl::Span<const RowMatrixXf> quantized) {
  CATQ_RETURN_IF_ERROR(CheckOptions(options));
  CATQ_RETURN_IF_ERROR(CheckWeights(weights, x.cols()));
  if (!quantized.empty() && quantized.size() != weights.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d quantized weights for %d weights", quantized.size(), weights.size()));
  }
  CATQ_ASSIGN_OR_RETURN(const ActivationRangeStats stats,
                        ComputeActivationRangeStats(x, ActivationModel(options).range));
  CATQ_ASSIGN_OR_RETURN(const double cx, ActivationConcentration(stats));
  const Eigen::MatrixXd sx = SecondMomentOfSamples(x);
  LazyRoot root(sx);

  SiteSqnrReport site;
  WeightRangeTerms total_range;
  double total_signal = 0.0;
  for (size_t l = 0; l < weights.size(); ++l) {
    absl::StatusOr<WeightAgainstSx> analyzed =
        AnalyzeWeightAgainstSx(weights[l], sx, options, root);
    if (!analyzed.ok()) return Prefix(absl::StrFormat("weight %d", l), analyzed.status());
    const WeightAgainstSx& terms = *analyzed;
    LinearSqnrReport report;
    FillPrediction(cx, terms.range, terms.signal, sx.trace(), terms.max_alignment, options, report);
    site.linears.push_back(report);
    total_range.frobenius_sq += terms.range.frobenius_sq;
    total_range.weighted_range_sq += terms.range.weighted_range_sq;
    total_signal += terms.signal;
  }
  CATQ_ASSIGN_OR_RETURN(const std::vector<MeasuredEnergies> energies,
                        Measure(weights, x, options, quantized));
  MeasuredEnergies total;
  for (size_t l = 0; l < weights.size(); ++l) {
    FillMeasured(energies[l], site.linears[l]);
    total.signal += energies[l].signal;
    total.noise_x += energies[l].noise_x;
    total.noise_w += energies[l].noise_w;
    total.noise_both += energies[l].noise_both;
  }
  if (weights.size() == 1) {
    site.sum = site.linears[0];
    return site;
  }
  double total_max_alignment = kNaN;
  if (options.compute_max_alignment) {
    Eigen::MatrixXd sw = Eigen::MatrixXd::Zero(x.cols(), x.cols());
    for (const Eigen::Ref<const RowMatrixXf>& w : weights) {
      const RowMatrixXd wd = w.cast<double>();
      sw.noalias() += wd.transpose() * wd;
    }
    CATQ_ASSIGN_OR_RETURN(const Eigen::MatrixXd* sx_root, root.Get());
    total_max_alignment = MaxAlignmentFromRoot(sw, *sx_root);
  }
  FillPrediction(cx, total_range, total_signal, sx.trace(), total_max_alignment, options, site.sum);
  FillMeasured(total, site.sum);
  return site;
}

absl::StatusOr<LinearSqnrReport> AnalyzeLinear(const Eigen::Ref<const RowMatrixXf>& w,
                                               const Eigen::Ref<const RowMatrixXf>& x,
                                               const SqnrOptions& options) {
  const Eigen::Ref<const RowMatrixXf> weights[] = {w};
  CATQ_ASSIGN_OR_RETURN(SiteSqnrReport site, AnalyzeSite(weights, x, options));
  return site.sum;
}

}  // namespace catq
