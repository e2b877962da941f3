#include "proto/recipe_conversion.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace catq {
namespace {

// Recipe::Validate names core fields ("weights.bits: ..."); the wire names
// them "weight_bits", so the message names what the caller sent.
std::string WireFieldMessage(absl::string_view message) {
  static constexpr std::pair<const char*, const char*> kRenames[] = {
      {"weights.bits", "weight_bits"},
      {"weights.group_size", "weight_group_size"},
      {"weights.symmetric", "weight_symmetric"},
  };
  for (const auto& [core, wire] : kRenames) {
    if (absl::ConsumePrefix(&message, core)) return absl::StrCat("recipe.", wire, message);
  }
  return absl::StrCat("recipe.", message);
}

}  // namespace

v1::Recipe RecipeToProto(const Recipe& recipe) {
  v1::Recipe proto;
  proto.set_method(std::string(MethodName(recipe.method)));
  proto.set_block_size(recipe.block_size);
  proto.set_damping(recipe.damping);
  proto.set_cat_hadamard(recipe.cat_hadamard);
  proto.set_eigen_clip(recipe.eigen_clip);
  proto.set_normalize_weight_moments(recipe.normalize_weight_moments);
  proto.set_mixing_seed(recipe.mixing_seed);
  proto.set_smoothquant_alpha(recipe.smoothquant_alpha);
  proto.set_weight_bits(recipe.weights.bits);
  proto.set_weight_group_size(recipe.weights.group_size);
  proto.set_weight_symmetric(recipe.weights.symmetric);
  proto.set_weight_quantizer(std::string(WeightQuantizerName(recipe.weight_quantizer)));
  proto.set_gptq_damping(recipe.gptq_damping);
  proto.set_gptq_act_order(recipe.gptq_act_order);
  proto.set_activation_bits(recipe.activation_bits);
  proto.set_activation_symmetric(recipe.activation_symmetric);
  proto.set_fold_norm_gains(recipe.fold_norm_gains);
  proto.set_kv_cache_bits(recipe.kv_cache_bits);
  proto.set_kv_cache_hadamard(recipe.kv_cache_hadamard);
  proto.set_scale_dtype(std::string(DTypeName(recipe.scale_dtype)));
  proto.set_online_cost_budget(recipe.online_cost_budget);
  proto.set_average_weight_bits(recipe.average_weight_bits);
  proto.set_average_activation_bits(recipe.average_activation_bits);
  for (const SiteSetting& setting : recipe.site_settings) {
    v1::SiteSetting* out = proto.add_site_settings();
    out->set_layer(setting.layer);
    out->set_site(std::string(SiteName(setting.site)));
    out->set_block_size(setting.block_size);
    out->set_weight_bits(setting.weight_bits);
    out->set_activation_bits(setting.activation_bits);
  }
  return proto;
}

absl::StatusOr<Recipe> RecipeFromProto(const v1::Recipe& proto) {
  Recipe recipe;
  // cat-auto is cat whose block sizes the budget chooses: it needs one.
  const bool cat_auto = proto.method() == kCatAutoMethodName;
  if (cat_auto && !(proto.online_cost_budget() > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("recipe.online_cost_budget: method cat-auto needs a budget > 0, got ",
                     proto.online_cost_budget()));
  }
  if (cat_auto) {
    recipe.method = Method::kCat;
  } else if (!proto.method().empty()) {
    absl::StatusOr<Method> method = ParseMethod(proto.method());
    if (!method.ok())
      return absl::InvalidArgumentError(WireFieldMessage(method.status().message()));
    recipe.method = *method;
  }
  if (!proto.weight_quantizer().empty()) {
    absl::StatusOr<WeightQuantizer> quantizer = ParseWeightQuantizer(proto.weight_quantizer());
    if (!quantizer.ok()) {
      return absl::InvalidArgumentError(WireFieldMessage(quantizer.status().message()));
    }
    recipe.weight_quantizer = *quantizer;
  }
  if (!proto.scale_dtype().empty()) {
    absl::StatusOr<DType> dtype = ParseDType(proto.scale_dtype());
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("recipe.scale_dtype: \"", proto.scale_dtype(),
                                                     "\" is not one of F16, BF16, F32"));
    }
    recipe.scale_dtype = *dtype;
  }
  if (proto.has_block_size()) recipe.block_size = proto.block_size();
  if (proto.has_damping()) recipe.damping = proto.damping();
  if (proto.has_cat_hadamard()) recipe.cat_hadamard = proto.cat_hadamard();
  if (proto.has_eigen_clip()) recipe.eigen_clip = proto.eigen_clip();
  if (proto.has_normalize_weight_moments()) {
    recipe.normalize_weight_moments = proto.normalize_weight_moments();
  }
  if (proto.has_mixing_seed()) recipe.mixing_seed = proto.mixing_seed();
  if (proto.has_smoothquant_alpha()) recipe.smoothquant_alpha = proto.smoothquant_alpha();
  if (proto.has_weight_bits()) recipe.weights.bits = proto.weight_bits();
  if (proto.has_weight_group_size()) recipe.weights.group_size = proto.weight_group_size();
  if (proto.has_weight_symmetric()) recipe.weights.symmetric = proto.weight_symmetric();
  if (proto.has_gptq_damping()) recipe.gptq_damping = proto.gptq_damping();
  if (proto.has_gptq_act_order()) recipe.gptq_act_order = proto.gptq_act_order();
  if (proto.has_activation_bits()) recipe.activation_bits = proto.activation_bits();
  if (proto.has_activation_symmetric()) recipe.activation_symmetric = proto.activation_symmetric();
  if (proto.has_fold_norm_gains()) recipe.fold_norm_gains = proto.fold_norm_gains();
  if (proto.has_kv_cache_bits()) recipe.kv_cache_bits = proto.kv_cache_bits();
  if (proto.has_kv_cache_hadamard()) recipe.kv_cache_hadamard = proto.kv_cache_hadamard();
  if (proto.has_online_cost_budget()) recipe.online_cost_budget = proto.online_cost_budget();
  if (proto.has_average_weight_bits()) recipe.average_weight_bits = proto.average_weight_bits();
  if (proto.has_average_activation_bits()) {
    recipe.average_activation_bits = proto.average_activation_bits();
  }
  for (int i = 0; i < proto.site_settings_size(); ++i) {
    const v1::SiteSetting& in = proto.site_settings(i);
    absl::StatusOr<Site> site = ParseSite(in.site());
    if (!site.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("recipe.site_settings[", i, "].site: \"", in.site(), "\" is not a site"));
    }
    recipe.site_settings.push_back({.layer = in.layer(),
                                    .site = *site,
                                    .block_size = in.block_size(),
                                    .weight_bits = in.weight_bits(),
                                    .activation_bits = in.activation_bits()});
  }
  if (absl::Status valid = recipe.Validate(); !valid.ok()) {
    return absl::InvalidArgumentError(WireFieldMessage(valid.message()));
  }
  return recipe;
}

}  // namespace catq
