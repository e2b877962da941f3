// File: core/output/auto_block_size.h
//
// cat-auto on a model (issue 10): the online cost of a recipe on a model,
// and the resolution of a cat-auto recipe (Recipe::online_cost_budget > 0)
// into one block size per site (Recipe::site_settings) from the calibration
// statistics, before any layer is quantized. Both the in-process quantizer
// and the service's job resolve through here, so their outputs are the same
// bytes. The choice itself is core/cat/block_size_choice.h.
//
//   CATQ_ASSIGN_OR_RETURN(AutoBlockSizes resolved,
//                         ResolveAutoBlockSizes(model, recipe, layer_statistics));
//   // resolved.recipe.site_settings: one per site; resolved.report -> catq_report.json
//
// Candidates the statistics cannot serve (block-mode statistics of k0 serve
// only the k dividing k0) are skipped and listed in the report. A diagonal
// T folded into attn_out's producer (v_proj) rescales the weights attn_in
// reads; the prediction for attn_in uses the weights as read (a second-order
// effect, only for k = 1 without mixing).
//
// Thread-safety: pure; concurrent calls are safe.
#ifndef CATQ_CORE_OUTPUT_AUTO_BLOCK_SIZE_H_
#define CATQ_CORE_OUTPUT_AUTO_BLOCK_SIZE_H_

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "core/cat/recipe.h"
#include "core/cat/site_statistics_hook.h"
#include "core/model/llama_model.h"
#include "nlohmann/json.hpp"

namespace catq {

struct OnlineCost {
  int64_t macs = 0;         // all sites' online transforms, per token
  int64_t linear_macs = 0;  // all quantized linears, per token
  double relative() const {
    return linear_macs > 0 ? static_cast<double>(macs) / static_cast<double>(linear_macs) : 0.0;
  }
};

// SiteOnlineCostMacs: what (layer, site) costs online with `recipe`'s
// transform there (Recipe::ForSite): block factor for cat (k) and
// smoothquant (a diagonal), mixing for hadamard and cat with cat_hadamard,
// nothing when folded (SiteIsFolded). Errors: a missing norm tensor,
// MixingMatrix::Create's.
absl::StatusOr<int64_t> SiteOnlineCostMacs(const LlamaModel& model, const Recipe& recipe,
                                           int64_t layer, Site site);

// ModelOnlineCost: SiteOnlineCostMacs over all sites of all layers, and the
// model's linear MACs per token (core/cat/online_cost.h).
absl::StatusOr<OnlineCost> ModelOnlineCost(const LlamaModel& model, const Recipe& recipe);

// The statistics of the four sites of one layer (keys SiteQualifiedName).
using LayerStatisticsSource = std::function<absl::StatusOr<SiteStatisticsMap>(int64_t layer)>;

struct AutoBlockSizes {
  Recipe recipe;          // resolved: one site setting per site
  nlohmann::json report;  // catq_report.json's "block_size_choice"
};

// ResolveAutoBlockSizes
//
// For a cat-auto `recipe`: every site's candidates evaluated on its
// statistics and weights, the choice under recipe.online_cost_budget times
// the linear MACs, and the recipe with one site setting per site. A budget
// below the cheapest choice gives every site its cheapest option and says so
// in the report. Errors: InvalidArgument for a recipe that is not cat-auto
// or invalid; a site without statistics (NotFound, naming it); reading
// weights; the solve's errors (naming the site and k).
absl::StatusOr<AutoBlockSizes> ResolveAutoBlockSizes(const LlamaModel& model, const Recipe& recipe,
                                                     const LayerStatisticsSource& statistics);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_AUTO_BLOCK_SIZE_H_
