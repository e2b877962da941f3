#include "core/cat/folded_norm_weights.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {

absl::Status FoldNormGainIntoColumns(const std::vector<float>& gain, RowMatrixXf& w) {
  if (static_cast<int64_t>(gain.size()) != w.cols()) {
    return absl::InvalidArgumentError(absl::StrCat("norm gain has ", gain.size(),
                                                   " elements, the linear ", w.cols(), " columns"));
  }
  w *= Eigen::Map<const Eigen::VectorXf>(gain.data(), w.cols()).asDiagonal();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const RowMatrixXf>> FoldedNormWeightProvider::Linear(
    int64_t layer, LinearKind kind) {
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<const RowMatrixXf> w,
                        ModelWeightProvider::Linear(layer, kind));
  const std::optional<NormKind> norm = SitePrecedingNorm(SiteOfLinear(kind));
  if (!norm.has_value()) return w;
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<const std::vector<float>> gain,
                        ModelWeightProvider::NormGain(layer, *norm));
  auto folded = std::make_shared<RowMatrixXf>(*w);
  CATQ_RETURN_IF_ERROR(FoldNormGainIntoColumns(*gain, *folded));
  return folded;
}

absl::StatusOr<std::shared_ptr<const std::vector<float>>> FoldedNormWeightProvider::NormGain(
    int64_t layer, NormKind kind) {
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<const std::vector<float>> gain,
                        ModelWeightProvider::NormGain(layer, kind));
  return std::make_shared<const std::vector<float>>(gain->size(), 1.0f);
}

}  // namespace catq
