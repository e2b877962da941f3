// File: core/output/output_names.h
//
// The tensor and file names of catq's output directory (architecture.md
// section 4), from one place, as LevelDB's filename.h does for its files.
//
//   PackedWeightNames names = PackedWeightNamesFor("model.layers.0.self_attn.q_proj");
//   names.packed  // "model.layers.0.self_attn.q_proj.weight_packed"
#ifndef CATQ_CORE_OUTPUT_OUTPUT_NAMES_H_
#define CATQ_CORE_OUTPUT_OUTPUT_NAMES_H_

#include <string>

#include "absl/strings/string_view.h"

namespace catq {

inline constexpr absl::string_view kReportFileName = "catq_report.json";

// The compressed-tensors tensors of one quantized linear `<m>`.
struct PackedWeightNames {
  std::string packed;      // <m>.weight_packed      I32 [out, ceil(in/8)]
  std::string scale;       // <m>.weight_scale       F16/BF16/F32 [out, groups]
  std::string shape;       // <m>.weight_shape       I64 [2]
  std::string zero_point;  // <m>.weight_zero_point  I32 [ceil(out/8), groups], asymmetric only
};
// `module` is the linear's name without ".weight", e.g. "model.layers.3.mlp.down_proj".
PackedWeightNames PackedWeightNamesFor(absl::string_view module);

// The online transform tensors of site `site` ("attn_in", ...) in layer `layer`.
struct OnlineTransformNames {
  std::string blocks;       // model.layers.{i}.catq.{s}.blocks       F32 [d/k, k, k]
  std::string blocks_tail;  // model.layers.{i}.catq.{s}.blocks_tail  F32 [r, r]
  std::string rot_q;        // model.layers.{i}.catq.{s}.rot_q        F32 [q, q]
};
OnlineTransformNames OnlineTransformNamesFor(int layer, absl::string_view site);

// "model.layers.{i}.{site}": the key of a site in quantization_config.catq.sites.
std::string SiteKey(int layer, absl::string_view site);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_OUTPUT_NAMES_H_
