#include "core/output/output_names.h"

#include "absl/strings/str_cat.h"

namespace catq {

PackedWeightNames PackedWeightNamesFor(absl::string_view module) {
  return PackedWeightNames{
      .packed = absl::StrCat(module, ".weight_packed"),
      .scale = absl::StrCat(module, ".weight_scale"),
      .shape = absl::StrCat(module, ".weight_shape"),
      .zero_point = absl::StrCat(module, ".weight_zero_point"),
  };
}

OnlineTransformNames OnlineTransformNamesFor(int layer, absl::string_view site) {
  std::string prefix = absl::StrCat("model.layers.", layer, ".catq.", site);
  return OnlineTransformNames{
      .blocks = absl::StrCat(prefix, ".blocks"),
      .blocks_tail = absl::StrCat(prefix, ".blocks_tail"),
      .rot_q = absl::StrCat(prefix, ".rot_q"),
  };
}

std::string SiteKey(int layer, absl::string_view site) {
  return absl::StrCat("model.layers.", layer, ".", site);
}

}  // namespace catq
