// File: core/output/quantized_layer.h
//
// QuantizedLayer: one layer's LayerResult in memory, as the forward pass
// computes with it: what evaluation (core/eval) reads back from a stored
// output for that layer, without writing one. Its linears are what the packed
// weights decode to (SiteResult::dequantized); its norm gains are what the
// output stores (ones where the gains were folded into the weights, gain x t
// where a diagonal transform folded into the norm, the model's own
// otherwise); its online transforms are built from the stored F32 tensors as
// core/eval/online_transform_reader.h builds them. QuantizedLayerWeights and
// QuantizedLayerHook then run the layer as OnlineQuantizationHook and
// QuantizedWeightProvider run the stored output: x' = T x, the activation
// grid of the recipe, then the linears.
//
//   CATQ_ASSIGN_OR_RETURN(LayerResult result,
//                         QuantizeLayer(model, recipe, l, data, {.keep_dequantized = true}));
//   CATQ_ASSIGN_OR_RETURN(QuantizedLayer layer, MakeQuantizedLayer(model, recipe, result));
//   QuantizedLayerWeights weights(model);
//   weights.Set(&layer);
//   QuantizedLayerHook hook(layer, recipe);
//   options.weights = &weights;
//   options.hooks = {&hook};
//   CATQ_RETURN_IF_ERROR(AdvanceLayer(model, l, hidden, options));
//
// Thread-safety: a QuantizedLayer is immutable; the provider and the hook
// are thread-safe as long as Set is not called during a forward pass.
#ifndef CATQ_CORE_OUTPUT_QUANTIZED_LAYER_H_
#define CATQ_CORE_OUTPUT_QUANTIZED_LAYER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/recipe.h"
#include "core/cat/site_transform.h"
#include "core/model/llama_forward.h"
#include "core/model/llama_model.h"
#include "core/output/layer_quantizer.h"

namespace catq {

struct QuantizedLayer {
  int64_t layer = 0;
  // By LinearKind: [out, in], what the stored packed weights decode to.
  std::array<std::shared_ptr<const RowMatrixXf>, kAllLinearKinds.size()> linears;
  // input_layernorm, post_attention_layernorm: the stored gains.
  std::shared_ptr<const std::vector<float>> input_norm;
  std::shared_ptr<const std::vector<float>> post_attention_norm;
  // By Site: the online transform, or nullopt where the site has none.
  std::array<std::optional<SiteTransform>, kAllSites.size()> transforms;
};

// MakeQuantizedLayer: the layer `result` describes. InvalidArgument when a
// site's result lacks its dequantized linears (QuantizeLayer without
// keep_dequantized); errors of the norm tensors (named) and of the stored
// transform tensors (named by site).
absl::StatusOr<QuantizedLayer> MakeQuantizedLayer(const LlamaModel& model, const Recipe& recipe,
                                                  const LayerResult& result);

// QuantizedLayerWeights: the model's weights (ModelWeightProvider) with the
// linears and norm gains of the layer set by Set replaced by its quantized
// ones.
class QuantizedLayerWeights : public ModelWeightProvider {
 public:
  using ModelWeightProvider::ModelWeightProvider;

  // Set: the quantized layer served from now on (null: none). Not owned.
  void Set(const QuantizedLayer* layer) { layer_ = layer; }

  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Linear(int64_t layer,
                                                            LinearKind kind) override;
  absl::StatusOr<std::shared_ptr<const std::vector<float>>> NormGain(int64_t layer,
                                                                     NormKind kind) override;

 private:
  const QuantizedLayer* layer_ = nullptr;
};

// QuantizedLayerHook: at the sites of `layer` (other layers pass unchanged),
// the online transform, then per-token fake quantization at the site's
// activation bits (recipe.ForSite(...).activation_bits; none at 16),
// symmetric when recipe.activation_symmetric.
class QuantizedLayerHook : public SiteHook {
 public:
  QuantizedLayerHook(const QuantizedLayer& layer, const Recipe& recipe);
  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> activations) override;

 private:
  const QuantizedLayer& layer_;
  std::array<int, kAllSites.size()> bits_{};  // per site, in kAllSites order
  const bool symmetric_;
};

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_QUANTIZED_LAYER_H_
