#include "core/eval/evaluate.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// The options of a QuantizedForward, minus the pointers it sets itself.
ForwardOptions WithQuantizedModel(const ForwardOptions& base, WeightProvider* weights,
                                  SiteHook* hook, KvCacheHook* kv_hook) {
  ForwardOptions options = base;
  options.weights = weights;
  options.hooks.insert(options.hooks.begin(), hook);
  if (kv_hook != nullptr) options.kv_hooks.insert(options.kv_hooks.begin(), kv_hook);
  return options;
}

std::optional<KvCacheQuantizer> KvCacheOf(const QuantizedModel& model) {
  if (const KvCacheQuantizer* quantizer = model.kv_cache_quantizer()) return *quantizer;
  return std::nullopt;
}

absl::Status CheckNoProvider(const ForwardOptions& options) {
  if (options.weights != nullptr) {
    return absl::InvalidArgumentError(
        "ForwardOptions.weights: a quantized model brings its own weight provider; leave it null");
  }
  return absl::OkStatus();
}

}  // namespace

QuantizedForward::QuantizedForward(const QuantizedModel& model, const ForwardOptions& base)
    : weights_(model, base.cache_limit_bytes),
      hook_(model),
      kv_cache_(KvCacheOf(model)),
      options_(WithQuantizedModel(base, &weights_, &hook_, kv_cache_ ? &*kv_cache_ : nullptr)) {}

absl::Status CheckSameArchitecture(const LlamaConfig& reference, const LlamaConfig& quantized) {
  const std::pair<const char*, std::pair<int64_t, int64_t>> fields[] = {
      {"hidden_size", {reference.hidden_size, quantized.hidden_size}},
      {"intermediate_size", {reference.intermediate_size, quantized.intermediate_size}},
      {"num_hidden_layers", {reference.num_hidden_layers, quantized.num_hidden_layers}},
      {"num_attention_heads", {reference.num_attention_heads, quantized.num_attention_heads}},
      {"num_key_value_heads", {reference.num_key_value_heads, quantized.num_key_value_heads}},
      {"vocab_size", {reference.vocab_size, quantized.vocab_size}},
      {"max_position_embeddings",
       {reference.max_position_embeddings, quantized.max_position_embeddings}},
  };
  for (const auto& [name, values] : fields) {
    if (values.first != values.second) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": the quantized model has ", values.second, ", the reference ", values.first));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PerplexityResult> EvaluateQuantizedPerplexity(
    const QuantizedModel& model, const std::vector<std::vector<int32_t>>& documents,
    const ForwardOptions& options) {
  CATQ_RETURN_IF_ERROR(CheckNoProvider(options));
  const QuantizedForward forward(model, options);
  return EvaluatePerplexity(model.model(), documents, forward.options());
}

absl::StatusOr<KlDivergenceResult> CompareQuantizedToReference(
    const LlamaModel& reference, const QuantizedModel& quantized,
    const std::vector<std::vector<int32_t>>& documents, const ForwardOptions& options,
    const KlOptions& kl_options) {
  CATQ_RETURN_IF_ERROR(CheckNoProvider(options));
  CATQ_RETURN_IF_ERROR(CheckSameArchitecture(reference.config(), quantized.config()));
  // One provider for all of KlDivergence's groups, so that a model small
  // enough to cache is converted to float once, not once per group.
  ModelWeightProvider reference_weights(reference, options.cache_limit_bytes);
  ForwardOptions reference_options = options;
  reference_options.weights = &reference_weights;
  const QuantizedForward forward(quantized, options);
  return KlDivergence(reference, reference_options, quantized.model(), forward.options(), documents,
                      kl_options);
}

}  // namespace catq
