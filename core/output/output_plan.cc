#include "core/output/output_plan.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/cat/calibration.h"
#include "core/output/packed_linear.h"
#include "core/output/site_quantizer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// The norm whose gain a linear's input carries, by weight name; folded norms
// are written as ones.
absl::flat_hash_set<std::string> FoldedNormNames(const LlamaConfig& config) {
  absl::flat_hash_set<std::string> names;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    names.insert(NormWeightName(layer, NormKind::kInputLayernorm));
    names.insert(NormWeightName(layer, NormKind::kPostAttentionLayernorm));
  }
  return names;
}

// Maps "model.layers.{i}.<path>.weight" back to its layer and linear kind.
struct LinearIndex {
  absl::flat_hash_map<std::string, std::pair<int64_t, LinearKind>> by_weight_name;
};

LinearIndex IndexLinears(const LlamaConfig& config) {
  LinearIndex index;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      index.by_weight_name[LinearWeightName(layer, kind)] = {layer, kind};
    }
  }
  return index;
}

OutputItem CopyItem(const TensorInfo& info, OutputSource source) {
  OutputItem item;
  item.source = source;
  item.name = info.name;
  item.specs.push_back({info.name, info.dtype, info.shape});
  return item;
}

// The online transform items of `layer`'s sites, where the method stores any.
absl::Status AppendOnlineTransformItems(const LlamaModel& model, const Recipe& recipe,
                                        int64_t layer, OutputPlan& plan) {
  const LlamaConfig& config = model.config();
  for (Site site : kAllSites) {
    OutputItem item;
    item.source = OutputSource::kOnlineTransform;
    item.name = SiteQualifiedName(layer, site);
    item.layer = layer;
    item.site = site;
    CATQ_ASSIGN_OR_RETURN(const bool folded, SiteIsFolded(model, recipe, layer, site));
    CATQ_ASSIGN_OR_RETURN(
        item.specs, PlanSiteTransformSpecs(recipe, layer, site, SiteDim(config, site), folded));
    if (!item.specs.empty()) plan.items.push_back(std::move(item));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bool> SiteIsFolded(const LlamaModel& model, const Recipe& recipe, int64_t layer,
                                  Site site) {
  if (!recipe.site_settings.empty()) {
    return SiteIsFolded(model, recipe.ForSite(layer, site), layer, site);
  }
  if (const std::optional<NormKind> norm = SitePrecedingNorm(site); norm.has_value()) {
    CATQ_RETURN_IF_ERROR(model.tensors().Info(NormWeightName(layer, *norm)).status());
  }
  return SiteFoldsDiagonal(recipe, model.config(), site);
}

std::vector<TensorSpec> OutputPlan::TensorSpecs() const {
  std::vector<TensorSpec> specs;
  for (const OutputItem& item : items)
    specs.insert(specs.end(), item.specs.begin(), item.specs.end());
  return specs;
}

int64_t OutputPlan::NumPackedLinears() const {
  return std::count_if(items.begin(), items.end(), [](const OutputItem& item) {
    return item.source == OutputSource::kPackedLinear;
  });
}

absl::StatusOr<OutputPlan> PlanOutput(const LlamaModel& model, const Recipe& recipe) {
  CATQ_RETURN_IF_ERROR(CheckPackable(recipe.weights, recipe.scale_dtype));
  const LlamaConfig& config = model.config();
  const LinearIndex linears = IndexLinears(config);
  const absl::flat_hash_set<std::string> folded =
      recipe.fold_norm_gains ? FoldedNormNames(config) : absl::flat_hash_set<std::string>();

  std::vector<std::string> order;
  absl::flat_hash_set<std::string> known;
  for (const ExpectedTensor& expected : ExpectedLlamaTensors(config)) {
    order.push_back(expected.name);
    known.insert(expected.name);
  }
  std::vector<std::string> extras;
  for (const std::string& name : model.tensors().TensorNames()) {
    if (!known.contains(name)) extras.push_back(name);
  }
  std::sort(extras.begin(), extras.end());
  order.insert(order.end(), extras.begin(), extras.end());

  // The norms feeding attn_in and mlp_in, by weight name.
  absl::flat_hash_map<std::string, std::pair<int64_t, Site>> norms;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (Site site : {Site::kAttnIn, Site::kMlpIn}) {
      norms[NormWeightName(layer, *SitePrecedingNorm(site))] = {layer, site};
    }
  }
  OutputPlan plan;
  for (const std::string& name : order) {
    CATQ_ASSIGN_OR_RETURN(const TensorInfo* info, model.tensors().Info(name));
    auto linear = linears.by_weight_name.find(name);
    if (linear != linears.by_weight_name.end()) {
      OutputItem item;
      item.source = OutputSource::kPackedLinear;
      item.name = LinearModuleName(linear->second.first, linear->second.second);
      item.layer = linear->second.first;
      item.linear = linear->second.second;
      // Mixed precision: the weights' bits are those of the site they read.
      const WeightQuantOptions weights =
          recipe.ForSite(item.layer, SiteOfLinear(item.linear)).weights;
      CATQ_RETURN_IF_ERROR(Prefix(item.name, CheckPackable(weights, recipe.scale_dtype)));
      item.specs =
          PackedLinearSpecs(item.name, info->shape[0], info->shape[1], weights, recipe.scale_dtype);
      const int64_t layer = item.layer;
      const bool last_of_layer = item.linear == kAllLinearKinds.back();
      plan.items.push_back(std::move(item));
      if (last_of_layer)
        CATQ_RETURN_IF_ERROR(AppendOnlineTransformItems(model, recipe, layer, plan));
    } else if (auto norm = norms.find(name); norm != norms.end()) {
      CATQ_ASSIGN_OR_RETURN(const bool site_folded,
                            SiteIsFolded(model, recipe, norm->second.first, norm->second.second));
      OutputItem item = CopyItem(*info, site_folded             ? OutputSource::kFoldedGain
                                        : folded.contains(name) ? OutputSource::kUnitGain
                                                                : OutputSource::kCopy);
      // gain x t in F32 whatever the model's norm dtype: rounded to F16 or
      // BF16 it would no longer match the W T^-1 of the linears it feeds.
      if (site_folded) item.specs[0].dtype = DType::kF32;
      item.layer = norm->second.first;
      item.site = norm->second.second;
      plan.items.push_back(std::move(item));
    } else {
      plan.items.push_back(CopyItem(*info, OutputSource::kCopy));
    }
  }
  return plan;
}

absl::StatusOr<std::vector<float>> FoldedNormGain(const std::string& name, std::vector<float> gain,
                                                  const Eigen::VectorXd& t, const Recipe& recipe) {
  if (t.size() != static_cast<int64_t>(gain.size())) {
    return absl::InternalError(
        absl::StrCat(name, ": ", t.size(), " folded scales for ", gain.size(), " channels"));
  }
  for (size_t j = 0; j < gain.size(); ++j) {
    const double g = recipe.fold_norm_gains ? 1.0 : gain[j];
    gain[j] = static_cast<float>(g * t[static_cast<int64_t>(j)]);
  }
  return gain;
}

}  // namespace catq
