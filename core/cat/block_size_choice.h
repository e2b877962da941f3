// File: core/cat/block_size_choice.h
//
// cat-auto's choice of a block size k per site (issue 10): for each site and
// candidate k in {1, 8, 16, 32, 64, 128, d} (those <= d), the predicted SQNR
// gain of block CAT with k over no block factor, from the closed form alone
// (cat-method.md 2.3: nothing is quantized), then the k of every site that
// maximizes the summed gain under a budget on the online MACs per token.
//
// The prediction. For a linear W_l reading a site with second moments Sx and
// Sw_l, SQNR = 12 N^2 C A (both sides, combined with ||), and
//   A(B) = tr(Sw_l Sx) / (tr(B Sx B^T) tr(B^-T Sw_l B^-1))
// for the block factor B: the numerator (the signal E||W_l x||^2) does not
// depend on B, and each trace in the denominator is a sum over the diagonal
// blocks, so the diagonal k x k blocks of Sx are all it takes. The gain of k
// over B = I (the recipe's mixing alone, orthogonal, so it leaves A as it is)
//   gain_l(k) = 10 log10(tr Sx tr Sw_l / (tr(B Sx B^T) tr(B^-T Sw_l B^-1)))  dB
// is the predicted SQNR gain when the concentrations C(x), C(W) do not
// depend on k: the assumption the Hadamard mixing on top is there for
// (cat-method.md 2.2); without mixing it is the alignment gain alone. A
// linear of a shared site can lose (v_proj under q_proj's Sw, cat-method.md
// 5): its gain is negative and counts so.
//
// The choice: minimize the sum over all linears of the predicted relative
// noise 1 / SQNR_l(k) = NSR_l(I) 10^(-gain_l(k) / 10) subject to sum of MACs
// <= budget, i.e. maximize the noise removed, sum_l NSR_l(I) (1 -
// 10^(-gain_l / 10)). Relative noise powers add through a network to first
// order, so a dB on a linear at 14 dB (down_proj) is worth ten times a dB on
// one at 24 dB (q_proj); a sum of dB would weigh them the same. NSR_l(I) is
// the prediction of cat-method.md section 1 with the concentrations the
// mixing gives a Gaussian-like vector, C = d / E[r(z)^2] for z ~ N(0, I)
// (PredictBaselineNoise). A multiple-choice knapsack, solved greedily: every site starts at its
// cheapest option, then steps along the upper convex hull of its (MACs, gain) options are taken by
// decreasing gain per MAC while they fit; a last pass gives each site, in
// order, the best option the budget left over still allows. Deterministic:
// ties go to the smaller k, then to the earlier site.
//
//   CATQ_ASSIGN_OR_RETURN(std::vector<double> gains,
//                         PredictBlockCatGainsDb(weights, stats, 32, options));
//   BlockSizeChoice choice = ChooseBlockSizes(sites, budget_macs);
//
// Thread-safety: pure functions.
#ifndef CATQ_CORE_CAT_BLOCK_SIZE_CHOICE_H_
#define CATQ_CORE_CAT_BLOCK_SIZE_CHOICE_H_

#include <Eigen/Core>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/cat/block_cat.h"
#include "core/cat/site_statistics.h"
#include "core/cat/sqnr_analysis.h"
#include "core/math/eigen_types.h"
#include "core/model/llama_weights.h"

namespace catq {

// CandidateBlockSizes: 1, 8, 16, 32, 64, 128 and dim, those <= dim,
// ascending, without repeats.
std::vector<int> CandidateBlockSizes(int64_t dim);

// StatisticsServeBlockSize: whether `stats` hold the diagonal blocks of k:
// full statistics, or blocks of k0 with k dividing k0 (each block of k then
// lies inside one block of k0, the smaller tail included).
bool StatisticsServeBlockSize(const SiteStatistics& stats, int64_t block_size);

// SecondMomentBlocksFor
//
// The diagonal blocks of E[x x^T] for `partition`: cut from the full matrix,
// or from blocks of a multiple of k. InvalidArgument when the statistics
// cannot serve k (StatisticsServeBlockSize) or have another dim.
absl::StatusOr<std::vector<Eigen::MatrixXd>> SecondMomentBlocksFor(const SiteStatistics& stats,
                                                                   const BlockPartition& partition);

// GaussianSquaredRange: E[r(z)^2] for z ~ N(0, I_n) under `kind`, by a
// Monte Carlo of 1024 draws with a fixed seed (the same on every run).
// REQUIRES: n >= 1.
double GaussianSquaredRange(int64_t n, RangeKind kind);

// GaussianSquaredRangeCache: GaussianSquaredRange computed once per (n,
// kind), for the many sites of one width a model has. Not thread-safe.
class GaussianSquaredRangeCache {
 public:
  double Get(int64_t n, RangeKind kind);

 private:
  std::map<std::pair<int64_t, RangeKind>, double> values_;
};

// The grids of the noise model; the squared ranges come from the caller
// (GaussianSquaredRange, cached across sites of one width).
struct BaselineNoiseOptions {
  GridNoiseModel activation_grid;  // steps 0: activations not quantized
  GridNoiseModel weight_grid;
  double activation_squared_range = 0.0;  // GaussianSquaredRange(d, activation range)
  double weight_squared_range = 0.0;      // GaussianSquaredRange(group, weight range)
};

// PredictBaselineNoise
//
// Per linear, the predicted 1 / SQNR with B = I (the mixing alone):
//   (rho_x / (12 N_x^2 d) + rho_w / (12 N_w^2 d)) / A_l,
//   A_l = tr(W_l Sx W_l^T) / (||W_l||_F^2 tr Sx)
// with rho the Gaussian squared ranges (C = d / rho on both sides). With
// block statistics A_l uses the block-diagonal part of Sx (an estimate).
// Errors: weights of another width, an all-zero weight.
absl::StatusOr<std::vector<double>> PredictBaselineNoise(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, const SiteStatistics& stats,
    const BaselineNoiseOptions& options);

struct BlockGainOptions {
  // The solve, as the site task will run it (recipe.damping, eigen_clip).
  BlockCatOptions solve;
  // Sw of the solve weighted per linear by 1 / ||W_l||_F^2 (the recipe's
  // normalize_weight_moments); the gains use each W_l's own Sw.
  bool normalize_weight_moments = false;
};

// PredictBlockCatGainsDb
//
// gain_l(k) above for each of `weights` (each [out_l, d]) with the block
// CAT solve of k on `stats`. Errors: InvalidArgument as SecondMomentBlocksFor
// and for weights of another width; the solve's errors.
absl::StatusOr<std::vector<double>> PredictBlockCatGainsDb(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, const SiteStatistics& stats,
    int64_t block_size, const BlockGainOptions& options);

// One evaluated block size of one site.
struct BlockSizeOption {
  int block_size = 0;
  int64_t macs = 0;  // online MACs per token (core/cat/online_cost.h)
  // What the choice maximizes: the predicted relative noise removed,
  // sum_l NSR_l(I) (1 - 10^(-gain_l(k) / 10)).
  double value = 0.0;
  double gain_db = 0.0;                // sum over the site's linears of gain_l(k)
  std::vector<double> linear_gain_db;  // per linear, in the site's order
};

// A candidate that could not be evaluated, and why.
struct SkippedBlockSize {
  int block_size = 0;
  std::string reason;
};

struct SiteBlockSizeOptions {
  int64_t layer = 0;
  Site site = Site::kAttnIn;
  int64_t dim = 0;
  std::vector<BlockSizeOption> options;  // at least one
  std::vector<SkippedBlockSize> skipped;
};

struct BlockSizeChoice {
  std::vector<size_t> chosen;  // per site: an index into its options
  int64_t macs = 0;            // total online MACs per token
  double value = 0.0;          // total predicted noise removed
  double gain_db = 0.0;        // total predicted gain, dB summed over linears
  // The budget is below every site's cheapest option: each site got that.
  bool budget_below_cheapest = false;
};

// ChooseBlockSizes: the choice above. REQUIRES: every site has an option.
BlockSizeChoice ChooseBlockSizes(absl::Span<const SiteBlockSizeOptions> sites, int64_t budget_macs);

}  // namespace catq

#endif  // CATQ_CORE_CAT_BLOCK_SIZE_CHOICE_H_
