// File: core/output/quantization_config.h
//
// Builds the `quantization_config` object of an output config.json: the
// compressed-tensors fields (quant_method, format pack-quantized, config_groups,
// ignore) plus a `catq` object with the recipe, the grids and, per site,
// whether a transform is applied online, so a loader never guesses from which
// tensors exist (architecture.md section 4).
//
//   std::vector<SiteRecord> sites = ...;  // one per layer and site
//   nlohmann::json qc = BuildQuantizationConfig(recipe, sites, config.head_dim());
//   config["quantization_config"] = qc;
#ifndef CATQ_CORE_OUTPUT_QUANTIZATION_CONFIG_H_
#define CATQ_CORE_OUTPUT_QUANTIZATION_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/cat/recipe.h"
#include "nlohmann/json.hpp"

namespace catq {

// How one activation site is stored.
struct SiteRecord {
  int layer = 0;
  std::string site;       // "attn_in", "attn_out", "mlp_in" or "mlp_out"
  bool online = false;    // An online transform is applied at inference.
  bool hadamard = false;  // The online transform includes the mixing H.
  int block_size = 0;     // k of the block-diagonal factor; 0 when there is none.
  bool folded = false;    // A diagonal transform was folded into other weights.
};

// BuildQuantizationConfig: `head_dim` is the model's, the group of the K/V
// cache scheme (kv_cache_scheme, null unless recipe.kv_cache_bits < 16).
// Uniform bits: config_groups.group_0 targets "Linear". Mixed precision (a
// site setting whose weight or activation bits differ from the recipe's): one
// group per distinct (weight bits, activation bits), in that order, whose
// targets list its modules by name, and catq.sites records each site's
// weight_bits and activation_bits.
nlohmann::json BuildQuantizationConfig(const Recipe& recipe, const std::vector<SiteRecord>& sites,
                                       int64_t head_dim);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_QUANTIZATION_CONFIG_H_
