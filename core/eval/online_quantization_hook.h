// File: core/eval/online_quantization_hook.h
//
// OnlineQuantizationHook: the SiteHook (llama_forward.h) that makes a
// forward pass compute what a quantized output computes at each site's
// input, before its linears: the stored online transform x' = T x (when the
// site has one), then the per-token activation fake quantizer of the config
// (core/quant/activation_quant.h; asymmetric or symmetric, nothing at 16
// bits). The linears then read x', and with the provider's W T^-1 the site
// computes (W T^-1)(T x) = W x up to quantization.
//
//   OnlineQuantizationHook hook(quantized);
//   options.hooks.push_back(&hook);
//
// Thread-safety: thread-safe (it only reads the model). The model must
// outlive the hook.
#ifndef CATQ_CORE_EVAL_ONLINE_QUANTIZATION_HOOK_H_
#define CATQ_CORE_EVAL_ONLINE_QUANTIZATION_HOOK_H_

#include "absl/status/status.h"
#include "core/eval/quantized_model.h"
#include "core/model/llama_forward.h"

namespace catq {

class OnlineQuantizationHook : public SiteHook {
 public:
  // Uses `model`'s transforms, each site's quantization().activation_bits_at
  // and activation_symmetric.
  explicit OnlineQuantizationHook(const QuantizedModel& model);

  // OnSite: transform, then fake-quantize every token (row) of `activations`.
  // InvalidArgument when the activations are not the site's width.
  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> activations) override;

 private:
  const QuantizedModel& model_;
  const bool symmetric_;
};

}  // namespace catq

#endif  // CATQ_CORE_EVAL_ONLINE_QUANTIZATION_HOOK_H_
