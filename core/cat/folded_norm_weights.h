// File: core/cat/folded_norm_weights.h
//
// The weights of a Llama model with the RMSNorm gains before attn_in and
// mlp_in folded into the columns of the linears reading those sites
// (cat-method.md section 3; QuaRot does the same): W' = W diag(g), and the
// norms return ones. The model computes the same function, but the site
// inputs are the normalized vectors without gain, which is what the CAT
// engine transforms when recipe.fold_norm_gains is on. Calibration runs the
// forward pass on this provider so that the statistics describe those inputs.
//
//   FoldedNormWeightProvider weights(model);
//   ForwardOptions options;
//   options.weights = &weights;
//
// Thread-safe, as ModelWeightProvider. The model must outlive the provider.
#ifndef CATQ_CORE_CAT_FOLDED_NORM_WEIGHTS_H_
#define CATQ_CORE_CAT_FOLDED_NORM_WEIGHTS_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/llama_forward.h"

namespace catq {

// FoldNormGainIntoColumns: w <- w diag(gain), a norm's gain folded into the
// linear that reads its output. InvalidArgument when the lengths differ.
absl::Status FoldNormGainIntoColumns(const std::vector<float>& gain, RowMatrixXf& w);

class FoldedNormWeightProvider : public ModelWeightProvider {
 public:
  using ModelWeightProvider::ModelWeightProvider;

  // Linears reading attn_in or mlp_in come with their norm's gain folded in.
  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Linear(int64_t layer,
                                                            LinearKind kind) override;
  // Ones of the norm's length.
  absl::StatusOr<std::shared_ptr<const std::vector<float>>> NormGain(int64_t layer,
                                                                     NormKind kind) override;
};

}  // namespace catq

#endif  // CATQ_CORE_CAT_FOLDED_NORM_WEIGHTS_H_
