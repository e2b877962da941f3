#include "core/output/layer_quantizer.h"

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/model/llama_weights.h"
#include "core/output/output_plan.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The scales of the producer's rows for a site's folded t: v_proj's row
// kv * head_dim + j feeds channel j of every query head of KV head kv, whose
// entries of attn_out's t are tied (one head per KV head: row j is channel
// j); up_proj's row j is mlp_out's channel j.
absl::StatusOr<Eigen::VectorXd> ProducerRowScales(const LlamaConfig& config, Site site,
                                                  const Eigen::VectorXd& t) {
  const std::optional<ChannelGroups> groups = TiedChannelsForFolding(config, site);
  if (!groups.has_value()) return t;
  absl::StatusOr<Eigen::VectorXd> rows = TiedGroupValues(t, *groups);
  if (!rows.ok()) return absl::InternalError(rows.status().message());
  return rows;
}

// v_proj's rows times attn_out's folded t, up_proj's rows times mlp_out's.
absl::Status ScaleFoldedRows(const LlamaConfig& config, const std::vector<SiteResult>& done,
                             SiteWeights& weights) {
  const std::pair<Site, LinearKind> folds[] = {{Site::kAttnOut, LinearKind::kVProj},
                                               {Site::kMlpOut, LinearKind::kUpProj}};
  for (const auto& [producer_site, kind] : folds) {
    const std::optional<Eigen::VectorXd>& t =
        done[static_cast<size_t>(producer_site)].folded_diagonal;
    if (!t.has_value()) continue;
    absl::StatusOr<Eigen::VectorXd> scales = ProducerRowScales(config, producer_site, *t);
    CATQ_RETURN_IF_ERROR(Prefix(SiteName(producer_site), scales.status()));
    for (size_t i = 0; i < weights.kinds.size(); ++i) {
      if (weights.kinds[i] != kind) continue;
      if (weights.weights[i].rows() != scales->size()) {
        return absl::InternalError(absl::StrCat(weights.modules[i], ": ", scales->size(),
                                                " folded scales for ", weights.weights[i].rows(),
                                                " rows"));
      }
      weights.weights[i] = scales->cast<float>().asDiagonal() * weights.weights[i];
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LayerResult> QuantizeLayer(const LlamaModel& model, const Recipe& recipe,
                                          int64_t layer, const CalibrationData& calibration,
                                          const SiteQuantizeOptions& options) {
  if (recipe.is_auto() && recipe.site_settings.empty()) {
    return absl::FailedPreconditionError(
        "recipe: cat-auto's block sizes are not resolved (ResolveAutoBlockSizes)");
  }
  if (recipe.allocates_bits() && recipe.site_settings.empty()) {
    return absl::FailedPreconditionError(
        "recipe: the bits per site are not resolved (ResolveAutoBits)");
  }
  LayerResult result;
  result.layer = layer;
  result.sites.resize(kAllSites.size());
  for (Site site : {Site::kAttnOut, Site::kMlpOut, Site::kAttnIn, Site::kMlpIn}) {
    Clock::time_point start = Clock::now();
    CATQ_ASSIGN_OR_RETURN(SiteWeights weights, ReadSiteWeights(model, layer, site, recipe));
    CATQ_ASSIGN_OR_RETURN(weights.fold_diagonal, SiteIsFolded(model, recipe, layer, site));
    if (weights.fold_diagonal) weights.tied_channels = TiedChannelsForFolding(model.config(), site);
    CATQ_RETURN_IF_ERROR(ScaleFoldedRows(model.config(), result.sites, weights));
    result.read_seconds += SecondsSince(start);
    start = Clock::now();
    const std::string key = SiteQualifiedName(layer, site);
    auto stats = calibration.statistics.find(key);
    auto samples = calibration.samples.find(key);
    CATQ_ASSIGN_OR_RETURN(
        result.sites[static_cast<size_t>(site)],
        QuantizeSite(recipe.ForSite(layer, site), std::move(weights),
                     stats == calibration.statistics.end() ? nullptr : &stats->second,
                     samples == calibration.samples.end() ? nullptr : &samples->second, options));
    result.quantize_seconds += SecondsSince(start);
  }
  return result;
}

}  // namespace catq
