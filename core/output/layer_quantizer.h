// File: core/output/layer_quantizer.h
//
// One layer task: the four site tasks of a layer (site_quantizer.h), run in
// the order their folds need: attn_out's and mlp_out's diagonal T, when
// folded, scale the rows of v_proj and up_proj, which attn_in and mlp_in then
// transform and quantize. Under grouped-query attention attn_out's diagonal
// is solved tied across the query heads sharing a KV head, so that one
// v_proj row scale serves them all. The layer is therefore the unit the in-process
// quantizer and the service's workers schedule; its result holds everything
// the output needs from that layer.
//
//   CATQ_ASSIGN_OR_RETURN(LayerResult result, QuantizeLayer(model, recipe, 3, calibration));
//   const SiteResult& mlp_in = result.site(Site::kMlpIn);
//
// Thread-safety: pure; concurrent calls on different layers are safe.
#ifndef CATQ_CORE_OUTPUT_LAYER_QUANTIZER_H_
#define CATQ_CORE_OUTPUT_LAYER_QUANTIZER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/recipe.h"
#include "core/model/llama_model.h"
#include "core/output/calibration_data.h"
#include "core/output/site_quantizer.h"

namespace catq {

struct LayerResult {
  int64_t layer = 0;
  std::vector<SiteResult> sites;  // indexed by Site, kAllSites.size() entries
  double read_seconds = 0.0;      // reading weights, folding gains
  double quantize_seconds = 0.0;  // solving, transforming, quantizing, packing
  const SiteResult& site(Site s) const { return sites[static_cast<size_t>(s)]; }
};

// QuantizeLayer: every site of `layer` (QuantizeSite, with `options` and the
// site's own recipe, Recipe::ForSite) with the statistics and samples
// `calibration` holds for it. Errors name the site; FailedPrecondition for a
// cat-auto recipe whose block sizes are not resolved yet.
absl::StatusOr<LayerResult> QuantizeLayer(const LlamaModel& model, const Recipe& recipe,
                                          int64_t layer, const CalibrationData& calibration,
                                          const SiteQuantizeOptions& options = {});

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_LAYER_QUANTIZER_H_
