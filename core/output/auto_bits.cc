#include "core/output/auto_bits.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cat/bit_allocation.h"
#include "core/cat/block_size_choice.h"
#include "core/output/site_quantizer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// One site's predicted noise per linear at each of kBitChoices, split into
// its weight and activation terms.
struct SiteNoise {
  int64_t layer = 0;
  Site site = Site::kAttnIn;
  int64_t params = 0;
  std::vector<std::string> modules;
  std::vector<std::array<double, kBitChoices.size()>> weight;      // [linear][bits]
  std::vector<std::array<double, kBitChoices.size()>> activation;  // [linear][bits]
};

absl::StatusOr<std::vector<double>> Predict(const std::vector<Eigen::Ref<const RowMatrixXf>>& views,
                                            const SiteStatistics& stats, const Recipe& recipe,
                                            int weight_bits, int activation_bits,
                                            GaussianSquaredRangeCache& ranges) {
  BaselineNoiseOptions noise;
  const int64_t dim = stats.dim();
  if (activation_bits > 0) {
    noise.activation_grid = GridModel(activation_bits, recipe.activation_symmetric);
    noise.activation_squared_range = ranges.Get(dim, noise.activation_grid.range);
  }
  noise.weight_grid = GridModel(weight_bits, recipe.weights.symmetric);
  const int64_t group =
      recipe.weights.group_size > 0 ? std::min<int64_t>(recipe.weights.group_size, dim) : dim;
  noise.weight_squared_range = ranges.Get(group, noise.weight_grid.range);
  return PredictBaselineNoise(views, stats, noise);
}

absl::StatusOr<SiteNoise> PredictSite(const LlamaModel& model, const Recipe& recipe, int64_t layer,
                                      Site site, const SiteStatistics& stats,
                                      GaussianSquaredRangeCache& ranges) {
  CATQ_ASSIGN_OR_RETURN(SiteWeights weights,
                        ReadSiteWeights(model, layer, site, recipe.ForSite(layer, site)));
  const std::vector<Eigen::Ref<const RowMatrixXf>> views(weights.weights.begin(),
                                                         weights.weights.end());
  SiteNoise result;
  result.layer = layer;
  result.site = site;
  result.modules = weights.modules;
  for (const RowMatrixXf& w : weights.weights) result.params += w.rows() * w.cols();
  result.weight.resize(views.size());
  result.activation.resize(views.size());
  CATQ_ASSIGN_OR_RETURN(const std::vector<double> at_four,
                        Predict(views, stats, recipe, kBitChoices[0], 0, ranges));
  for (size_t b = 0; b < kBitChoices.size(); ++b) {
    CATQ_ASSIGN_OR_RETURN(std::vector<double> weight_only,
                          Predict(views, stats, recipe, kBitChoices[b], 0, ranges));
    CATQ_ASSIGN_OR_RETURN(std::vector<double> both,
                          Predict(views, stats, recipe, kBitChoices[0], kBitChoices[b], ranges));
    for (size_t l = 0; l < views.size(); ++l) {
      result.weight[l][b] = weight_only[l];
      result.activation[l][b] = both[l] - at_four[l];
    }
  }
  return result;
}

// A term of `noise` at `bits`; 0 for a width outside the choices (16-bit
// activations are not quantized; a recipe's own other width is not
// predicted).
double TermAt(const std::array<double, kBitChoices.size()>& noise, int bits) {
  for (size_t b = 0; b < kBitChoices.size(); ++b) {
    if (kBitChoices[b] == bits) return noise[b];
  }
  return 0.0;
}

}  // namespace

absl::StatusOr<AutoBits> ResolveAutoBits(const LlamaModel& model, const Recipe& recipe,
                                         const LayerStatisticsSource& statistics) {
  CATQ_RETURN_IF_ERROR(Prefix("recipe", recipe.Validate()));
  if (!recipe.allocates_bits()) {
    return absl::InvalidArgumentError(
        "recipe.average_weight_bits: 0 and average_activation_bits 0; there is nothing to "
        "choose");
  }
  std::vector<SiteNoise> sites;
  GaussianSquaredRangeCache ranges;
  for (int64_t layer = 0; layer < model.config().num_hidden_layers; ++layer) {
    CATQ_ASSIGN_OR_RETURN(SiteStatisticsMap layer_stats, statistics(layer));
    for (Site site : kAllSites) {
      const std::string key = SiteQualifiedName(layer, site);
      auto stats = layer_stats.find(key);
      if (stats == layer_stats.end()) {
        return absl::NotFoundError(absl::StrCat(key, ": no statistics to choose its bits"));
      }
      absl::StatusOr<SiteNoise> predicted =
          PredictSite(model, recipe, layer, site, stats->second, ranges);
      if (!predicted.ok()) return Prefix(key, predicted.status());
      sites.push_back(*std::move(predicted));
    }
  }
  std::vector<SiteBitOptions> weight_options;
  std::vector<SiteBitOptions> activation_options;
  for (const SiteNoise& site : sites) {
    SiteBitOptions w{.units = site.params};
    SiteBitOptions a{.units = site.params};
    for (size_t l = 0; l < site.weight.size(); ++l) {
      for (size_t b = 0; b < kBitChoices.size(); ++b) {
        w.noise[b] += site.weight[l][b];
        a.noise[b] += site.activation[l][b];
      }
    }
    weight_options.push_back(w);
    activation_options.push_back(a);
  }
  AutoBits result;
  result.recipe = recipe;
  std::vector<int> weight_bits(sites.size(), 0);
  std::vector<int> activation_bits(sites.size(), 0);
  nlohmann::json totals = nlohmann::json::object();
  if (recipe.average_weight_bits > 0.0) {
    const BitChoice choice = ChooseBits(weight_options, recipe.average_weight_bits);
    weight_bits = choice.bits;
    totals["average_weight_bits"] = choice.average_bits;
    totals["weight_budget_below_4"] = choice.budget_below_cheapest;
  }
  if (recipe.average_activation_bits > 0.0) {
    const BitChoice choice = ChooseBits(activation_options, recipe.average_activation_bits);
    activation_bits = choice.bits;
    totals["average_activation_bits"] = choice.average_bits;
    totals["activation_budget_below_4"] = choice.budget_below_cheapest;
  }
  nlohmann::json site_reports = nlohmann::json::array();
  double predicted_noise_total = 0.0;
  for (size_t s = 0; s < sites.size(); ++s) {
    const SiteNoise& site = sites[s];
    SiteSetting* setting = nullptr;
    for (SiteSetting& existing : result.recipe.site_settings) {
      if (existing.layer == site.layer && existing.site == site.site) setting = &existing;
    }
    if (setting == nullptr) {
      result.recipe.site_settings.push_back(
          {.layer = site.layer,
           .site = site.site,
           .block_size = recipe.BlockSizeFor(site.layer, site.site)});
      setting = &result.recipe.site_settings.back();
    }
    setting->weight_bits = weight_bits[s];
    setting->activation_bits = activation_bits[s];
    const Recipe site_recipe = result.recipe.ForSite(site.layer, site.site);
    // The prediction at the site's bits.
    nlohmann::json linears = nlohmann::json::array();
    for (size_t l = 0; l < site.modules.size(); ++l) {
      const double noise = TermAt(site.weight[l], site_recipe.weights.bits) +
                           TermAt(site.activation[l], site_recipe.activation_bits);
      predicted_noise_total += noise;
      linears.push_back({{"module", site.modules[l]},
                         {"predicted_sqnr_db", noise > 0.0 ? -10.0 * std::log10(noise) : 0.0}});
    }
    site_reports.push_back({{"key", SiteQualifiedName(site.layer, site.site)},
                            {"params", site.params},
                            {"weight_bits", site_recipe.weights.bits},
                            {"activation_bits", site_recipe.activation_bits},
                            {"linears", linears}});
  }
  totals["predicted_noise_total"] = predicted_noise_total;
  result.report = {
      {"average_weight_bits_budget", recipe.average_weight_bits},
      {"average_activation_bits_budget", recipe.average_activation_bits},
      {"totals", totals},
      {"objective",
       "minimize the predicted relative noise summed over linears, sum of 1 / SQNR with the "
       "Hadamard mixing's Gaussian concentrations (no block factor), each site's weight bits "
       "under the parameter-weighted average and its activation bits under the MAC-weighted "
       "average, greedy by noise removed per extra bit x parameter"},
      {"sites", site_reports},
  };
  return result;
}

}  // namespace catq
