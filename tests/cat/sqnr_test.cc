// Tests of the SQNR decomposition (core/cat/sqnr_analysis.h): the pieces
// against hand-computed values, A_max against an SVD, and the prediction
// against the SQNR measured with catq's real quantizers on synthetic layers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/cat/block_cat.h"
#include "core/cat/site_transform.h"
#include "core/cat/sqnr_analysis.h"
#include "core/cat/weight_moments.h"
#include "core/math/eigen_types.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

RowMatrixXf GaussianWeight(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  RowMatrixXf w(rows, cols);
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = normal(rng);
  return w;
}

// Independent Gaussian channels with scales between 0.5 and 2.
RowMatrixXf GaussianActivations(int64_t tokens, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  RowMatrixXf x(tokens, d);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < d; ++j) x(t, j) = (0.5f + 1.5f * j / d) * normal(rng);
  }
  return x;
}

// Laplace channels, and a few outlier channels 20 to 50 times larger.
RowMatrixXf LaplaceOutlierActivations(int64_t tokens, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<float> exponential(1.0f);
  std::bernoulli_distribution sign(0.5);
  RowMatrixXf x(tokens, d);
  const float outlier_scale[] = {20.0f, 30.0f, 40.0f, 50.0f};
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < d; ++j) {
      const float laplace = sign(rng) ? exponential(rng) : -exponential(rng);
      const float scale = (j % 64 == 7) ? outlier_scale[(j / 64) % 4] : 1.0f;
      x(t, j) = scale * laplace;
    }
  }
  return x;
}

Eigen::MatrixXd SecondMoment(const RowMatrixXf& x) {
  const RowMatrixXd xd = x.cast<double>();
  return xd.transpose() * xd / static_cast<double>(x.rows());
}

TEST(GridModelTest, StepsAndRangesOfTheGrids) {
  const GridNoiseModel sym = GridModel(4, true);
  EXPECT_EQ(sym.range, RangeKind::kSymmetric);
  EXPECT_EQ(sym.steps, 14.0);  // levels -7..7 at step amax / 7 span 2 amax
  const GridNoiseModel asym = GridModel(4, false);
  EXPECT_EQ(asym.range, RangeKind::kMinMaxWithZero);
  EXPECT_EQ(asym.steps, 15.0);
  EXPECT_EQ(GridModel(8, true).steps, 254.0);
  const GridNoiseModel paper = PaperGridModel(4, false);
  EXPECT_EQ(paper.range, RangeKind::kMinMax);
  EXPECT_EQ(paper.steps, 15.0);
  EXPECT_EQ(PaperGridModel(4, true).steps, 15.0);
}

TEST(RangeTest, EachKind) {
  const std::vector<float> v = {1.0f, 3.0f, 2.0f};
  EXPECT_EQ(RangeOf(v, RangeKind::kSymmetric), 6.0);
  EXPECT_EQ(RangeOf(v, RangeKind::kMinMax), 2.0);
  EXPECT_EQ(RangeOf(v, RangeKind::kMinMaxWithZero), 3.0);
  const std::vector<float> u = {-4.0f, 1.0f};
  EXPECT_EQ(RangeOf(u, RangeKind::kSymmetric), 8.0);
  EXPECT_EQ(RangeOf(u, RangeKind::kMinMax), 5.0);
  EXPECT_EQ(RangeOf(u, RangeKind::kMinMaxWithZero), 5.0);
  EXPECT_EQ(RangeOf({}, RangeKind::kMinMax), 0.0);
}

TEST(ConcentrationTest, ActivationFromSamples) {
  RowMatrixXf x(2, 3);
  x << 1, 2, 2,  // ||x||^2 = 9, r = max(x, 0) - min(x, 0) = 2
      -1, 0, 3;  // ||x||^2 = 10, r = 4
  absl::StatusOr<ActivationRangeStats> stats =
      ComputeActivationRangeStats(x, RangeKind::kMinMaxWithZero);
  ASSERT_OK(stats);
  EXPECT_EQ(stats->tokens, 2);
  EXPECT_DOUBLE_EQ(stats->mean_sq_norm, 9.5);
  EXPECT_DOUBLE_EQ(stats->mean_sq_range, 10.0);
  absl::StatusOr<double> c = ActivationConcentration(*stats);
  ASSERT_OK(c);
  EXPECT_DOUBLE_EQ(*c, 0.95);
  EXPECT_STATUS(ActivationConcentration({1, 1.0, 0.0}), absl::StatusCode::kInvalidArgument,
                "E[r^2] > 0");
  x(1, 1) = NAN;
  EXPECT_STATUS(ComputeActivationRangeStats(x, RangeKind::kSymmetric),
                absl::StatusCode::kInvalidArgument, "activations[1, 1]");
}

TEST(ConcentrationTest, WeightPerChannelAndGroupsWithTail) {
  RowMatrixXf w(2, 3);
  w << 1, -2, 0,  // ||.||^2 = 5, 2 max|w| = 4
      3, 0, 0;    // 9, 6
  absl::StatusOr<double> c = WeightConcentration(w, kPerChannelGroupSize, RangeKind::kSymmetric);
  ASSERT_OK(c);
  EXPECT_DOUBLE_EQ(*c, 14.0 / (16.0 + 36.0));
  // Groups of 2: [0, 2) and the tail [2, 3), weighted 2/3 and 1/3.
  // Row 0: ranges 4 and 0; row 1: 6 and 0.
  absl::StatusOr<double> g = WeightConcentration(w, 2, RangeKind::kSymmetric);
  ASSERT_OK(g);
  EXPECT_DOUBLE_EQ(*g, 14.0 / (2.0 / 3 * 16 + 2.0 / 3 * 36));
  EXPECT_STATUS(WeightConcentration(RowMatrixXf::Zero(2, 2), -1, RangeKind::kSymmetric),
                absl::StatusCode::kInvalidArgument, "all zero");
  EXPECT_STATUS(WeightConcentration(w, 0, RangeKind::kSymmetric),
                absl::StatusCode::kInvalidArgument, "group_size");
}

TEST(AlignmentTest, KnownValuesAndRotationInvariance) {
  const int64_t d = 8;
  const Eigen::MatrixXd id = Eigen::MatrixXd::Identity(d, d);
  EXPECT_DOUBLE_EQ(*Alignment(id, id), 1.0 / d);
  const Eigen::VectorXd v = Eigen::VectorXd::LinSpaced(d, 1.0, 2.0);
  EXPECT_NEAR(*Alignment(v * v.transpose(), v * v.transpose()), 1.0, 1e-15);

  const Eigen::MatrixXd sx = SecondMoment(LaplaceOutlierActivations(64, d, 1));
  const RowMatrixXd w = GaussianWeight(5, d, 2).cast<double>();
  const Eigen::MatrixXd sw = w.transpose() * w;
  Eigen::MatrixXd g(d, d);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = normal(rng);
  const Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ();
  const double a = *Alignment(sw, sx);
  EXPECT_NEAR(*Alignment(q * sw * q.transpose(), q * sx * q.transpose()), a, 1e-12 * a);
  EXPECT_STATUS(Alignment(sw, Eigen::MatrixXd::Zero(d, d)), absl::StatusCode::kInvalidArgument,
                "tr Sx = 0");
  EXPECT_STATUS(Alignment(sw, Eigen::MatrixXd::Identity(3, 3)), absl::StatusCode::kInvalidArgument,
                "Sw is 8x8 and Sx is 3x3");
}

// sum s^2 / (sum s)^2 with s the singular values of W Sx^(1/2), by SVD.
double MaxAlignmentBySvd(const RowMatrixXf& w, const Eigen::MatrixXd& sx) {
  const Eigen::MatrixXd root = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(sx).operatorSqrt();
  const Eigen::VectorXd s =
      Eigen::JacobiSVD<Eigen::MatrixXd>(w.cast<double>() * root).singularValues();
  return s.squaredNorm() / (s.sum() * s.sum());
}

TEST(AlignmentTest, MaxAlignmentMatchesSingularValues) {
  const int64_t d = 32;
  const RowMatrixXf x = LaplaceOutlierActivations(512, d, 4);
  const Eigen::MatrixXd sx = SecondMoment(x);
  // m < d (Gram path) and m > d (through Sx^(1/2)).
  for (const int64_t m : {12, 48}) {
    const RowMatrixXf w = GaussianWeight(m, d, 5 + m);
    const double expected = MaxAlignmentBySvd(w, sx);
    const RowMatrixXd wd = w.cast<double>();
    absl::StatusOr<double> a_max = MaxAlignment(wd.transpose() * wd, sx);
    ASSERT_OK(a_max);
    EXPECT_NEAR(*a_max, expected, 1e-10 * expected) << "m = " << m;
    absl::StatusOr<LinearSqnrReport> report = AnalyzeLinear(w, x);
    ASSERT_OK(report);
    EXPECT_NEAR(report->max_alignment_db, ToDb(expected), 1e-8) << "m = " << m;
    EXPECT_GE(report->max_alignment_db, report->alignment_db);
    SqnrOptions no_max;
    no_max.compute_max_alignment = false;
    report = AnalyzeLinear(w, x, no_max);
    ASSERT_OK(report);
    EXPECT_TRUE(std::isnan(report->max_alignment_db));
  }
}

TEST(PredictionTest, CombineAndDb) {
  EXPECT_DOUBLE_EQ(CombineSqnr(100.0, 100.0), 50.0);
  EXPECT_DOUBLE_EQ(CombineSqnr(3.0, 6.0), 2.0);
  EXPECT_DOUBLE_EQ(ToDb(1000.0), 30.0);
  EXPECT_DOUBLE_EQ(PredictedSqnr(15.0, 0.5, 0.1), 12.0 * 225 * 0.05);
}

// The acceptance check of cat-method.md section 1: the model's prediction
// next to the SQNR measured with the real quantizers (RTN per-channel
// symmetric W4, per-token asymmetric A4) on d = m = 256, 4096 tokens.
struct Case {
  const char* name;
  RowMatrixXf x;
};

LinearSqnrReport AnalyzeOrDie(const RowMatrixXf& w, const RowMatrixXf& x) {
  absl::StatusOr<LinearSqnrReport> r = AnalyzeLinear(w, x);
  EXPECT_OK(r);
  return r.ok() ? *r : LinearSqnrReport{};
}

// The report side by side, for failure messages.
std::string Describe(const LinearSqnrReport& r) {
  char text[320];
  std::snprintf(text, sizeof(text),
                "C(x) %.2f dB, C(W) %.2f dB, A %.2f dB, A_max %.2f dB; predicted x %.2f w %.2f "
                "both %.2f; measured x %.2f w %.2f both %.2f dB",
                r.activation_concentration_db, r.weight_concentration_db, r.alignment_db,
                r.max_alignment_db, r.predicted_activation_sqnr_db, r.predicted_weight_sqnr_db,
                r.predicted_sqnr_db, r.measured_activation_sqnr_db, r.measured_weight_sqnr_db,
                r.measured_sqnr_db);
  return text;
}

// (x H^T, W H^T): the layer after the Hadamard mixing, W' x' = W x.
void Mix(RowMatrixXf& w, RowMatrixXf& x) {
  absl::StatusOr<SiteTransform> h = MakeHadamardTransform(w.cols());
  ASSERT_OK(h);
  absl::StatusOr<RowMatrixXf> w_t = h->TransformWeight(w);
  ASSERT_OK(w_t);
  w = *w_t;
  ASSERT_OK(h->ApplyToActivations(x));
}

// The layer after block CAT (k = 32) with the mixing on top.
void BlockCat(RowMatrixXf& w, RowMatrixXf& x) {
  const RowMatrixXd xd = x.cast<double>();
  const Eigen::MatrixXd sx = xd.transpose() * xd / static_cast<double>(x.rows());
  const BlockPartition partition = *BlockPartition::Create(x.cols(), 32);
  absl::StatusOr<std::vector<Eigen::MatrixXd>> sw = WeightSecondMomentBlocks({w}, 32);
  ASSERT_OK(sw);
  absl::StatusOr<CatTransform> cat =
      MakeCatTransform(*ExtractDiagonalBlocks(sx, partition), *sw, {}, /*hadamard=*/true);
  ASSERT_OK(cat);
  absl::StatusOr<RowMatrixXf> w_t = cat->transform.TransformWeight(w);
  ASSERT_OK(w_t);
  w = *w_t;
  ASSERT_OK(cat->transform.ApplyToActivations(x));
}

TEST(PredictionTest, PredictsMeasuredW4A4WhereTheNoiseIsUniform) {
  // Gaussian activations, and the outlier layer once mixed (as Hadamard and
  // CAT run it): every element's error is spread over a step, as the model
  // assumes. Within 0.5 dB for each side and for both.
  const int64_t d = 256;
  const int64_t tokens = 4096;
  const RowMatrixXf w = GaussianWeight(256, d, 10);
  for (const int variant : {0, 1, 2, 3}) {
    RowMatrixXf wv = w;
    RowMatrixXf x = variant <= 1 ? GaussianActivations(tokens, d, 11)
                                 : LaplaceOutlierActivations(tokens, d, 12);
    const char* name[] = {"gaussian", "gaussian, block CAT", "laplace+outliers, Hadamard",
                          "laplace+outliers, block CAT"};
    if (variant == 2) Mix(wv, x);
    if (variant == 1 || variant == 3) BlockCat(wv, x);
    const LinearSqnrReport r = AnalyzeOrDie(wv, x);
    SCOPED_TRACE(std::string(name[variant]) + ": " + Describe(r));
    EXPECT_NEAR(r.predicted_sqnr_db, r.measured_sqnr_db, 0.5);
    EXPECT_NEAR(r.predicted_weight_sqnr_db, r.measured_weight_sqnr_db, 0.5);
    EXPECT_NEAR(r.predicted_activation_sqnr_db, r.measured_activation_sqnr_db, 0.5);
  }
}

TEST(PredictionTest, UnderpredictsRawOutlierActivations) {
  // Known limit of the model: with outlier channels 20-50x larger and no
  // transform, a 4-bit token step is several times the bulk channels' spread,
  // so they round to 0 with error -x (variance E[x^2], not step^2/12). The
  // model then overstates the activation noise by several dB: it stays a
  // lower bound there, while the weight side (Gaussian rows) still holds.
  // (Here: activations 9.3 dB predicted, 15.1 measured; W4A4 8.8 vs 13.2 dB.
  // After the Hadamard mixing: 16.7 vs 16.4 dB, after block CAT 25.7 vs 25.6.)
  const int64_t d = 256;
  const RowMatrixXf w = GaussianWeight(256, d, 10);
  const RowMatrixXf x = LaplaceOutlierActivations(4096, d, 12);
  const LinearSqnrReport r = AnalyzeOrDie(w, x);
  SCOPED_TRACE(Describe(r));
  EXPECT_NEAR(r.predicted_weight_sqnr_db, r.measured_weight_sqnr_db, 0.5);
  EXPECT_LT(r.predicted_activation_sqnr_db, r.measured_activation_sqnr_db - 3.0);
  EXPECT_LT(r.predicted_sqnr_db, r.measured_sqnr_db - 3.0);
}

TEST(PredictionTest, PaperModelCountsOneMoreStepForSymmetricGrids) {
  const RowMatrixXf w = GaussianWeight(16, 32, 20);
  const RowMatrixXf x = GaussianActivations(64, 32, 21);
  SqnrOptions grid;
  SqnrOptions paper;
  paper.paper_noise_model = true;
  absl::StatusOr<LinearSqnrReport> a = AnalyzeLinear(w, x, grid);
  absl::StatusOr<LinearSqnrReport> b = AnalyzeLinear(w, x, paper);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_NEAR(b->predicted_weight_sqnr_db - a->predicted_weight_sqnr_db,
              20 * std::log10(15.0 / 14.0), 1e-9);
  EXPECT_DOUBLE_EQ(a->weight_concentration_db, b->weight_concentration_db);
  EXPECT_DOUBLE_EQ(a->measured_sqnr_db, b->measured_sqnr_db);
}

TEST(SiteTest, SumOfLinears) {
  const int64_t d = 64;
  const RowMatrixXf x = LaplaceOutlierActivations(512, d, 30);
  const RowMatrixXf q = GaussianWeight(64, d, 31);
  const RowMatrixXf v = GaussianWeight(16, d, 32) * 0.2f;
  absl::StatusOr<SiteSqnrReport> site = AnalyzeSite({q, v}, x);
  ASSERT_OK(site);
  ASSERT_EQ(site->linears.size(), 2u);
  absl::StatusOr<LinearSqnrReport> q_alone = AnalyzeLinear(q, x);
  ASSERT_OK(q_alone);
  EXPECT_DOUBLE_EQ(site->linears[0].measured_sqnr_db, q_alone->measured_sqnr_db);
  EXPECT_DOUBLE_EQ(site->linears[0].predicted_sqnr_db, q_alone->predicted_sqnr_db);
  // A ratio of sums lies between the ratios.
  const auto between = [](double v, double a, double b) {
    return v >= std::min(a, b) - 1e-12 && v <= std::max(a, b) + 1e-12;
  };
  const LinearSqnrReport& s = site->sum;
  EXPECT_TRUE(between(s.measured_sqnr_db, site->linears[0].measured_sqnr_db,
                      site->linears[1].measured_sqnr_db));
  EXPECT_TRUE(
      between(s.alignment_db, site->linears[0].alignment_db, site->linears[1].alignment_db));
  EXPECT_TRUE(between(s.weight_concentration_db, site->linears[0].weight_concentration_db,
                      site->linears[1].weight_concentration_db));
  // The stacked weight [q; v] analysed as one linear is the sum.
  RowMatrixXf stacked(80, d);
  stacked << q, v;
  absl::StatusOr<LinearSqnrReport> one = AnalyzeLinear(stacked, x);
  ASSERT_OK(one);
  EXPECT_NEAR(s.measured_sqnr_db, one->measured_sqnr_db, 1e-9);
  EXPECT_NEAR(s.predicted_sqnr_db, one->predicted_sqnr_db, 1e-9);
  EXPECT_NEAR(s.max_alignment_db, one->max_alignment_db, 1e-8);
  EXPECT_DOUBLE_EQ(s.activation_concentration_db, one->activation_concentration_db);
}

TEST(SiteTest, PredictionFromGatheredStatistics) {
  const RowMatrixXf x = GaussianActivations(300, 24, 40);
  const RowMatrixXf w = GaussianWeight(10, 24, 41);
  absl::StatusOr<LinearSqnrReport> full = AnalyzeLinear(w, x);
  ASSERT_OK(full);
  absl::StatusOr<ActivationRangeStats> stats =
      ComputeActivationRangeStats(x, GridModel(4, false).range);
  ASSERT_OK(stats);
  absl::StatusOr<LinearSqnrReport> predicted = PredictLinearSqnr(w, SecondMoment(x), *stats);
  ASSERT_OK(predicted);
  EXPECT_NEAR(predicted->predicted_sqnr_db, full->predicted_sqnr_db, 1e-9);
  EXPECT_NEAR(predicted->alignment_db, full->alignment_db, 1e-9);
  EXPECT_TRUE(std::isnan(predicted->measured_sqnr_db));
}

TEST(SiteTest, RejectsBadInput) {
  const RowMatrixXf x = GaussianActivations(8, 4, 50);
  const RowMatrixXf w = GaussianWeight(3, 4, 51);
  EXPECT_STATUS(AnalyzeSite({}, x), absl::StatusCode::kInvalidArgument, "no weights");
  EXPECT_STATUS(AnalyzeSite({w, GaussianWeight(3, 5, 52)}, x), absl::StatusCode::kInvalidArgument,
                "weight 1 is 3x5");
  EXPECT_STATUS(AnalyzeLinear(w, RowMatrixXf(0, 4)), absl::StatusCode::kInvalidArgument, "empty");
  EXPECT_STATUS(AnalyzeLinear(RowMatrixXf::Zero(3, 4), x), absl::StatusCode::kInvalidArgument,
                "all zero");
  SqnrOptions options;
  options.activation_bits = 1;
  EXPECT_STATUS(AnalyzeLinear(w, x, options), absl::StatusCode::kInvalidArgument,
                "activation_bits");
  options = {};
  options.weights.bits = 9;
  EXPECT_STATUS(AnalyzeLinear(w, x, options), absl::StatusCode::kInvalidArgument, "weights: bits");
  EXPECT_STATUS(PredictLinearSqnr(w, Eigen::MatrixXd::Identity(3, 3), {8, 1.0, 1.0}),
                absl::StatusCode::kInvalidArgument, "Sx is 3x3");
}

}  // namespace
}  // namespace catq
