// File: core/eval/quantized_weight_provider.h
//
// QuantizedWeightProvider: the WeightProvider (llama_forward.h) of a
// QuantizedModel: every linear is the model's dequantized packed weight (or
// its stored float weight); norms, the final norm and lm_head are the stored
// tensors, read as ModelWeightProvider reads them. Together with
// OnlineQuantizationHook it runs the output as a fake-quantized model.
//
//   QuantizedWeightProvider weights(quantized);
//   OnlineQuantizationHook hook(quantized);
//   ForwardOptions options;
//   options.weights = &weights;
//   options.hooks.push_back(&hook);
//   CATQ_ASSIGN_OR_RETURN(RowMatrixXf logits, ComputeLogits(quantized.model(), ids, options));
//
// Dequantized linears are cached as ModelWeightProvider caches (all of them
// when the model's float32 weights fit cache_limit_bytes, none otherwise).
//
// Thread-safety: thread-safe. The model must outlive the provider.
#ifndef CATQ_CORE_EVAL_QUANTIZED_WEIGHT_PROVIDER_H_
#define CATQ_CORE_EVAL_QUANTIZED_WEIGHT_PROVIDER_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/eval/quantized_model.h"
#include "core/model/llama_forward.h"

namespace catq {

class QuantizedWeightProvider : public ModelWeightProvider {
 public:
  explicit QuantizedWeightProvider(const QuantizedModel& model,
                                   int64_t cache_limit_bytes = kDefaultWeightCacheBytes);

  // Linear: QuantizedModel::Linear(layer, kind), shared.
  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Linear(int64_t layer,
                                                            LinearKind kind) override;

 private:
  const QuantizedModel& quantized_;
  absl::Mutex mu_;
  // Keyed by layer * 7 + kind.
  absl::flat_hash_map<int64_t, std::shared_ptr<const RowMatrixXf>> linears_ ABSL_GUARDED_BY(mu_);
};

}  // namespace catq

#endif  // CATQ_CORE_EVAL_QUANTIZED_WEIGHT_PROVIDER_H_
