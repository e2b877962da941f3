// File: core/cat/sqnr_analysis.h
//
// The concentration-alignment decomposition of a quantized linear's SQNR
// (cat-method.md section 1), next to the SQNR measured on activation samples:
//
//   SQNR(W x~)  = 12 N_x^2 C(x) A       C(x) = E||x||^2 / E[r(x)^2]
//   SQNR(W~ x)  = 12 N_w^2 C(W) A       C(W) = ||W||_F^2 / sum_(rows, groups) (|g|/d) r(w_g)^2
//   SQNR(W~ x~) ~ SQNR(W x~) || SQNR(W~ x)           a || b = 1 / (1/a + 1/b)
//   A = tr(Sw Sx) / (tr Sw tr Sx),   A_max = sum s_i^2 / (sum s_i)^2,  s = sv(W Sx^(1/2))
//
// The noise model assumes each element's error is uniform over one step,
// step = r / N. What r and N are depends on the grid, so it is explicit here
// (GridNoiseModel): catq's grids (architecture.md section 4) give
//
//   symmetric,  b bits: r = 2 max|v|,              N = 2^b - 2  (levels -(2^(b-1)-1) .. 2^(b-1)-1)
//   asymmetric, b bits: r = max(v,0) - min(v,0),   N = 2^b - 1  (the grid always holds 0)
//
// while the paper's reading (PaperGridModel) is N(b) = 2^b - 1 with r = 2 max|v|
// or max v - min v. For 4-bit symmetric weights the two differ by 20 log10(15/14)
// = 0.6 dB. Groups: a group of |g| of a row's d elements carries |g|/d of the
// row's noise, hence the weight |g|/d (1 per channel, cat-method.md's formula).
// Every value of a report is in dB (10 log10).
//
// Where the model does not hold: it needs every element's error spread over a
// step. With a few outlier channels (20-50x) and no transform, a 4-bit token
// step is several times the other channels' spread; they round to 0 with error
// -x, and the prediction understates the activation SQNR by several dB (5.8 dB
// on the test layer). After the mixing or block CAT it is within 0.3 dB again.
// That is why a report shows predicted and measured side by side.
//
//   SqnrOptions options;  // W4 per-channel symmetric, A4 per-token asymmetric
//   CATQ_ASSIGN_OR_RETURN(LinearSqnrReport r, AnalyzeLinear(w, x_samples, options));
//   // r.predicted_sqnr_db vs r.measured_sqnr_db
//
// Thread-safety: pure functions; concurrent calls are safe.
#ifndef CATQ_CORE_CAT_SQNR_ANALYSIS_H_
#define CATQ_CORE_CAT_SQNR_ANALYSIS_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/math/eigen_types.h"
#include "core/quant/weight_quant_options.h"

namespace catq {

// The range r(v) of a quantized unit (a token, a row, a group).
enum class RangeKind {
  kSymmetric,       // 2 max|v|
  kMinMax,          // max v - min v
  kMinMaxWithZero,  // max(v, 0) - min(v, 0): the asymmetric grid, which holds 0
};

// How the noise model sees one grid: error variance (r / steps)^2 / 12.
struct GridNoiseModel {
  RangeKind range = RangeKind::kSymmetric;
  double steps = 0.0;  // N: the number of grid steps across r
};

// GridModel: catq's grid of `bits` bits (table above). REQUIRES: 2 <= bits <= 16.
GridNoiseModel GridModel(int bits, bool symmetric);
// PaperGridModel: N = 2^b - 1; r = 2 max|v| or max v - min v.
GridNoiseModel PaperGridModel(int bits, bool symmetric);

// The range of `v` under `kind`; 0 for an empty span.
double RangeOf(absl::Span<const float> v, RangeKind kind);

// Per-token statistics of activation samples, the inputs of C(x).
struct ActivationRangeStats {
  int64_t tokens = 0;
  double mean_sq_norm = 0.0;   // E||x||^2
  double mean_sq_range = 0.0;  // E[r(x)^2]
};

// ComputeActivationRangeStats
//
// From samples `x` [tokens, d], float64 sums. InvalidArgument for no tokens or
// a non-finite element.
absl::StatusOr<ActivationRangeStats> ComputeActivationRangeStats(
    const Eigen::Ref<const RowMatrixXf>& x, RangeKind range);

// ActivationConcentration: E||x||^2 / E[r(x)^2]. InvalidArgument when
// E[r^2] <= 0 or a value is not finite.
absl::StatusOr<double> ActivationConcentration(const ActivationRangeStats& stats);

// WeightConcentration
//
// ||W||_F^2 / sum_(i, g) (|g| / d) r(w_ig)^2 for `w` [out, d], groups of
// `group_size` along the input (kPerChannelGroupSize: one per row).
// InvalidArgument for an empty or all-zero weight, a non-finite element or
// an invalid group size.
absl::StatusOr<double> WeightConcentration(const Eigen::Ref<const RowMatrixXf>& w, int group_size,
                                           RangeKind range);

// Alignment: tr(Sw Sx) / (tr Sw tr Sx) for symmetric d x d `sw`, `sx`.
// InvalidArgument for mismatched shapes or a zero trace.
absl::StatusOr<double> Alignment(const Eigen::Ref<const Eigen::MatrixXd>& sw,
                                 const Eigen::Ref<const Eigen::MatrixXd>& sx);

// MaxAlignment
//
// A_max = sum c_i / (sum sqrt(c_i))^2, c_i the eigenvalues of
// Sx^(1/2) Sw Sx^(1/2) (= s_i^2, s_i the singular values of W Sx^(1/2) when
// Sw = W^T W). Two symmetric eigendecompositions of d x d. Errors as Alignment.
absl::StatusOr<double> MaxAlignment(const Eigen::Ref<const Eigen::MatrixXd>& sw,
                                    const Eigen::Ref<const Eigen::MatrixXd>& sx);

// PredictedSqnr: 12 N^2 C A (linear scale).
double PredictedSqnr(double steps, double concentration, double alignment);
// CombineSqnr: a || b = 1 / (1/a + 1/b).
double CombineSqnr(double a, double b);
// ToDb: 10 log10(v).
double ToDb(double v);

struct SqnrOptions {
  // Weight grid, RTN. Default 4 bits, per output channel, symmetric.
  WeightQuantOptions weights;
  // Activation grid, per token. Default 4 bits, asymmetric.
  int activation_bits = 4;
  bool activation_symmetric = false;
  // false (default): the noise model of the grids used (GridModel); true: the
  // paper's N = 2^b - 1 (PaperGridModel).
  bool paper_noise_model = false;
  // A_max costs two d x d eigendecompositions; off gives NaN.
  bool compute_max_alignment = true;
};

// One linear, or the sum over the linears of a site; every value in dB.
// Measured values are NaN when no samples were given.
struct LinearSqnrReport {
  double activation_concentration_db = 0.0;   // C(x)
  double weight_concentration_db = 0.0;       // C(W)
  double alignment_db = 0.0;                  // A
  double max_alignment_db = 0.0;              // A_max
  double predicted_activation_sqnr_db = 0.0;  // 12 N_x^2 C(x) A
  double predicted_weight_sqnr_db = 0.0;      // 12 N_w^2 C(W) A
  double predicted_sqnr_db = 0.0;             // the two combined with ||
  double measured_activation_sqnr_db = 0.0;   // E||Wx||^2 / E||Wx - W Q(x)||^2
  double measured_weight_sqnr_db = 0.0;       // E||Wx||^2 / E||Wx - Q(W) x||^2
  double measured_sqnr_db = 0.0;              // E||Wx||^2 / E||Wx - Q(W) Q(x)||^2
};

struct SiteSqnrReport {
  // One per weight, in order.
  std::vector<LinearSqnrReport> linears;
  // The site as one linear with the weights stacked: signals and noises
  // summed, C(W) over all rows, A and A_max from Sw = sum W_l^T W_l.
  LinearSqnrReport sum;
};

// AnalyzeSite
//
// Predicted and measured SQNR of every weight [out_l, d] reading a site, on
// activation samples `x` [tokens, d] (Sx = X^T X / tokens and the range
// statistics come from the same samples). Q(W) is QuantizeRtn + Dequantize,
// Q(x) the per-token fake quantizer of core/quant/activation_quant.h.
// InvalidArgument for no weights, mismatched widths, no tokens, non-finite
// values, an all-zero weight, invalid options.
//
// `quantized`, when not empty, holds the dequantized weights as actually
// stored (one per weight, same shapes; e.g. from GPTQ): the measured figures
// use them as Q(W) instead of RTN on options.weights. The prediction is the
// RTN noise model either way.
absl::StatusOr<SiteSqnrReport> AnalyzeSite(absl::Span<const Eigen::Ref<const RowMatrixXf>> weights,
                                           const Eigen::Ref<const RowMatrixXf>& x,
                                           const SqnrOptions& options = {},
                                           absl::Span<const RowMatrixXf> quantized = {});

// AnalyzeLinear: AnalyzeSite of one weight.
absl::StatusOr<LinearSqnrReport> AnalyzeLinear(const Eigen::Ref<const RowMatrixXf>& w,
                                               const Eigen::Ref<const RowMatrixXf>& x,
                                               const SqnrOptions& options = {});

// PredictLinearSqnr
//
// The prediction alone, from statistics gathered elsewhere: `sx` = E[x x^T]
// (d x d) and `stats` computed with the activation grid's range kind
// (GridModel(...).range, or the paper's). Measured fields are NaN.
absl::StatusOr<LinearSqnrReport> PredictLinearSqnr(const Eigen::Ref<const RowMatrixXf>& w,
                                                   const Eigen::Ref<const Eigen::MatrixXd>& sx,
                                                   const ActivationRangeStats& stats,
                                                   const SqnrOptions& options = {});

}  // namespace catq

#endif  // CATQ_CORE_CAT_SQNR_ANALYSIS_H_
