// File: core/output/output_plan.h
//
// The list of every tensor an output directory will hold, in write order,
// computed from the input model's shapes and the recipe before any weight is
// read. A sharded writer needs all specs up front (the safetensors header
// comes first), and the plan is what lets it stream one linear at a time.
//
//   CATQ_ASSIGN_OR_RETURN(OutputPlan plan, PlanOutput(model, recipe));
//   for (const OutputItem& item : plan.items) { ...produce item.specs' bytes... }
//
// Plain data.
#ifndef CATQ_CORE_OUTPUT_OUTPUT_PLAN_H_
#define CATQ_CORE_OUTPUT_OUTPUT_PLAN_H_

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/recipe.h"
#include "core/model/llama_model.h"
#include "core/model/llama_weights.h"
#include "core/tensor/safetensors_writer.h"

namespace catq {

enum class OutputSource {
  kCopy,             // The input tensor, bytes unchanged.
  kUnitGain,         // A norm whose gain was folded into the next linears: ones.
  kPackedLinear,     // A quantized linear in pack-quantized layout.
  kOnlineTransform,  // The stored factors of one site's online transform.
  kFoldedGain,       // A norm gain times the diagonal T of the site it feeds.
};

struct OutputItem {
  OutputSource source = OutputSource::kCopy;
  // kCopy, kUnitGain: the input tensor's name. kPackedLinear: the module name
  // (the weight's name without ".weight").
  std::string name;
  int64_t layer = -1;                      // kPackedLinear, kOnlineTransform.
  LinearKind linear = LinearKind::kQProj;  // kPackedLinear only.
  Site site = Site::kAttnIn;               // kOnlineTransform, kFoldedGain.
  std::vector<TensorSpec> specs;           // What this item writes, in order.
};

struct OutputPlan {
  std::vector<OutputItem> items;
  // All specs of all items, in order.
  std::vector<TensorSpec> TensorSpecs() const;
  int64_t NumPackedLinears() const;
};

// Every tensor of `model` appears once: linears packed, norms before attn_in
// and mlp_in as ones when recipe.fold_norm_gains, everything else copied.
// After a layer's last linear come the online transform tensors of its sites
// (architecture.md section 4), when the method has any; a norm whose site
// folds its diagonal T is written as gain times t in F32 (kFoldedGain),
// whatever dtype the model stores that norm in.
// Tensors the Llama layout does not name (e.g. rotary caches) are copied after
// the known ones, sorted by name. Errors: a recipe the output cannot store.
// FoldedNormGain: what a kFoldedGain norm stores, `gain` times the folded
// diagonal `t` channel by channel, or t alone when the recipe folded the gain
// itself into the next linears. Internal naming `name` when the sizes differ.
absl::StatusOr<std::vector<float>> FoldedNormGain(const std::string& name, std::vector<float> gain,
                                                  const Eigen::VectorXd& t, const Recipe& recipe);

// SiteIsFolded: whether `recipe` folds the diagonal T of (layer, site) into
// its producer (SiteFoldsDiagonal). Errors: the norm feeding it is missing.
absl::StatusOr<bool> SiteIsFolded(const LlamaModel& model, const Recipe& recipe, int64_t layer,
                                  Site site);

absl::StatusOr<OutputPlan> PlanOutput(const LlamaModel& model, const Recipe& recipe);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_OUTPUT_PLAN_H_
