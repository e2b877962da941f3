// File: core/model/llama_weights.h
//
// The tensors of a Hugging Face LlamaForCausalLM checkpoint: their names, their
// shapes from the config, the seven linears of a layer and the four activation
// sites that feed them. Every other part of catq takes names from here.
//
//   for (LinearKind kind : kAllLinearKinds) {
//     std::string name = LinearWeightName(layer, kind);  // "model.layers.3.mlp.up_proj.weight"
//     MatrixShape shape = LinearShape(config, kind);     // {out, in}
//   }
//   for (LinearKind kind : SiteLinears(Site::kMlpIn)) ...  // gate_proj, up_proj
//
// A layer computes, with n(x) = x / rms(x):
//   attn_in  = input_layernorm.weight * n(h)          -> q_proj, k_proj, v_proj
//   attn_out = softmax(RoPE(q) RoPE(k)^T / sqrt(hd)) v -> o_proj;   h += o_proj(attn_out)
//   mlp_in   = post_attention_layernorm.weight * n(h) -> gate_proj, up_proj
//   mlp_out  = silu(gate_proj(mlp_in)) * up_proj(mlp_in) -> down_proj; h += down_proj(mlp_out)
//
// Thread-safety: everything here is a pure function of its arguments.
#ifndef CATQ_CORE_MODEL_LLAMA_WEIGHTS_H_
#define CATQ_CORE_MODEL_LLAMA_WEIGHTS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/model/llama_config.h"

namespace catq {

inline constexpr char kEmbedTokensName[] = "model.embed_tokens.weight";  // [vocab, hidden]
inline constexpr char kFinalNormName[] = "model.norm.weight";            // [hidden]
inline constexpr char kLmHeadName[] = "lm_head.weight";                  // [vocab, hidden]

// The seven linear layers of a decoder layer, in checkpoint order.
enum class LinearKind : uint8_t { kQProj, kKProj, kVProj, kOProj, kGateProj, kUpProj, kDownProj };
inline constexpr std::array<LinearKind, 7> kAllLinearKinds = {
    LinearKind::kQProj,    LinearKind::kKProj,  LinearKind::kVProj,   LinearKind::kOProj,
    LinearKind::kGateProj, LinearKind::kUpProj, LinearKind::kDownProj};

// LinearKindName: "q_proj", "k_proj", ..., "down_proj".
absl::string_view LinearKindName(LinearKind kind);
// LinearModulePath: the path inside a layer, "self_attn.q_proj" or "mlp.up_proj".
absl::string_view LinearModulePath(LinearKind kind);
// LinearModuleName: "model.layers.{layer}.self_attn.q_proj" (the `<m>` that
// quantized outputs suffix with ".weight_packed", ".weight_scale", ...).
std::string LinearModuleName(int64_t layer, LinearKind kind);
// LinearWeightName: LinearModuleName(layer, kind) + ".weight".
std::string LinearWeightName(int64_t layer, LinearKind kind);

// A row-major matrix shape as PyTorch stores a linear weight: [out, in].
struct MatrixShape {
  int64_t rows = 0;  // Output features.
  int64_t cols = 0;  // Input features.
  friend bool operator==(const MatrixShape&, const MatrixShape&) = default;
};

// LinearShape: q_proj [hidden, hidden], k_proj and v_proj [kv_dim, hidden],
// o_proj [hidden, hidden], gate_proj and up_proj [intermediate, hidden],
// down_proj [hidden, intermediate].
MatrixShape LinearShape(const LlamaConfig& config, LinearKind kind);

// The two RMSNorms of a layer.
enum class NormKind : uint8_t { kInputLayernorm, kPostAttentionLayernorm };
// NormWeightName: "model.layers.{layer}.input_layernorm.weight" or
// "model.layers.{layer}.post_attention_layernorm.weight"; shape [hidden].
std::string NormWeightName(int64_t layer, NormKind kind);

// The four activation sites of a layer: the inputs of its linears.
enum class Site : uint8_t { kAttnIn, kAttnOut, kMlpIn, kMlpOut };
inline constexpr std::array<Site, 4> kAllSites = {Site::kAttnIn, Site::kAttnOut, Site::kMlpIn,
                                                  Site::kMlpOut};

// SiteName: "attn_in", "attn_out", "mlp_in", "mlp_out".
absl::string_view SiteName(Site site);
// ParseSite: the inverse of SiteName; InvalidArgument naming `name` otherwise.
absl::StatusOr<Site> ParseSite(absl::string_view name);
// SiteLinears: the linears that read the site (attn_in: q, k, v; attn_out: o;
// mlp_in: gate, up; mlp_out: down).
absl::Span<const LinearKind> SiteLinears(Site site);
// SiteOfLinear: the site a linear reads.
Site SiteOfLinear(LinearKind kind);
// SitePrecedingNorm: the RMSNorm whose output the site is (attn_in:
// input_layernorm, mlp_in: post_attention_layernorm); nullopt for attn_out and
// mlp_out, which no norm precedes.
std::optional<NormKind> SitePrecedingNorm(Site site);
// SiteDim: the width of the site's activations, the `in` of its linears
// (hidden_size for attn_in, attn_out and mlp_in; intermediate_size for mlp_out).
int64_t SiteDim(const LlamaConfig& config, Site site);
// SiteQualifiedName: "model.layers.{layer}.{site}", the key of a site in
// quantization_config.catq.sites.
std::string SiteQualifiedName(int64_t layer, Site site);

// A tensor a checkpoint must hold.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};

// ExpectedLlamaTensors
//
// Every tensor of the checkpoint, in the order catq writes them: the embedding;
// per layer input_layernorm, q, k, v, o, post_attention_layernorm, gate, up,
// down; the final norm; lm_head unless config.tie_word_embeddings.
// REQUIRES: ValidateLlamaConfig(config).ok().
std::vector<ExpectedTensor> ExpectedLlamaTensors(const LlamaConfig& config);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_LLAMA_WEIGHTS_H_
