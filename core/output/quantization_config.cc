#include "core/output/quantization_config.h"

#include "core/output/output_names.h"

namespace catq {
namespace {

nlohmann::json WeightScheme(const WeightQuantOptions& weights) {
  const bool per_channel = weights.group_size <= 0;
  return {
      {"num_bits", weights.bits},
      {"type", "int"},
      {"symmetric", weights.symmetric},
      {"strategy", per_channel ? "channel" : "group"},
      {"group_size", per_channel ? nlohmann::json(nullptr) : nlohmann::json(weights.group_size)},
      {"dynamic", false},
      {"observer", "minmax"},
  };
}

nlohmann::json ActivationScheme(const Recipe& recipe) {
  if (recipe.activation_bits >= 16) return nullptr;
  return {
      {"num_bits", recipe.activation_bits},
      {"type", "int"},
      {"strategy", "token"},
      {"dynamic", true},
      {"symmetric", recipe.activation_symmetric},
      {"observer", nullptr},
  };
}

// The exact grids, in words, so a reader can reproduce every value.
nlohmann::json Grids(const Recipe& recipe) {
  return {
      {"rounding", "half_to_even"},
      {"weights", recipe.weights.symmetric
                      ? "symmetric: scale = amax / (2^(b-1) - 1), q in [-(2^(b-1)-1), 2^(b-1)-1]"
                      : "asymmetric: range [min(w,0), max(w,0)], scale = range / (2^b - 1), "
                        "stored q and zero offset by -2^(b-1), value (q - zero) * scale"},
      {"activations", recipe.activation_symmetric
                          ? "symmetric per token: scale = amax / (2^(b-1) - 1)"
                          : "asymmetric per token: range [min(x,0), max(x,0)], scale = range / "
                            "(2^b - 1), zero = round(-min / scale), q in [0, 2^b - 1]"},
      {"scale_dtype", std::string(DTypeName(recipe.scale_dtype))},
      {"scale_storage", "weight scales rounded up to scale_dtype before the levels are chosen"},
  };
}

}  // namespace

nlohmann::json BuildQuantizationConfig(const Recipe& recipe, const std::vector<SiteRecord>& sites) {
  nlohmann::json site_map = nlohmann::json::object();
  for (const SiteRecord& site : sites) {
    site_map[SiteKey(site.layer, site.site)] = {
        {"online", site.online},
        {"hadamard", site.hadamard},
        {"block_size", site.block_size},
        {"folded", site.folded},
    };
  }
  return {
      {"quant_method", "compressed-tensors"},
      {"format", "pack-quantized"},
      {"quantization_status", "compressed"},
      {"config_groups",
       {{"group_0",
         {{"targets", {"Linear"}},
          {"weights", WeightScheme(recipe.weights)},
          {"input_activations", ActivationScheme(recipe)}}}}},
      {"ignore", {"lm_head"}},
      {"catq",
       {{"method", std::string(MethodName(recipe.method))},
        {"block_size", recipe.block_size},
        {"damping", recipe.damping},
        {"cat_hadamard", recipe.cat_hadamard},
        {"mixing_seed", recipe.mixing_seed},
        {"normalize_weight_moments", recipe.normalize_weight_moments},
        {"smoothquant_alpha", recipe.smoothquant_alpha},
        {"weight_quantizer", std::string(WeightQuantizerName(recipe.weight_quantizer))},
        {"fold_norm_gains", recipe.fold_norm_gains},
        {"grids", Grids(recipe)},
        {"sites", site_map}}},
  };
}

}  // namespace catq
