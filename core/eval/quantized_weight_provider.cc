#include "core/eval/quantized_weight_provider.h"

#include <utility>

#include "core/util/status_macros.h"

namespace catq {

QuantizedWeightProvider::QuantizedWeightProvider(const QuantizedModel& model,
                                                 int64_t cache_limit_bytes)
    : ModelWeightProvider(model.model(), cache_limit_bytes), quantized_(model) {}

absl::StatusOr<std::shared_ptr<const RowMatrixXf>> QuantizedWeightProvider::Linear(
    int64_t layer, LinearKind kind) {
  const int64_t key =
      layer * static_cast<int64_t>(kAllLinearKinds.size()) + static_cast<int64_t>(kind);
  if (caching()) {
    absl::MutexLock lock(&mu_);
    auto it = linears_.find(key);
    if (it != linears_.end()) return it->second;
  }
  CATQ_ASSIGN_OR_RETURN(RowMatrixXf w, quantized_.Linear(layer, kind));
  auto shared = std::make_shared<const RowMatrixXf>(std::move(w));
  if (caching()) {
    absl::MutexLock lock(&mu_);
    linears_.try_emplace(key, shared);
  }
  return shared;
}

}  // namespace catq
