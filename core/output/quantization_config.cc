#include "core/output/quantization_config.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/model/llama_weights.h"
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

// The K/V cache scheme in compressed-tensors' QuantizationArgs form: each
// cached key (after RoPE) or value is quantized per token and KV head, i.e. in
// dynamic groups of head_dim along the cached vector, asymmetric. (The
// "attn_head" strategy would mean one static scale per head over all tokens,
// not this grid.) The Hadamard rotation of each head is catq's own and is
// recorded in catq.kv_cache_hadamard. null when the cache stays float.
nlohmann::json KvCacheScheme(const Recipe& recipe, int64_t head_dim) {
  if (recipe.kv_cache_bits >= 16) return nullptr;
  return {
      {"num_bits", recipe.kv_cache_bits},
      {"type", "int"},
      {"symmetric", false},
      {"strategy", "group"},
      {"group_size", head_dim},
      {"dynamic", true},
      {"observer", nullptr},
  };
}

// The exact grids, in words, so a reader can reproduce every value.
nlohmann::json Grids(const Recipe& recipe) {
  nlohmann::json grids = {
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
  if (recipe.kv_cache_bits < 16) {
    grids["kv_cache"] =
        "asymmetric per token and KV head (group = head_dim) as the activations, on keys after "
        "RoPE and on values; with kv_cache_hadamard each head is first rotated by the normalized "
        "Hadamard of head_dim (FWHT for a power of two, else H_(2^a) (x) Q_q seeded by "
        "mixing_seed) and rotated back after the grid, which equals rotating the queries too";
  }
  return grids;
}

// Whether any site's weight or activation bits differ from the recipe's.
bool HasMixedPrecision(const Recipe& recipe) {
  for (const SiteSetting& setting : recipe.site_settings) {
    const Recipe site = recipe.ForSite(setting.layer, setting.site);
    if (site.weights.bits != recipe.weights.bits ||
        site.activation_bits != recipe.activation_bits) {
      return true;
    }
  }
  return false;
}

// compressed-tensors' config_groups: one group of every Linear at the
// recipe's bits, or under mixed precision one group per distinct (weight
// bits, activation bits), ordered by them, whose targets name its modules, so
// that a standard loader gives each linear its own scheme. The linears of a
// site share its bits (they read the same quantized activations).
nlohmann::json ConfigGroups(const Recipe& recipe, const std::vector<SiteRecord>& sites) {
  if (!HasMixedPrecision(recipe)) {
    return {{"group_0",
             {{"targets", {"Linear"}},
              {"weights", WeightScheme(recipe.weights)},
              {"input_activations", ActivationScheme(recipe)}}}};
  }
  std::map<std::pair<int, int>, std::vector<std::string>> modules_by_bits;
  for (const SiteRecord& record : sites) {
    const absl::StatusOr<Site> site = ParseSite(record.site);
    if (!site.ok()) continue;  // The assembler writes only valid site names.
    const Recipe site_recipe = recipe.ForSite(record.layer, *site);
    std::vector<std::string>& modules =
        modules_by_bits[{site_recipe.weights.bits, site_recipe.activation_bits}];
    for (LinearKind kind : SiteLinears(*site)) {
      modules.push_back(LinearModuleName(record.layer, kind));
    }
  }
  nlohmann::json groups = nlohmann::json::object();
  int index = 0;
  for (auto& [bits, modules] : modules_by_bits) {
    std::sort(modules.begin(), modules.end());
    Recipe group_recipe = recipe;
    group_recipe.weights.bits = bits.first;
    group_recipe.activation_bits = bits.second;
    groups[absl::StrCat("group_", index++)] = {
        {"targets", modules},
        {"weights", WeightScheme(group_recipe.weights)},
        {"input_activations", ActivationScheme(group_recipe)},
    };
  }
  return groups;
}

}  // namespace

nlohmann::json BuildQuantizationConfig(const Recipe& recipe, const std::vector<SiteRecord>& sites,
                                       int64_t head_dim) {
  const bool mixed = HasMixedPrecision(recipe);
  nlohmann::json site_map = nlohmann::json::object();
  for (const SiteRecord& site : sites) {
    nlohmann::json& entry = site_map[SiteKey(site.layer, site.site)];
    entry = {
        {"online", site.online},
        {"hadamard", site.hadamard},
        {"block_size", site.block_size},
        {"folded", site.folded},
    };
    // Mixed precision: each site's bits beside its transform (config_groups
    // holds the same per module).
    if (const absl::StatusOr<Site> parsed = ParseSite(site.site); mixed && parsed.ok()) {
      const Recipe site_recipe = recipe.ForSite(site.layer, *parsed);
      entry["weight_bits"] = site_recipe.weights.bits;
      entry["activation_bits"] = site_recipe.activation_bits;
    }
  }
  nlohmann::json config = {
      {"quant_method", "compressed-tensors"},
      {"format", "pack-quantized"},
      {"quantization_status", "compressed"},
      {"config_groups", ConfigGroups(recipe, sites)},
      {"ignore", {"lm_head"}},
      {"kv_cache_scheme", KvCacheScheme(recipe, head_dim)},
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
        {"kv_cache_hadamard", recipe.kv_cache_hadamard},
        {"grids", Grids(recipe)},
        {"sites", site_map}}},
  };
  // cat-auto: each site's chosen k is in `sites`; the budget it was chosen
  // under is recorded only then, so fixed-k configs stay as they were.
  if (recipe.is_auto()) config["catq"]["online_cost_budget"] = recipe.online_cost_budget;
  // Mixed precision: the averages the per-site bits were chosen under.
  if (recipe.allocates_bits()) {
    config["catq"]["average_weight_bits"] = recipe.average_weight_bits;
    config["catq"]["average_activation_bits"] = recipe.average_activation_bits;
  }
  return config;
}

}  // namespace catq
