#include "core/output/quantized_layer.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/output/output_plan.h"
#include "core/quant/activation_quant.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// Row-major [count, n, n] values as `count` n x n matrices, as the
// evaluation's reader converts the stored blocks.
void AppendBlocks(const TransformTensorF32& tensor, std::vector<Eigen::MatrixXd>& blocks) {
  const int64_t count = tensor.shape.size() == 3 ? tensor.shape[0] : 1;
  const int64_t n = tensor.shape.back();
  for (int64_t b = 0; b < count; ++b) {
    const Eigen::Map<const RowMatrixXf> block(tensor.values.data() + b * n * n, n, n);
    blocks.push_back(block.cast<double>());
  }
}

// The transform the output's stored tensors of the site describe, rebuilt
// from them (not the solver's double-precision one) so that x' = T x has the
// bits evaluation computes.
absl::StatusOr<std::optional<SiteTransform>> StoredTransform(const SiteResult& site, int64_t dim) {
  if (!site.record.online) return std::nullopt;
  std::vector<Eigen::MatrixXd> blocks;
  if (site.online.blocks.has_value()) AppendBlocks(*site.online.blocks, blocks);
  if (site.online.blocks_tail.has_value()) AppendBlocks(*site.online.blocks_tail, blocks);
  std::optional<MixingMatrix> mixing;
  if (site.record.hadamard) {
    std::optional<Eigen::MatrixXd> rot_q;
    if (site.online.rot_q.has_value()) {
      const int64_t q = site.online.rot_q->shape[0];
      rot_q = Eigen::Map<const RowMatrixXf>(site.online.rot_q->values.data(), q, q).cast<double>();
    }
    CATQ_ASSIGN_OR_RETURN(MixingMatrix stored, MixingMatrix::FromStored(dim, std::move(rot_q)));
    mixing = std::move(stored);
  }
  CATQ_ASSIGN_OR_RETURN(SiteTransform transform,
                        SiteTransform::Create(dim, std::move(blocks), std::move(mixing)));
  return std::optional<SiteTransform>(std::move(transform));
}

// The gain the output stores for the norm feeding `site` (see output_plan.h):
// gain x t (or t alone when the gain went into the weights) for a folded
// diagonal, ones when the gains are folded, else the model's gain.
absl::StatusOr<std::shared_ptr<const std::vector<float>>> StoredNormGain(const LlamaModel& model,
                                                                         const Recipe& recipe,
                                                                         int64_t layer, Site site,
                                                                         const SiteResult& result) {
  const std::string name = NormWeightName(layer, *SitePrecedingNorm(site));
  CATQ_ASSIGN_OR_RETURN(std::vector<float> gain, model.GetFloat(name));
  if (result.folded_diagonal.has_value()) {
    CATQ_ASSIGN_OR_RETURN(gain,
                          FoldedNormGain(name, std::move(gain), *result.folded_diagonal, recipe));
  } else if (recipe.fold_norm_gains) {
    gain.assign(gain.size(), 1.0f);
  }
  return std::make_shared<const std::vector<float>>(std::move(gain));
}

}  // namespace

absl::StatusOr<QuantizedLayer> MakeQuantizedLayer(const LlamaModel& model, const Recipe& recipe,
                                                  const LayerResult& result) {
  QuantizedLayer layer;
  layer.layer = result.layer;
  for (Site site : kAllSites) {
    const SiteResult& site_result = result.site(site);
    const std::vector<LinearKind> kinds = LinearsOfSite(site);
    const std::string key = SiteQualifiedName(result.layer, site);
    if (site_result.dequantized.size() != kinds.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": the layer result holds no dequantized linears"));
    }
    for (size_t i = 0; i < kinds.size(); ++i) {
      layer.linears[static_cast<size_t>(kinds[i])] =
          std::make_shared<const RowMatrixXf>(site_result.dequantized[i]);
    }
    absl::StatusOr<std::optional<SiteTransform>> transform =
        StoredTransform(site_result, SiteDim(model.config(), site));
    CATQ_RETURN_IF_ERROR(Prefix(key, transform.status()));
    layer.transforms[static_cast<size_t>(site)] = *std::move(transform);
  }
  CATQ_ASSIGN_OR_RETURN(layer.input_norm, StoredNormGain(model, recipe, result.layer, Site::kAttnIn,
                                                         result.site(Site::kAttnIn)));
  CATQ_ASSIGN_OR_RETURN(
      layer.post_attention_norm,
      StoredNormGain(model, recipe, result.layer, Site::kMlpIn, result.site(Site::kMlpIn)));
  return layer;
}

absl::StatusOr<std::shared_ptr<const RowMatrixXf>> QuantizedLayerWeights::Linear(int64_t layer,
                                                                                 LinearKind kind) {
  if (layer_ == nullptr || layer != layer_->layer) return ModelWeightProvider::Linear(layer, kind);
  return layer_->linears[static_cast<size_t>(kind)];
}

absl::StatusOr<std::shared_ptr<const std::vector<float>>> QuantizedLayerWeights::NormGain(
    int64_t layer, NormKind kind) {
  if (layer_ == nullptr || layer != layer_->layer)
    return ModelWeightProvider::NormGain(layer, kind);
  return kind == NormKind::kInputLayernorm ? layer_->input_norm : layer_->post_attention_norm;
}

QuantizedLayerHook::QuantizedLayerHook(const QuantizedLayer& layer, const Recipe& recipe)
    : layer_(layer), symmetric_(recipe.activation_symmetric) {
  for (Site site : kAllSites) {
    bits_[static_cast<size_t>(site)] = recipe.ForSite(layer.layer, site).activation_bits;
  }
}

absl::Status QuantizedLayerHook::OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> activations) {
  if (call.layer != layer_.layer) return absl::OkStatus();
  if (const std::optional<SiteTransform>& t = layer_.transforms[static_cast<size_t>(call.site)]) {
    CATQ_RETURN_IF_ERROR(t->ApplyToActivations(activations));
  }
  const int bits = bits_[static_cast<size_t>(call.site)];
  if (bits >= kMaxActivationBits) return absl::OkStatus();  // weight-only: float activations
  FakeQuantizeTokens(activations, bits, symmetric_);
  return absl::OkStatus();
}

}  // namespace catq
