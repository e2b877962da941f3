#include "core/cat/block_size_choice.h"

#include <gtest/gtest.h>

#include <Eigen/LU>
#include <cmath>
#include <random>

#include "core/cat/mixing_matrix.h"
#include "core/cat/sqnr_analysis.h"
#include "core/cat/weight_moments.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

RowMatrixXf Gaussian(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  RowMatrixXf m(rows, cols);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) m(i, j) = normal(rng);
  }
  return m;
}

// Activations whose channels are mixed by a dense matrix (so Sx has large
// off-diagonal entries everywhere) and scaled unevenly.
RowMatrixXf CorrelatedActivations(int64_t tokens, int64_t dim, uint32_t seed) {
  RowMatrixXf mix = Gaussian(dim, dim, seed + 1);
  for (int64_t j = 0; j < dim; ++j) mix.col(j) *= 1.0f + 4.0f * static_cast<float>(j % 5);
  return Gaussian(tokens, dim, seed) * mix;
}

SiteStatistics Stats(const RowMatrixXf& x, int64_t block_size) {
  auto stats = SiteStatistics::Create(x.cols(), {.block_size = block_size});
  EXPECT_OK(stats);
  EXPECT_OK(stats->Accumulate(x));
  return *std::move(stats);
}

TEST(BlockSizeChoiceTest, CandidatesAreThePowersUpTo128AndDNotAboveD) {
  EXPECT_EQ(CandidateBlockSizes(172), (std::vector<int>{1, 8, 16, 32, 64, 128, 172}));
  EXPECT_EQ(CandidateBlockSizes(64), (std::vector<int>{1, 8, 16, 32, 64}));
  EXPECT_EQ(CandidateBlockSizes(5), (std::vector<int>{1, 5}));
  EXPECT_EQ(CandidateBlockSizes(1), (std::vector<int>{1}));
  EXPECT_EQ(CandidateBlockSizes(4096), (std::vector<int>{1, 8, 16, 32, 64, 128, 4096}));
}

// The closed form from the diagonal blocks equals the alignment gain
// computed with the full matrices, A(T) / A(I) for T = blockdiag(T_b).
TEST(BlockSizeChoiceTest, PredictedGainIsTheAlignmentGainOfTheFullMatrices) {
  const int64_t dim = 40;
  const RowMatrixXf x = CorrelatedActivations(600, dim, 3);
  const RowMatrixXf w1 = Gaussian(24, dim, 5);
  RowMatrixXf w2 = Gaussian(16, dim, 6);
  w2.col(3) *= 9.0f;
  const std::vector<Eigen::Ref<const RowMatrixXf>> weights = {w1, w2};
  const SiteStatistics stats = Stats(x, 0);
  auto sx = stats.SecondMomentFull();
  ASSERT_OK(sx);
  for (int64_t k : {1, 8, 16, 40}) {
    SCOPED_TRACE(k);
    auto gains = PredictBlockCatGainsDb(weights, stats, k, {});
    ASSERT_OK(gains);
    ASSERT_EQ(gains->size(), 2u);
    // The transform as the site task solves it.
    auto partition = BlockPartition::Create(dim, k);
    ASSERT_OK(partition);
    auto sx_blocks = ExtractDiagonalBlocks(*sx, *partition);
    auto sw_blocks = WeightSecondMomentBlocks(weights, k);
    ASSERT_OK(sx_blocks);
    ASSERT_OK(sw_blocks);
    auto solved = SolveBlockCat(*sx_blocks, *sw_blocks, {});
    ASSERT_OK(solved);
    Eigen::MatrixXd t = Eigen::MatrixXd::Zero(dim, dim);
    for (int64_t b = 0; b < partition->num_blocks(); ++b) {
      t.block(partition->begin(b), partition->begin(b), partition->size(b), partition->size(b)) =
          solved->blocks[static_cast<size_t>(b)];
    }
    const Eigen::MatrixXd t_inv = t.inverse();
    for (size_t l = 0; l < weights.size(); ++l) {
      const Eigen::MatrixXd w = weights[l].cast<double>();
      const Eigen::MatrixXd sw = w.transpose() * w;
      auto before = Alignment(sw, *sx);
      auto after = Alignment(t_inv.transpose() * sw * t_inv, t * *sx * t.transpose());
      ASSERT_OK(before);
      ASSERT_OK(after);
      EXPECT_NEAR((*gains)[l], 10.0 * std::log10(*after / *before), 1e-9);
    }
  }
}

TEST(BlockSizeChoiceTest, BlockStatisticsServeTheBlockSizesDividingTheirs) {
  const int64_t dim = 40;  // blocks of 16: 16, 16 and a tail of 8
  const RowMatrixXf x = CorrelatedActivations(300, dim, 7);
  const RowMatrixXf w = Gaussian(12, dim, 8);
  const std::vector<Eigen::Ref<const RowMatrixXf>> weights = {w};
  const SiteStatistics full = Stats(x, 0);
  const SiteStatistics blocks16 = Stats(x, 16);
  EXPECT_TRUE(StatisticsServeBlockSize(blocks16, 8));
  EXPECT_TRUE(StatisticsServeBlockSize(blocks16, 16));
  EXPECT_FALSE(StatisticsServeBlockSize(blocks16, 32));
  EXPECT_FALSE(StatisticsServeBlockSize(blocks16, 12));
  EXPECT_TRUE(StatisticsServeBlockSize(full, 32));
  for (int64_t k : {1, 8, 16}) {
    auto from_full = PredictBlockCatGainsDb(weights, full, k, {});
    auto from_blocks = PredictBlockCatGainsDb(weights, blocks16, k, {});
    ASSERT_OK(from_full);
    ASSERT_OK(from_blocks);
    EXPECT_NEAR((*from_full)[0], (*from_blocks)[0], 1e-9) << k;
  }
  EXPECT_STATUS(PredictBlockCatGainsDb(weights, blocks16, 32, {}),
                absl::StatusCode::kInvalidArgument, "blocks of 16");
}

TEST(BlockSizeChoiceTest, GaussianSquaredRangesMatchTheirClosedForms) {
  // n = 1: r = 2|z|, E r^2 = 4. n = 2: r = |z1 - z2|, E r^2 = 2.
  EXPECT_NEAR(GaussianSquaredRange(1, RangeKind::kSymmetric), 4.0, 0.25);
  EXPECT_NEAR(GaussianSquaredRange(2, RangeKind::kMinMax), 2.0, 0.15);
  EXPECT_EQ(GaussianSquaredRange(64, RangeKind::kMinMaxWithZero),
            GaussianSquaredRange(64, RangeKind::kMinMaxWithZero));
}

// With the Hadamard mixing applied to activations and weights, the
// baseline prediction is the measured W4A4 SQNR of the mixed linear.
TEST(BlockSizeChoiceTest, BaselineNoiseIsTheMeasuredSqnrAfterMixing) {
  const int64_t dim = 64;
  const RowMatrixXf x = CorrelatedActivations(2000, dim, 21);
  const RowMatrixXf w = Gaussian(32, dim, 22);
  const std::vector<Eigen::Ref<const RowMatrixXf>> weights = {w};
  BaselineNoiseOptions options;
  options.activation_grid = GridModel(4, false);
  options.weight_grid = GridModel(4, true);
  options.activation_squared_range = GaussianSquaredRange(dim, options.activation_grid.range);
  options.weight_squared_range = GaussianSquaredRange(dim, options.weight_grid.range);
  auto noise = PredictBaselineNoise(weights, Stats(x, 0), options);
  ASSERT_OK(noise);
  auto mixing = MixingMatrix::Create(dim, {});
  ASSERT_OK(mixing);
  RowMatrixXf x_mixed = x;
  RowMatrixXf w_mixed = w;
  mixing->ApplyToRows(x_mixed);  // x' = H x
  mixing->ApplyToRows(w_mixed);  // W' = W H^T: each row w <- H w
  auto measured = AnalyzeLinear(w_mixed, x_mixed, {});
  ASSERT_OK(measured);
  EXPECT_NEAR(-10.0 * std::log10((*noise)[0]), measured->measured_sqnr_db, 1.0);
}

SiteBlockSizeOptions Site3(int64_t layer, double g1, double g8, double g64) {
  SiteBlockSizeOptions site;
  site.layer = layer;
  site.options = {{1, 10, g1, g1, {}}, {8, 20, g8, g8, {}}, {64, 100, g64, g64, {}}};
  return site;
}

int ChosenK(const std::vector<SiteBlockSizeOptions>& sites, const BlockSizeChoice& choice,
            size_t s) {
  return sites[s].options[choice.chosen[s]].block_size;
}

TEST(BlockSizeChoiceTest, TheBudgetGoesToTheSiteThatGainsMostFromALargeBlock) {
  // Site 1 gains 9 dB from k = 64, site 0 only 0.5 dB.
  const std::vector<SiteBlockSizeOptions> sites = {Site3(0, 1.0, 1.2, 1.5),
                                                   Site3(1, 1.0, 1.5, 10.0)};
  BlockSizeChoice choice = ChooseBlockSizes(sites, 115);
  EXPECT_EQ(ChosenK(sites, choice, 0), 1);
  EXPECT_EQ(ChosenK(sites, choice, 1), 64);
  EXPECT_EQ(choice.macs, 110);
  EXPECT_DOUBLE_EQ(choice.value, 11.0);
  EXPECT_FALSE(choice.budget_below_cheapest);
  // Five more MACs: the leftover lets site 0 step to k = 8 as well.
  choice = ChooseBlockSizes(sites, 120);
  EXPECT_EQ(ChosenK(sites, choice, 0), 8);
  EXPECT_EQ(ChosenK(sites, choice, 1), 64);
  EXPECT_EQ(choice.macs, 120);
  // Every budget is respected, and more budget never loses gain.
  double last_gain = -1.0;
  for (int64_t budget = 20; budget <= 220; budget += 5) {
    choice = ChooseBlockSizes(sites, budget);
    EXPECT_LE(choice.macs, budget);
    EXPECT_GE(choice.value, last_gain) << budget;
    last_gain = choice.value;
  }
  EXPECT_EQ(ChosenK(sites, ChooseBlockSizes(sites, 200), 0), 64);
}

TEST(BlockSizeChoiceTest, ABudgetBelowTheCheapestGivesEverySiteItsCheapest) {
  const std::vector<SiteBlockSizeOptions> sites = {Site3(0, 1.0, 1.2, 1.5),
                                                   Site3(1, 1.0, 1.5, 10.0)};
  const BlockSizeChoice choice = ChooseBlockSizes(sites, 5);
  EXPECT_TRUE(choice.budget_below_cheapest);
  EXPECT_EQ(ChosenK(sites, choice, 0), 1);
  EXPECT_EQ(ChosenK(sites, choice, 1), 1);
  EXPECT_EQ(choice.macs, 20);
}

TEST(BlockSizeChoiceTest, TiesGoToTheSmallerBlockThenTheEarlierSite) {
  // Two identical sites and room for one step: the first site takes it.
  const std::vector<SiteBlockSizeOptions> sites = {Site3(0, 1.0, 2.0, 2.5),
                                                   Site3(1, 1.0, 2.0, 2.5)};
  BlockSizeChoice choice = ChooseBlockSizes(sites, 30);
  EXPECT_EQ(ChosenK(sites, choice, 0), 8);
  EXPECT_EQ(ChosenK(sites, choice, 1), 1);
  // Equal cost and gain: the smaller k.
  SiteBlockSizeOptions same;
  same.options = {{16, 10, 1.0, 1.0, {}}, {8, 10, 1.0, 1.0, {}}};
  choice = ChooseBlockSizes({&same, 1}, 10);
  EXPECT_EQ(same.options[choice.chosen[0]].block_size, 8);
}

// A site whose channels are correlated gains from large blocks; one whose
// channels are independent and whose weight columns are orthogonal gets all
// it can at k = 1. Under a budget for one large block, the first gets it.
TEST(BlockSizeChoiceTest, ChoosesTheLargeBlockWhereTheStatisticsRewardIt) {
  const int64_t dim = 64;
  const RowMatrixXf x_correlated = CorrelatedActivations(800, dim, 11);
  RowMatrixXf x_independent = Gaussian(800, dim, 12);
  for (int64_t j = 0; j < dim; ++j) x_independent.col(j) *= 1.0f + static_cast<float>(j % 7);
  const RowMatrixXf w_dense = Gaussian(48, dim, 13);
  RowMatrixXf w_orthogonal = RowMatrixXf::Zero(dim, dim);
  for (int64_t j = 0; j < dim; ++j) w_orthogonal(j, j) = 0.5f + static_cast<float>(j % 3);
  struct Input {
    const RowMatrixXf& x;
    const RowMatrixXf& w;
  };
  const Input inputs[] = {{x_independent, w_orthogonal}, {x_correlated, w_dense}};
  std::vector<SiteBlockSizeOptions> sites;
  for (const Input& input : inputs) {
    const SiteStatistics stats = Stats(input.x, 0);
    const std::vector<Eigen::Ref<const RowMatrixXf>> weights = {input.w};
    SiteBlockSizeOptions site;
    site.layer = static_cast<int64_t>(sites.size());
    site.dim = dim;
    for (int k : CandidateBlockSizes(dim)) {
      auto gains = PredictBlockCatGainsDb(weights, stats, k, {});
      ASSERT_OK(gains);
      site.options.push_back({k, dim * k, (*gains)[0], (*gains)[0], *gains});
    }
    sites.push_back(site);
  }
  // The independent site: next to no gain past k = 1 (the sample's chance
  // correlations give a few hundredths of a dB).
  EXPECT_NEAR(sites[0].options.back().value, sites[0].options.front().value, 0.2);
  EXPECT_GT(sites[1].options.back().value, sites[1].options.front().value + 1.0);
  const BlockSizeChoice choice = ChooseBlockSizes(sites, dim * 64 + dim);
  EXPECT_EQ(ChosenK(sites, choice, 0), 1);
  EXPECT_EQ(ChosenK(sites, choice, 1), 64);
}

}  // namespace
}  // namespace catq
