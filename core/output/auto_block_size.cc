#include "core/output/auto_block_size.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cat/block_size_choice.h"
#include "core/cat/mixing_matrix.h"
#include "core/cat/online_cost.h"
#include "core/model/llama_weights.h"
#include "core/output/output_plan.h"
#include "core/output/site_quantizer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

bool HasMixing(const Recipe& recipe) {
  return recipe.method == Method::kHadamard ||
         (recipe.method == Method::kCat && recipe.cat_hadamard);
}

int64_t BlockSizeOfMethod(const Recipe& site_recipe) {
  if (site_recipe.method == Method::kCat) return site_recipe.block_size;
  if (site_recipe.method == Method::kSmoothQuant) return 1;
  return 0;
}

// What one site's evaluation gives besides its options.
struct SiteExtras {
  std::vector<std::string> modules;
  std::vector<double> baseline_noise;  // predicted 1 / SQNR per linear with B = I
};

nlohmann::json SiteJson(const SiteBlockSizeOptions& site, const SiteExtras& extras, size_t chosen) {
  const BlockSizeOption& pick = site.options[chosen];
  nlohmann::json linears = nlohmann::json::object();
  for (size_t i = 0; i < extras.modules.size(); ++i) {
    linears[extras.modules[i]] = {
        {"baseline_predicted_sqnr_db", -10.0 * std::log10(extras.baseline_noise[i])},
        {"predicted_gain_db", pick.linear_gain_db[i]}};
  }
  nlohmann::json candidates = nlohmann::json::array();
  for (const BlockSizeOption& o : site.options) {
    candidates.push_back({{"block_size", o.block_size},
                          {"online_macs_per_token", o.macs},
                          {"predicted_gain_db", o.gain_db},
                          {"predicted_noise_removed", o.value}});
  }
  nlohmann::json skipped = nlohmann::json::array();
  for (const SkippedBlockSize& s : site.skipped) {
    skipped.push_back({{"block_size", s.block_size}, {"reason", s.reason}});
  }
  return {{"key", SiteQualifiedName(site.layer, site.site)},
          {"dim", site.dim},
          {"block_size", pick.block_size},
          {"online_macs_per_token", pick.macs},
          {"predicted_gain_db", pick.gain_db},
          {"predicted_noise_removed", pick.value},
          {"linears", linears},
          {"candidates", candidates},
          {"skipped", skipped}};
}

// The evaluated candidates of one site, and its weights' module names.
absl::StatusOr<SiteBlockSizeOptions> EvaluateSite(const LlamaModel& model, const Recipe& recipe,
                                                  int64_t layer, Site site,
                                                  const SiteStatistics& stats,
                                                  GaussianSquaredRangeCache& ranges,
                                                  SiteExtras& extras) {
  CATQ_ASSIGN_OR_RETURN(SiteWeights weights, ReadSiteWeights(model, layer, site, recipe));
  extras.modules = weights.modules;
  const std::vector<Eigen::Ref<const RowMatrixXf>> views(weights.weights.begin(),
                                                         weights.weights.end());
  SiteBlockSizeOptions result;
  result.layer = layer;
  result.site = site;
  result.dim = weights.dim();
  if (stats.dim() != result.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("statistics have dim ", stats.dim(), ", the site's weights ", result.dim));
  }
  BaselineNoiseOptions noise;
  if (recipe.activation_bits < 16) {
    noise.activation_grid = GridModel(recipe.activation_bits, recipe.activation_symmetric);
    noise.activation_squared_range = ranges.Get(result.dim, noise.activation_grid.range);
  }
  noise.weight_grid = GridModel(recipe.weights.bits, recipe.weights.symmetric);
  const int64_t group = recipe.weights.group_size > 0
                            ? std::min<int64_t>(recipe.weights.group_size, result.dim)
                            : result.dim;
  noise.weight_squared_range = ranges.Get(group, noise.weight_grid.range);
  CATQ_ASSIGN_OR_RETURN(extras.baseline_noise, PredictBaselineNoise(views, stats, noise));
  BlockGainOptions options;
  options.solve.damping = recipe.damping;
  options.solve.eigen_clip = recipe.eigen_clip;
  options.normalize_weight_moments = recipe.normalize_weight_moments;
  for (int k : CandidateBlockSizes(result.dim)) {
    if (!StatisticsServeBlockSize(stats, k)) {
      result.skipped.push_back(
          {k, absl::StrCat("the statistics keep only blocks of ", stats.block_size(),
                           " channels, which do not hold blocks of ", k)});
      continue;
    }
    Recipe candidate = recipe.ForSite(layer, site);
    candidate.block_size = k;
    BlockSizeOption option;
    option.block_size = k;
    CATQ_ASSIGN_OR_RETURN(option.macs, SiteOnlineCostMacs(model, candidate, layer, site));
    absl::StatusOr<std::vector<double>> gains = PredictBlockCatGainsDb(views, stats, k, options);
    if (!gains.ok()) return Prefix(absl::StrCat("k = ", k), gains.status());
    option.linear_gain_db = *std::move(gains);
    for (size_t i = 0; i < option.linear_gain_db.size(); ++i) {
      const double g = option.linear_gain_db[i];
      option.gain_db += g;
      option.value += extras.baseline_noise[i] * (1.0 - std::pow(10.0, -g / 10.0));
    }
    result.options.push_back(std::move(option));
  }
  if (result.options.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no candidate block size is served by statistics with blocks of ", stats.block_size()));
  }
  return result;
}

}  // namespace

absl::StatusOr<int64_t> SiteOnlineCostMacs(const LlamaModel& model, const Recipe& recipe,
                                           int64_t layer, Site site) {
  const Recipe site_recipe = recipe.ForSite(layer, site);
  const int64_t dim = SiteDim(model.config(), site);
  CATQ_ASSIGN_OR_RETURN(const bool folded, SiteIsFolded(model, site_recipe, layer, site));
  int64_t mixing_q = 0;
  if (HasMixing(site_recipe)) {
    MixingOptions mixing;
    mixing.seed = site_recipe.mixing_seed;
    CATQ_ASSIGN_OR_RETURN(MixingMatrix matrix, MixingMatrix::Create(dim, mixing));
    mixing_q = matrix.q();
  }
  return SiteOnlineMacs(dim, BlockSizeOfMethod(site_recipe), mixing_q, folded);
}

absl::StatusOr<OnlineCost> ModelOnlineCost(const LlamaModel& model, const Recipe& recipe) {
  OnlineCost cost;
  cost.linear_macs = LinearMacsPerToken(model.config());
  for (int64_t layer = 0; layer < model.config().num_hidden_layers; ++layer) {
    for (Site site : kAllSites) {
      CATQ_ASSIGN_OR_RETURN(int64_t macs, SiteOnlineCostMacs(model, recipe, layer, site));
      cost.macs += macs;
    }
  }
  return cost;
}

absl::StatusOr<AutoBlockSizes> ResolveAutoBlockSizes(const LlamaModel& model, const Recipe& recipe,
                                                     const LayerStatisticsSource& statistics) {
  CATQ_RETURN_IF_ERROR(Prefix("recipe", recipe.Validate()));
  if (!recipe.is_auto()) {
    return absl::InvalidArgumentError(
        "recipe.online_cost_budget: 0 is not cat-auto; there is nothing to choose");
  }
  Recipe fixed = recipe;  // the candidates are evaluated without settings
  fixed.site_settings.clear();
  std::vector<SiteBlockSizeOptions> sites;
  std::vector<SiteExtras> extras;
  GaussianSquaredRangeCache ranges;
  for (int64_t layer = 0; layer < model.config().num_hidden_layers; ++layer) {
    CATQ_ASSIGN_OR_RETURN(SiteStatisticsMap layer_stats, statistics(layer));
    for (Site site : kAllSites) {
      const std::string key = SiteQualifiedName(layer, site);
      auto stats = layer_stats.find(key);
      if (stats == layer_stats.end()) {
        return absl::NotFoundError(absl::StrCat(key, ": no statistics to choose a block size"));
      }
      extras.emplace_back();
      absl::StatusOr<SiteBlockSizeOptions> evaluated =
          EvaluateSite(model, fixed, layer, site, stats->second, ranges, extras.back());
      if (!evaluated.ok()) return Prefix(key, evaluated.status());
      sites.push_back(*std::move(evaluated));
    }
  }
  const int64_t linear_macs = LinearMacsPerToken(model.config());
  const double budget_macs = recipe.online_cost_budget * static_cast<double>(linear_macs);
  const BlockSizeChoice choice = ChooseBlockSizes(
      sites, budget_macs >= 9.2e18 ? INT64_MAX : static_cast<int64_t>(budget_macs));

  AutoBlockSizes result;
  result.recipe = fixed;
  nlohmann::json site_reports = nlohmann::json::array();
  for (size_t s = 0; s < sites.size(); ++s) {
    const BlockSizeOption& pick = sites[s].options[choice.chosen[s]];
    result.recipe.site_settings.push_back(
        {.layer = sites[s].layer, .site = sites[s].site, .block_size = pick.block_size});
    site_reports.push_back(SiteJson(sites[s], extras[s], choice.chosen[s]));
  }
  OnlineCost cost{.macs = choice.macs, .linear_macs = linear_macs};
  result.report = {
      {"online_cost_budget", recipe.online_cost_budget},
      {"online_cost", cost.relative()},
      {"online_macs_per_token", cost.macs},
      {"linear_macs_per_token", linear_macs},
      {"predicted_gain_db_total", choice.gain_db},
      {"predicted_noise_removed_total", choice.value},
      {"baseline", recipe.cat_hadamard ? "no block factor: the Hadamard mixing alone"
                                       : "no block factor: no transform"},
      {"objective",
       "maximize the predicted relative noise removed, sum over linears of (1 / SQNR with no "
       "block factor) x (1 - 10^(-gain / 10)); gains from the alignment of the diagonal blocks, "
       "concentrations those of a Gaussian vector after the mixing, for every k"},
      {"note", choice.budget_below_cheapest
                   ? nlohmann::json(
                         absl::StrCat("the budget is below the cheapest choice (online cost ",
                                      cost.relative(), "): every site has its cheapest block size"))
                   : nlohmann::json(nullptr)},
      {"sites", site_reports},
  };
  return result;
}

}  // namespace catq
