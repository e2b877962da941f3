#include "core/model/llama_weights.h"

#include "absl/strings/str_cat.h"

namespace catq {
namespace {

constexpr LinearKind kAttnInLinears[] = {LinearKind::kQProj, LinearKind::kKProj,
                                         LinearKind::kVProj};
constexpr LinearKind kAttnOutLinears[] = {LinearKind::kOProj};
constexpr LinearKind kMlpInLinears[] = {LinearKind::kGateProj, LinearKind::kUpProj};
constexpr LinearKind kMlpOutLinears[] = {LinearKind::kDownProj};

std::string LayerPrefix(int64_t layer) { return absl::StrCat("model.layers.", layer, "."); }

}  // namespace

absl::string_view LinearKindName(LinearKind kind) {
  switch (kind) {
    case LinearKind::kQProj:
      return "q_proj";
    case LinearKind::kKProj:
      return "k_proj";
    case LinearKind::kVProj:
      return "v_proj";
    case LinearKind::kOProj:
      return "o_proj";
    case LinearKind::kGateProj:
      return "gate_proj";
    case LinearKind::kUpProj:
      return "up_proj";
    case LinearKind::kDownProj:
      return "down_proj";
  }
  return "unknown_proj";
}

absl::string_view LinearModulePath(LinearKind kind) {
  switch (kind) {
    case LinearKind::kQProj:
      return "self_attn.q_proj";
    case LinearKind::kKProj:
      return "self_attn.k_proj";
    case LinearKind::kVProj:
      return "self_attn.v_proj";
    case LinearKind::kOProj:
      return "self_attn.o_proj";
    case LinearKind::kGateProj:
      return "mlp.gate_proj";
    case LinearKind::kUpProj:
      return "mlp.up_proj";
    case LinearKind::kDownProj:
      return "mlp.down_proj";
  }
  return "unknown.unknown_proj";
}

std::string LinearModuleName(int64_t layer, LinearKind kind) {
  return absl::StrCat(LayerPrefix(layer), LinearModulePath(kind));
}

std::string LinearWeightName(int64_t layer, LinearKind kind) {
  return absl::StrCat(LinearModuleName(layer, kind), ".weight");
}

MatrixShape LinearShape(const LlamaConfig& config, LinearKind kind) {
  const int64_t d = config.hidden_size;
  switch (kind) {
    case LinearKind::kQProj:
    case LinearKind::kOProj:
      return {d, d};
    case LinearKind::kKProj:
    case LinearKind::kVProj:
      return {config.kv_dim(), d};
    case LinearKind::kGateProj:
    case LinearKind::kUpProj:
      return {config.intermediate_size, d};
    case LinearKind::kDownProj:
      return {d, config.intermediate_size};
  }
  return {};
}

std::string NormWeightName(int64_t layer, NormKind kind) {
  return absl::StrCat(LayerPrefix(layer), kind == NormKind::kInputLayernorm
                                              ? "input_layernorm.weight"
                                              : "post_attention_layernorm.weight");
}

absl::string_view SiteName(Site site) {
  switch (site) {
    case Site::kAttnIn:
      return "attn_in";
    case Site::kAttnOut:
      return "attn_out";
    case Site::kMlpIn:
      return "mlp_in";
    case Site::kMlpOut:
      return "mlp_out";
  }
  return "unknown_site";
}

absl::StatusOr<Site> ParseSite(absl::string_view name) {
  for (Site site : kAllSites) {
    if (SiteName(site) == name) return site;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown site \"", name, "\" (expected attn_in, attn_out, mlp_in or mlp_out)"));
}

absl::Span<const LinearKind> SiteLinears(Site site) {
  switch (site) {
    case Site::kAttnIn:
      return kAttnInLinears;
    case Site::kAttnOut:
      return kAttnOutLinears;
    case Site::kMlpIn:
      return kMlpInLinears;
    case Site::kMlpOut:
      return kMlpOutLinears;
  }
  return {};
}

Site SiteOfLinear(LinearKind kind) {
  switch (kind) {
    case LinearKind::kQProj:
    case LinearKind::kKProj:
    case LinearKind::kVProj:
      return Site::kAttnIn;
    case LinearKind::kOProj:
      return Site::kAttnOut;
    case LinearKind::kGateProj:
    case LinearKind::kUpProj:
      return Site::kMlpIn;
    case LinearKind::kDownProj:
      return Site::kMlpOut;
  }
  return Site::kAttnIn;
}

std::optional<NormKind> SitePrecedingNorm(Site site) {
  switch (site) {
    case Site::kAttnIn:
      return NormKind::kInputLayernorm;
    case Site::kMlpIn:
      return NormKind::kPostAttentionLayernorm;
    case Site::kAttnOut:
    case Site::kMlpOut:
      return std::nullopt;
  }
  return std::nullopt;
}

int64_t SiteDim(const LlamaConfig& config, Site site) {
  return site == Site::kMlpOut ? config.intermediate_size : config.hidden_size;
}

std::string SiteQualifiedName(int64_t layer, Site site) {
  return absl::StrCat(LayerPrefix(layer), SiteName(site));
}

std::vector<ExpectedTensor> ExpectedLlamaTensors(const LlamaConfig& config) {
  const int64_t d = config.hidden_size;
  std::vector<ExpectedTensor> out;
  out.reserve(static_cast<size_t>(config.num_hidden_layers) * 9 + 3);
  out.push_back({kEmbedTokensName, {config.vocab_size, d}});
  auto add_linear = [&](int64_t layer, LinearKind kind) {
    const MatrixShape shape = LinearShape(config, kind);
    out.push_back({LinearWeightName(layer, kind), {shape.rows, shape.cols}});
  };
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    out.push_back({NormWeightName(layer, NormKind::kInputLayernorm), {d}});
    for (LinearKind kind : kAttnInLinears) add_linear(layer, kind);
    add_linear(layer, LinearKind::kOProj);
    out.push_back({NormWeightName(layer, NormKind::kPostAttentionLayernorm), {d}});
    for (LinearKind kind : kMlpInLinears) add_linear(layer, kind);
    add_linear(layer, LinearKind::kDownProj);
  }
  out.push_back({kFinalNormName, {d}});
  if (!config.tie_word_embeddings) out.push_back({kLmHeadName, {config.vocab_size, d}});
  return out;
}

}  // namespace catq
