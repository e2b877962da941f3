// File: core/eval/evaluate.h
//
// The evaluations `catq eval` and the quantization report run on an output
// directory, computed from the stored shards as written (architecture.md
// section 4): the perplexity of the fake-quantized model, and its comparison
// with the floating-point model it came from (both perplexities and the mean
// KL divergence of the next-token distributions).
//
//   CATQ_ASSIGN_OR_RETURN(LlamaModel fp, LlamaModel::Open(model_dir));
//   CATQ_ASSIGN_OR_RETURN(QuantizedModel q, QuantizedModel::Open(out_dir));
//   CATQ_ASSIGN_OR_RETURN(KlDivergenceResult r, CompareQuantizedToReference(fp, q, documents));
//   // r.reference.perplexity, r.candidate.perplexity, r.mean_kl (nats per token)
//
// Thread-safety: as RunForward.
#ifndef CATQ_CORE_EVAL_EVALUATE_H_
#define CATQ_CORE_EVAL_EVALUATE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/eval/kl_divergence.h"
#include "core/eval/kv_cache_quantizer.h"
#include "core/eval/online_quantization_hook.h"
#include "core/eval/quantized_model.h"
#include "core/eval/quantized_weight_provider.h"
#include "core/model/llama_forward.h"
#include "core/model/perplexity.h"

namespace catq {

// QuantizedForward
//
// The ForwardOptions that run a QuantizedModel as stored: `base` with its
// QuantizedWeightProvider as the weights, its OnlineQuantizationHook first
// among the hooks (base's own hooks then see the quantized activations) and,
// when the output quantizes the K/V cache, its KvCacheQuantizer first among
// the kv_hooks. base.weights must be null. Owns the provider and the hooks,
// so it can be neither copied nor moved; the model must outlive it.
class QuantizedForward {
 public:
  QuantizedForward(const QuantizedModel& model, const ForwardOptions& base);
  QuantizedForward(const QuantizedForward&) = delete;
  QuantizedForward& operator=(const QuantizedForward&) = delete;

  const ForwardOptions& options() const { return options_; }

 private:
  QuantizedWeightProvider weights_;
  OnlineQuantizationHook hook_;
  std::optional<KvCacheQuantizer> kv_cache_;
  ForwardOptions options_;
};

// CheckSameArchitecture
//
// OK when `quantized` has the shape of `reference` (hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads, vocab_size, max_position_embeddings), else
// InvalidArgument naming the first field that differs and both values.
absl::Status CheckSameArchitecture(const LlamaConfig& reference, const LlamaConfig& quantized);

// EvaluateQuantizedPerplexity
//
// EvaluatePerplexity (perplexity.h) of `model` run through QuantizedForward.
// InvalidArgument when options.weights is set; EvaluatePerplexity's errors
// otherwise.
absl::StatusOr<PerplexityResult> EvaluateQuantizedPerplexity(
    const QuantizedModel& model, const std::vector<std::vector<int32_t>>& documents,
    const ForwardOptions& options = {});

// CompareQuantizedToReference
//
// KlDivergence (kl_divergence.h) with `reference` as it is and `quantized`
// through QuantizedForward, both with `options` (threads, batching; hooks
// run in both). result.candidate equals EvaluateQuantizedPerplexity and
// result.reference EvaluatePerplexity of the reference. Errors:
// CheckSameArchitecture's, InvalidArgument when options.weights is set,
// KlDivergence's.
absl::StatusOr<KlDivergenceResult> CompareQuantizedToReference(
    const LlamaModel& reference, const QuantizedModel& quantized,
    const std::vector<std::vector<int32_t>>& documents, const ForwardOptions& options = {},
    const KlOptions& kl_options = {});

}  // namespace catq

#endif  // CATQ_CORE_EVAL_EVALUATE_H_
