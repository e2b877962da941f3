#include "core/eval/online_quantization_hook.h"

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/quant/activation_quant.h"
#include "core/util/status_macros.h"

namespace catq {

OnlineQuantizationHook::OnlineQuantizationHook(const QuantizedModel& model)
    : model_(model), symmetric_(model.quantization().activation_symmetric) {}

absl::Status OnlineQuantizationHook::OnSite(const SiteCall& call,
                                            Eigen::Ref<RowMatrixXf> activations) {
  const int64_t dim = SiteDim(model_.config(), call.site);
  if (activations.cols() != dim) {
    return absl::InvalidArgumentError(absl::StrCat(SiteQualifiedName(call.layer, call.site),
                                                   ": activations are ", activations.cols(),
                                                   " wide, expected ", dim));
  }
  if (const SiteTransform* transform = model_.OnlineTransform(call.layer, call.site)) {
    CATQ_RETURN_IF_ERROR(transform->ApplyToActivations(activations));
  }
  // Mixed precision: each site at its own bits (config_groups).
  const int bits = model_.quantization().activation_bits_at(call.layer, call.site);
  if (bits >= kFloatActivationBits) return absl::OkStatus();
  FakeQuantizeTokens(activations, bits, symmetric_);
  return absl::OkStatus();
}

}  // namespace catq
