// Tests of SiteTransform (core/cat/site_transform.h): function preservation
// W T^-1 (T x) = W x for every method and block layout, alignment with
// mixing, the float paths, folding, the stored tensors and the errors.
#include "core/cat/site_transform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/LU>
#include <Eigen/SVD>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/cat/block_cat.h"
#include "core/cat/mixing_matrix.h"
#include "core/cat/recipe.h"
#include "core/cat/sqnr_analysis.h"
#include "core/cat/weight_moments.h"
#include "core/math/eigen_types.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

using ::testing::ElementsAre;

// A synthetic layer: correlated activations with a few outlier channels,
// Gaussian weights, and separate calibration tokens for Sx.
struct Layer {
  RowMatrixXf w;      // [rows, d]
  RowMatrixXf x;      // [tokens, d], function-preservation probes
  RowMatrixXd calib;  // [calibration tokens, d]
};

RowMatrixXf Activations(int64_t tokens, int64_t d, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  const int64_t factors = 4;
  RowMatrixXf f(factors, d);
  for (Eigen::Index i = 0; i < f.size(); ++i) f.data()[i] = normal(rng);
  RowMatrixXf x(tokens, d);
  for (int64_t t = 0; t < tokens; ++t) {
    Eigen::VectorXf z(factors);
    for (int64_t i = 0; i < factors; ++i) z(i) = normal(rng);
    for (int64_t j = 0; j < d; ++j) {
      const float outlier = (j % 37 == 3) ? 20.0f : 1.0f;
      x(t, j) = outlier * (0.5f * f.col(j).dot(z) + normal(rng));
    }
  }
  return x;
}

Layer MakeLayer(int64_t d, int64_t rows, int64_t tokens, int64_t calibration, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  Layer layer;
  layer.w.resize(rows, d);
  for (Eigen::Index i = 0; i < layer.w.size(); ++i) layer.w.data()[i] = normal(rng);
  layer.x = Activations(tokens, d, rng);
  layer.calib = Activations(calibration, d, rng).cast<double>();
  return layer;
}

// The diagonal blocks of Sx = X^T X / tokens over the calibration tokens
// (only the blocks: d = 4096 stays cheap).
std::vector<Eigen::MatrixXd> SxBlocks(const Layer& layer, int64_t k) {
  const BlockPartition partition = *BlockPartition::Create(layer.calib.cols(), k);
  std::vector<Eigen::MatrixXd> blocks;
  for (int64_t b = 0; b < partition.num_blocks(); ++b) {
    const auto cols = layer.calib.middleCols(partition.begin(b), partition.size(b));
    blocks.push_back(cols.transpose() * cols / static_cast<double>(layer.calib.rows()));
  }
  return blocks;
}

std::vector<Eigen::MatrixXd> SwBlocks(const Layer& layer, int64_t k) {
  absl::StatusOr<std::vector<Eigen::MatrixXd>> blocks = WeightSecondMomentBlocks({layer.w}, k);
  EXPECT_OK(blocks);
  return *blocks;
}

// max |W T^-1 (T x) - W x| / max |W x| over the probe tokens, in float64.
double PreservationError(const SiteTransform& transform, const Layer& layer) {
  const RowMatrixXd w = layer.w.cast<double>();
  RowMatrixXd x = layer.x.cast<double>();
  const RowMatrixXd y = x * w.transpose();
  EXPECT_OK(transform.ApplyToActivations(x));
  absl::StatusOr<RowMatrixXd> w_t = transform.TransformWeight(w);
  EXPECT_OK(w_t);
  if (!w_t.ok()) return INFINITY;
  const RowMatrixXd y_t = x * w_t->transpose();
  return (y_t - y).cwiseAbs().maxCoeff() / y.cwiseAbs().maxCoeff();
}

constexpr double kPreservation = 1e-10;

TEST(SiteTransformTest, PreservesFunctionForEveryMethod) {
  for (const int64_t d : {64, 172, 256}) {
    const Layer layer = MakeLayer(d, 12, 16, 2 * d, 100 + d);
    SCOPED_TRACE("d = " + std::to_string(d));

    absl::StatusOr<SiteTransform> identity = SiteTransform::Identity(d);
    ASSERT_OK(identity);
    EXPECT_LE(PreservationError(*identity, layer), kPreservation);

    const Eigen::VectorXd act_max =
        layer.x.cwiseAbs().colwise().maxCoeff().transpose().cast<double>();
    absl::StatusOr<Eigen::VectorXd> w_max = WeightColumnAbsMax({layer.w});
    ASSERT_OK(w_max);
    absl::StatusOr<SiteTransform> smooth = MakeSmoothQuantTransform(act_max, *w_max, 0.5);
    ASSERT_OK(smooth);
    EXPECT_LE(PreservationError(*smooth, layer), kPreservation) << "smoothquant";

    absl::StatusOr<SiteTransform> hadamard = MakeHadamardTransform(d);
    ASSERT_OK(hadamard);
    EXPECT_LE(PreservationError(*hadamard, layer), kPreservation) << "hadamard";

    // 24 divides none of 64, 172, 256; 8 and 32 do not divide 172.
    for (const int64_t k : {int64_t{1}, int64_t{8}, int64_t{24}, int64_t{32}, d}) {
      for (const bool mixing : {false, true}) {
        absl::StatusOr<CatTransform> cat =
            MakeCatTransform(SxBlocks(layer, k), SwBlocks(layer, k), {}, mixing);
        ASSERT_OK(cat);
        EXPECT_EQ(cat->transform.block_size(), k);
        EXPECT_EQ(cat->transform.has_mixing(), mixing);
        EXPECT_LE(PreservationError(cat->transform, layer), kPreservation)
            << "cat k = " << k << (mixing ? " with mixing" : "");
      }
    }
  }
}

TEST(SiteTransformTest, PreservesFunctionAtLlamaWidth) {
  const int64_t d = 4096;
  const Layer layer = MakeLayer(d, 4, 4, 96, 7);
  absl::StatusOr<SiteTransform> hadamard = MakeHadamardTransform(d);
  ASSERT_OK(hadamard);
  EXPECT_LE(PreservationError(*hadamard, layer), kPreservation);
  // 96 calibration tokens for blocks of 128: every Sx block is singular, so
  // this runs on damping.
  absl::StatusOr<CatTransform> cat =
      MakeCatTransform(SxBlocks(layer, 128), SwBlocks(layer, 128), {}, /*hadamard=*/true);
  ASSERT_OK(cat);
  EXPECT_EQ(cat->report.num_blocks, 32);
  EXPECT_EQ(cat->report.damped_blocks, 32);
  EXPECT_LE(PreservationError(cat->transform, layer), kPreservation);
}

TEST(SiteTransformTest, ApplyAndSolveMatchDenseT) {
  const int64_t d = 172;
  const Layer layer = MakeLayer(d, 8, 8, 2 * d, 11);
  absl::StatusOr<CatTransform> cat =
      MakeCatTransform(SxBlocks(layer, 32), SwBlocks(layer, 32), {}, /*hadamard=*/true);
  ASSERT_OK(cat);
  const Eigen::MatrixXd t = cat->transform.Dense();
  RowMatrixXd x = layer.x.cast<double>();
  const RowMatrixXd expected_x = x * t.transpose();
  ASSERT_OK(cat->transform.ApplyToActivations(x));
  EXPECT_LT((x - expected_x).cwiseAbs().maxCoeff(), 1e-12 * expected_x.cwiseAbs().maxCoeff());

  const RowMatrixXd w = layer.w.cast<double>();
  const RowMatrixXd expected_w = w * t.inverse();
  absl::StatusOr<RowMatrixXd> w_t = cat->transform.TransformWeight(w);
  ASSERT_OK(w_t);
  EXPECT_LT((*w_t - expected_w).cwiseAbs().maxCoeff(), 1e-10 * expected_w.cwiseAbs().maxCoeff());

  const Eigen::VectorXd sigma = Eigen::JacobiSVD<Eigen::MatrixXd>(t).singularValues();
  EXPECT_NEAR(cat->transform.ConditionNumber(), sigma(0) / sigma(d - 1),
              1e-8 * sigma(0) / sigma(d - 1));
}

TEST(SiteTransformTest, FullCatReachesMaxAlignmentWithAndWithoutMixing) {
  // A of the transformed layer, computed from the transformed data, equals
  // A_max of the original (cat-method.md 2.1); the mixing keeps it.
  const int64_t d = 64;
  const Layer layer = MakeLayer(d, 64, 1024, 1024, 13);
  const RowMatrixXd x = layer.x.cast<double>();
  const Eigen::MatrixXd sx = x.transpose() * x / static_cast<double>(x.rows());
  const RowMatrixXd w = layer.w.cast<double>();
  const Eigen::MatrixXd sw = w.transpose() * w;
  absl::StatusOr<double> a_max = MaxAlignment(sw, sx);
  ASSERT_OK(a_max);
  absl::StatusOr<double> a_before = Alignment(sw, sx);
  ASSERT_OK(a_before);
  EXPECT_GT(*a_max, 1.5 * *a_before);
  BlockCatOptions undamped;
  undamped.damping = 0.0;
  for (const bool mixing : {false, true}) {
    absl::StatusOr<CatTransform> cat = MakeCatTransform({sx}, {sw}, undamped, mixing);
    ASSERT_OK(cat);
    RowMatrixXd x_t = x;
    ASSERT_OK(cat->transform.ApplyToActivations(x_t));
    absl::StatusOr<RowMatrixXd> w_t = cat->transform.TransformWeight(w);
    ASSERT_OK(w_t);
    const Eigen::MatrixXd sx_t = x_t.transpose() * x_t / static_cast<double>(x.rows());
    const Eigen::MatrixXd sw_t = w_t->transpose() * *w_t;
    absl::StatusOr<double> a = Alignment(sw_t, sx_t);
    ASSERT_OK(a);
    EXPECT_LT(std::abs(*a - *a_max), 1e-8 * *a_max) << (mixing ? "with mixing" : "no mixing");
  }
}

TEST(SiteTransformTest, FloatPathsFollowDouble) {
  const int64_t d = 172;
  const Layer layer = MakeLayer(d, 300, 600, 2 * d, 17);  // > 256 rows, > 512 tokens
  absl::StatusOr<CatTransform> cat =
      MakeCatTransform(SxBlocks(layer, 32), SwBlocks(layer, 32), {}, /*hadamard=*/true);
  ASSERT_OK(cat);
  RowMatrixXd x_d = layer.x.cast<double>();
  RowMatrixXf x_f = layer.x;
  ASSERT_OK(cat->transform.ApplyToActivations(x_d));
  ASSERT_OK(cat->transform.ApplyToActivations(x_f));
  EXPECT_LT((x_f.cast<double>() - x_d).cwiseAbs().maxCoeff(), 1e-5 * x_d.cwiseAbs().maxCoeff());

  absl::StatusOr<RowMatrixXd> w_d = cat->transform.TransformWeight(layer.w.cast<double>());
  absl::StatusOr<RowMatrixXf> w_f = cat->transform.TransformWeight(layer.w);
  ASSERT_OK(w_d);
  ASSERT_OK(w_f);
  // float64 inside, one rounding to float at the end.
  EXPECT_LT((w_f->cast<double>() - *w_d).cwiseAbs().maxCoeff(), 1e-7 * w_d->cwiseAbs().maxCoeff());
  RowMatrixXf in_place = layer.w;
  ASSERT_OK(cat->transform.TransformWeightInPlace(in_place));
  EXPECT_TRUE(in_place == *w_f);
}

TEST(SiteTransformTest, BlocksAreRoundedToFloatOnce) {
  const Layer layer = MakeLayer(64, 8, 8, 128, 19);
  absl::StatusOr<CatTransform> cat =
      MakeCatTransform(SxBlocks(layer, 16), SwBlocks(layer, 16), {}, false);
  ASSERT_OK(cat);
  for (const Eigen::MatrixXd& b : cat->transform.blocks()) {
    EXPECT_TRUE(b.cast<float>().cast<double>() == b);
  }
  SiteTransformOptions exact;
  exact.round_blocks_to_f32 = false;
  absl::StatusOr<BlockCatResult> solved = SolveBlockCat(SxBlocks(layer, 16), SwBlocks(layer, 16));
  ASSERT_OK(solved);
  absl::StatusOr<SiteTransform> unrounded =
      SiteTransform::Create(64, solved->blocks, std::nullopt, exact);
  ASSERT_OK(unrounded);
  EXPECT_TRUE(unrounded->blocks()[0] == solved->blocks[0]);
  EXPECT_FALSE(cat->transform.blocks()[0] == solved->blocks[0]);
}

TEST(SiteTransformTest, DiagonalFoldsIntoGainAndRows) {
  const int64_t d = 64;
  const Layer layer = MakeLayer(d, 8, 8, 128, 23);
  absl::StatusOr<CatTransform> cat =
      MakeCatTransform(SxBlocks(layer, 1), SwBlocks(layer, 1), {}, /*hadamard=*/false);
  ASSERT_OK(cat);
  ASSERT_TRUE(cat->transform.is_diagonal());
  absl::StatusOr<Eigen::VectorXd> t = cat->transform.DiagonalOfT();
  ASSERT_OK(t);

  // Norm output g . n fed through T equals the folded gain times n.
  std::mt19937_64 rng(24);
  std::normal_distribution<double> normal;
  Eigen::VectorXd g(d), n(d);
  for (int64_t j = 0; j < d; ++j) {
    g(j) = 1.0 + 0.1 * normal(rng);
    n(j) = normal(rng);
  }
  RowMatrixXd x = (g.array() * n.array()).matrix().transpose();
  ASSERT_OK(cat->transform.ApplyToActivations(x));
  Eigen::VectorXd folded = g;
  ASSERT_OK(cat->transform.FoldIntoVector(folded));
  EXPECT_LT((x.row(0).transpose() - (folded.array() * n.array()).matrix()).norm(),
            1e-14 * x.norm());
  Eigen::VectorXf folded_f = g.cast<float>();
  ASSERT_OK(cat->transform.FoldIntoVector(folded_f));
  EXPECT_LT((folded_f.cast<double>() - folded).cwiseAbs().maxCoeff(), 1e-6 * folded.norm());

  // Folding into the producing linear: (T V) h == T (V h).
  RowMatrixXf v = layer.w.transpose();  // [d, 8]
  const Eigen::VectorXd h = Eigen::VectorXd::Ones(8);
  const Eigen::VectorXd expected = t->asDiagonal() * (v.cast<double>() * h);
  ASSERT_OK(cat->transform.FoldIntoRows(v));
  EXPECT_LT((v.cast<double>() * h - expected).norm(), 1e-6 * expected.norm());

  absl::StatusOr<SiteTransform> hadamard = MakeHadamardTransform(d);
  ASSERT_OK(hadamard);
  EXPECT_STATUS(hadamard->FoldIntoVector(folded), absl::StatusCode::kFailedPrecondition, "mixing");
  absl::StatusOr<CatTransform> blocks =
      MakeCatTransform(SxBlocks(layer, 8), SwBlocks(layer, 8), {}, false);
  ASSERT_OK(blocks);
  EXPECT_STATUS(blocks->transform.DiagonalOfT(), absl::StatusCode::kFailedPrecondition,
                "8x8 blocks");
  Eigen::VectorXd short_gain(3);
  EXPECT_STATUS(cat->transform.FoldIntoVector(short_gain), absl::StatusCode::kInvalidArgument,
                "3 entries");
  absl::StatusOr<SiteTransform> identity = SiteTransform::Identity(d);
  ASSERT_OK(identity);
  EXPECT_TRUE(identity->DiagonalOfT()->isOnes());
}

// Rebuilds x' = T x from the stored tensors alone (architecture.md 4) and
// compares with ApplyToActivations.
TEST(SiteTransformTest, ExportedTensorsReproduceTheTransform) {
  const int64_t d = 172;
  const Layer layer = MakeLayer(d, 8, 4, 2 * d, 29);
  absl::StatusOr<CatTransform> cat =
      MakeCatTransform(SxBlocks(layer, 32), SwBlocks(layer, 32), {}, /*hadamard=*/true);
  ASSERT_OK(cat);
  const MixingMatrix& mixing = *cat->transform.mixing();
  const int64_t q = mixing.q();
  ASSERT_GT(q, 1);  // 172 = 4 * 43 has an odd part
  const SiteTransformTensors stored = cat->transform.ExportTensors();
  ASSERT_TRUE(stored.blocks.has_value());
  ASSERT_TRUE(stored.blocks_tail.has_value());
  ASSERT_TRUE(stored.rot_q.has_value());
  EXPECT_THAT(stored.blocks->shape, ElementsAre(5, 32, 32));
  EXPECT_THAT(stored.blocks_tail->shape, ElementsAre(12, 12));
  EXPECT_THAT(stored.rot_q->shape, ElementsAre(q, q));
  ASSERT_EQ(stored.blocks->values.size(), 5u * 32 * 32);
  ASSERT_EQ(stored.blocks_tail->values.size(), 12u * 12);
  ASSERT_EQ(stored.rot_q->values.size(), static_cast<size_t>(q * q));

  const Eigen::VectorXd x = layer.x.row(0).transpose().cast<double>();
  Eigen::VectorXd bx(d);
  for (int64_t b = 0; b < 6; ++b) {
    const int64_t n = b < 5 ? 32 : 12;
    const float* values =
        b < 5 ? stored.blocks->values.data() + b * 32 * 32 : stored.blocks_tail->values.data();
    const Eigen::Map<const RowMatrixXf> block(values, n, n);
    bx.segment(32 * b, n) = block.cast<double>() * x.segment(32 * b, n);
  }
  // M = H_(d/q) (x) rot_q, index j = p * q + t, H the normalized Sylvester matrix.
  const int64_t pow2 = d / q;
  Eigen::MatrixXd h = Eigen::MatrixXd::Ones(1, 1);
  while (h.rows() < pow2) {
    Eigen::MatrixXd next(2 * h.rows(), 2 * h.rows());
    next << h, h, h, -h;
    h = next;
  }
  h /= std::sqrt(static_cast<double>(pow2));
  const Eigen::Map<const RowMatrixXf> rot_q(stored.rot_q->values.data(), q, q);
  Eigen::MatrixXd m(d, d);
  for (int64_t p = 0; p < pow2; ++p) {
    for (int64_t p2 = 0; p2 < pow2; ++p2) {
      m.block(q * p, q * p2, q, q) = h(p, p2) * rot_q.cast<double>();
    }
  }
  const Eigen::VectorXd expected = m * bx;
  RowMatrixXd applied = layer.x.row(0).cast<double>();
  ASSERT_OK(cat->transform.ApplyToActivations(applied));
  EXPECT_LT((applied.row(0).transpose() - expected).cwiseAbs().maxCoeff(),
            1e-6 * expected.cwiseAbs().maxCoeff());

  // Powers of two store no rot_q; a diagonal is [d, 1, 1]; identity stores nothing.
  absl::StatusOr<SiteTransform> hadamard = MakeHadamardTransform(256);
  ASSERT_OK(hadamard);
  const SiteTransformTensors h_stored = hadamard->ExportTensors();
  EXPECT_EQ(hadamard->mixing()->q(), 1);
  EXPECT_FALSE(h_stored.rot_q.has_value());
  EXPECT_FALSE(h_stored.blocks.has_value());
  absl::StatusOr<SiteTransform> diag =
      SiteTransform::CreateDiagonal(Eigen::VectorXd::LinSpaced(4, 1.0, 4.0), std::nullopt);
  ASSERT_OK(diag);
  const SiteTransformTensors d_stored = diag->ExportTensors();
  ASSERT_TRUE(d_stored.blocks.has_value());
  EXPECT_THAT(d_stored.blocks->shape, ElementsAre(4, 1, 1));
  EXPECT_THAT(d_stored.blocks->values, ElementsAre(1.0f, 2.0f, 3.0f, 4.0f));
  EXPECT_FALSE(d_stored.blocks_tail.has_value());
  absl::StatusOr<SiteTransform> identity = SiteTransform::Identity(8);
  ASSERT_OK(identity);
  EXPECT_FALSE(identity->ExportTensors().blocks.has_value());
}

TEST(SiteTransformTest, MakeSiteTransformDispatchesOnMethod) {
  const int64_t d = 64;
  const Layer layer = MakeLayer(d, 8, 8, 128, 31);
  const std::vector<Eigen::MatrixXd> sx = SxBlocks(layer, 16);
  const std::vector<Eigen::MatrixXd> sw = SwBlocks(layer, 16);
  SiteTransformInputs inputs;
  inputs.dim = d;
  inputs.sx_blocks = sx;
  inputs.sw_blocks = sw;
  inputs.activation_absmax = layer.x.cwiseAbs().colwise().maxCoeff().transpose().cast<double>();
  inputs.weight_absmax = *WeightColumnAbsMax({layer.w});
  Recipe recipe;
  recipe.block_size = 16;

  recipe.method = Method::kRtn;
  absl::StatusOr<SiteTransformResult> r = MakeSiteTransform(recipe, inputs);
  ASSERT_OK(r);
  EXPECT_TRUE(r->transform.is_identity());
  EXPECT_FALSE(r->cat_report.has_value());

  recipe.method = Method::kSmoothQuant;
  r = MakeSiteTransform(recipe, inputs);
  ASSERT_OK(r);
  EXPECT_EQ(r->transform.block_size(), 1);
  EXPECT_FALSE(r->transform.has_mixing());

  recipe.method = Method::kHadamard;
  r = MakeSiteTransform(recipe, inputs);
  ASSERT_OK(r);
  EXPECT_FALSE(r->transform.has_blocks());
  EXPECT_TRUE(r->transform.has_mixing());

  recipe.method = Method::kCat;
  r = MakeSiteTransform(recipe, inputs);
  ASSERT_OK(r);
  EXPECT_EQ(r->transform.block_size(), 16);
  EXPECT_TRUE(r->transform.has_mixing());
  ASSERT_TRUE(r->cat_report.has_value());
  EXPECT_EQ(r->cat_report->num_blocks, 4);
  recipe.cat_hadamard = false;
  r = MakeSiteTransform(recipe, inputs);
  ASSERT_OK(r);
  EXPECT_FALSE(r->transform.has_mixing());

  recipe.block_size = 32;
  EXPECT_STATUS(MakeSiteTransform(recipe, inputs), absl::StatusCode::kInvalidArgument,
                "4 Sx blocks given, block size 32 over d = 64 needs 2");
  recipe.method = Method::kSmoothQuant;
  inputs.activation_absmax.resize(3);
  EXPECT_STATUS(MakeSiteTransform(recipe, inputs), absl::StatusCode::kInvalidArgument,
                "activation_absmax has 3 entries");
}

TEST(SiteTransformTest, RejectsBadInput) {
  const Eigen::MatrixXd b8 = Eigen::MatrixXd::Identity(8, 8);
  EXPECT_STATUS(SiteTransform::Identity(0), absl::StatusCode::kInvalidArgument, "dim");
  EXPECT_STATUS(SiteTransform::Create(20, {b8, b8}, std::nullopt),
                absl::StatusCode::kInvalidArgument, "cover 16 channels, the site has 20");
  EXPECT_STATUS(SiteTransform::Create(12, {Eigen::MatrixXd::Identity(4, 4), b8}, std::nullopt),
                absl::StatusCode::kInvalidArgument, "block 1 is 8x8");
  Eigen::MatrixXd singular = b8;
  singular(3, 3) = 0.0;
  EXPECT_STATUS(SiteTransform::Create(16, {b8, singular}, std::nullopt),
                absl::StatusCode::kInvalidArgument, "block 1 is singular");
  Eigen::MatrixXd nan = b8;
  nan(0, 1) = std::nan("");
  EXPECT_STATUS(SiteTransform::Create(8, {nan}, std::nullopt), absl::StatusCode::kInvalidArgument,
                "non-finite");
  EXPECT_STATUS(SiteTransform::CreateDiagonal(Eigen::VectorXd::Zero(3), std::nullopt),
                absl::StatusCode::kInvalidArgument, "diagonal element 0 is 0");
  absl::StatusOr<MixingMatrix> m12 = MixingMatrix::Create(12, {});
  ASSERT_OK(m12);
  EXPECT_STATUS(SiteTransform::Create(8, {b8}, *m12), absl::StatusCode::kInvalidArgument,
                "mixing matrix is for d = 12");

  absl::StatusOr<SiteTransform> t = SiteTransform::Create(16, {b8, b8}, std::nullopt);
  ASSERT_OK(t);
  RowMatrixXd x(2, 15);
  x.setOnes();
  EXPECT_STATUS(t->ApplyToActivations(x), absl::StatusCode::kInvalidArgument,
                "activations is 2x15, expected 16 columns");
  RowMatrixXf w = RowMatrixXf::Ones(2, 16);
  w(1, 9) = std::nanf("");
  EXPECT_STATUS(t->TransformWeight(w), absl::StatusCode::kInvalidArgument,
                "weight[1, 9] is not finite");
  EXPECT_STATUS(t->TransformWeight(RowMatrixXd(w.cast<double>())),
                absl::StatusCode::kInvalidArgument, "weight[1, 9] is not finite");
}

}  // namespace
}  // namespace catq
