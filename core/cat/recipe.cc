#include "core/cat/recipe.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/quant/compressed_tensors_pack.h"

namespace catq {
namespace {

constexpr struct {
  Method method;
  absl::string_view name;
} kMethodNames[] = {
    {Method::kRtn, "rtn"},
    {Method::kSmoothQuant, "smoothquant"},
    {Method::kHadamard, "hadamard"},
    {Method::kCat, "cat"},
};

}  // namespace

absl::string_view MethodName(Method method) {
  for (const auto& entry : kMethodNames) {
    if (entry.method == method) return entry.name;
  }
  return "unknown";
}

absl::StatusOr<Method> ParseMethod(absl::string_view name) {
  for (const auto& entry : kMethodNames) {
    if (entry.name == name) return entry.method;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("method: \"", name, "\" is not one of rtn, smoothquant, hadamard, cat"));
}

absl::string_view WeightQuantizerName(WeightQuantizer quantizer) {
  return quantizer == WeightQuantizer::kGptq ? "gptq" : "rtn";
}

absl::StatusOr<WeightQuantizer> ParseWeightQuantizer(absl::string_view name) {
  if (name == "rtn") return WeightQuantizer::kRtn;
  if (name == "gptq") return WeightQuantizer::kGptq;
  return absl::InvalidArgumentError(
      absl::StrCat("weight_quantizer: \"", name, "\" is not one of rtn, gptq"));
}

int Recipe::BlockSizeFor(int64_t layer, Site site) const {
  for (const SiteSetting& setting : site_settings) {
    if (setting.layer == layer && setting.site == site) return setting.block_size;
  }
  return block_size;
}

Recipe Recipe::ForSite(int64_t layer, Site site) const {
  Recipe site_recipe = *this;
  site_recipe.block_size = BlockSizeFor(layer, site);
  for (const SiteSetting& setting : site_settings) {
    if (setting.layer != layer || setting.site != site) continue;
    if (setting.weight_bits != 0) site_recipe.weights.bits = setting.weight_bits;
    if (setting.activation_bits != 0) site_recipe.activation_bits = setting.activation_bits;
  }
  site_recipe.site_settings.clear();
  site_recipe.online_cost_budget = 0.0;
  site_recipe.average_weight_bits = 0.0;
  site_recipe.average_activation_bits = 0.0;
  return site_recipe;
}

absl::Status Recipe::Validate() const {
  if (block_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("block_size: ", block_size, " must be >= 1"));
  }
  if (!std::isfinite(online_cost_budget) || online_cost_budget < 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("online_cost_budget: ", online_cost_budget, " must be finite and >= 0"));
  }
  for (const auto& [name, average] :
       {std::pair<const char*, double>{"average_weight_bits", average_weight_bits},
        {"average_activation_bits", average_activation_bits}}) {
    if (!std::isfinite(average) || (average != 0.0 && (average < 4.0 || average > 8.0))) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": ", average, " must be in [4, 8] (bits per site are 4, 6 or 8), or 0 for none"));
    }
  }
  // Per-site bits suit every method; per-site block sizes only cat.
  const bool per_site_block_sizes =
      std::any_of(site_settings.begin(), site_settings.end(),
                  [&](const SiteSetting& s) { return s.block_size != block_size; });
  if ((online_cost_budget > 0.0 || per_site_block_sizes) && method != Method::kCat) {
    return absl::InvalidArgumentError(
        absl::StrCat(online_cost_budget > 0.0 ? "online_cost_budget" : "site_settings",
                     ": per-site block sizes need method cat, not ", MethodName(method)));
  }
  std::set<std::pair<int64_t, Site>> seen;
  for (size_t i = 0; i < site_settings.size(); ++i) {
    const SiteSetting& s = site_settings[i];
    const std::string field = absl::StrCat("site_settings[", i, "]");
    if (s.layer < 0) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".layer: ", s.layer, " must be >= 0"));
    }
    if (s.block_size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".block_size: ", s.block_size, " must be >= 1"));
    }
    if (s.weight_bits != 0 && s.weight_bits != 4 && s.weight_bits != 6 && s.weight_bits != 8) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".weight_bits: ", s.weight_bits,
                       " must be 4, 6 or 8, or 0 for the recipe's weights.bits"));
    }
    if (s.activation_bits != 0 && s.activation_bits != 4 && s.activation_bits != 6 &&
        s.activation_bits != 8 && s.activation_bits != 16) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".activation_bits: ", s.activation_bits,
                       " must be 4, 6, 8 or 16, or 0 for the recipe's activation_bits"));
    }
    if (!seen.insert({s.layer, s.site}).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": a second setting for ", SiteQualifiedName(s.layer, s.site)));
    }
  }
  if (!(damping >= 0.0) || damping > 1e6) {
    return absl::InvalidArgumentError(absl::StrCat("damping: ", damping, " must be in [0, 1e6]"));
  }
  if (!(eigen_clip >= 0.0 && eigen_clip < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("eigen_clip: ", eigen_clip, " must be in [0, 1)"));
  }
  if (!(gptq_damping >= 0.0) || gptq_damping > 1e6) {
    return absl::InvalidArgumentError(
        absl::StrCat("gptq_damping: ", gptq_damping, " must be in [0, 1e6]"));
  }
  if (!(smoothquant_alpha >= 0.0 && smoothquant_alpha <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("smoothquant_alpha: ", smoothquant_alpha, " must be in [0, 1]"));
  }
  if (absl::Status weights_ok = weights.Validate(); !weights_ok.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("weights.", weights_ok.message()));
  }
  if (!IsExactPackedWidth(weights.bits)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weights.bits: ", weights.bits, " is not stored by the pack-quantized output (4, 6 or 8)"));
  }
  if (activation_bits != 16 && (activation_bits < 2 || activation_bits > 8)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "activation_bits: ", activation_bits, " must be in [2, 8], or 16 for no quantization"));
  }
  if (kv_cache_bits != 4 && kv_cache_bits != 8 && kv_cache_bits != 16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv_cache_bits: ", kv_cache_bits, " must be 4 or 8, or 16 for a floating-point cache"));
  }
  if (scale_dtype != DType::kF16 && scale_dtype != DType::kBF16 && scale_dtype != DType::kF32) {
    return absl::InvalidArgumentError("scale_dtype: must be F16, BF16 or F32");
  }
  return absl::OkStatus();
}

}  // namespace catq
