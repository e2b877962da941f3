// File: core/output/auto_bits.h
//
// Mixed precision on a model (issue 10, "Bit allocation"): the resolution of
// a recipe with average_weight_bits or average_activation_bits into 4, 6 or
// 8 bits per site (Recipe::site_settings' weight_bits, activation_bits) from
// the calibration statistics, before any layer is quantized. The in-process
// quantizer and the service's job resolve through here (after cat-auto's
// block sizes), so their outputs are the same bytes. The choice itself is
// core/cat/bit_allocation.h.
//
//   CATQ_ASSIGN_OR_RETURN(AutoBits resolved, ResolveAutoBits(model, recipe, layer_statistics));
//   // resolved.recipe.site_settings: bits per site; resolved.report -> catq_report.json
//
// The prediction per linear l of a site at weight bits w and activation bits
// a is cat-method.md section 1's with the concentrations the Hadamard mixing
// gives a Gaussian-like vector (PredictBaselineNoise): 1 / SQNR_l =
// rho_x / (12 N(a)^2 d A_l) + rho_w / (12 N(w)^2 d A_l), A_l the alignment
// of W_l with the site's Sx. A block factor's gain (cat) scales both terms
// of a linear alike and is left out: the choice compares bits, not
// transforms. Weight bits are chosen over the weight terms (units: each
// site's parameters), activation bits over the activation terms (units: the
// MACs per token of the linears reading the site, the same count).
//
// Thread-safety: pure; concurrent calls are safe.
#ifndef CATQ_CORE_OUTPUT_AUTO_BITS_H_
#define CATQ_CORE_OUTPUT_AUTO_BITS_H_

#include "absl/status/statusor.h"
#include "core/cat/recipe.h"
#include "core/model/llama_model.h"
#include "core/output/auto_block_size.h"
#include "nlohmann/json.hpp"

namespace catq {

struct AutoBits {
  Recipe recipe;          // resolved: each site's setting carries its bits
  nlohmann::json report;  // catq_report.json's "bit_allocation"
};

// ResolveAutoBits
//
// `recipe` with a site setting per site holding the chosen weight_bits (when
// average_weight_bits > 0) and activation_bits (when average_activation_bits
// > 0); existing settings (cat-auto's block sizes) keep their block size.
// Errors: InvalidArgument for an invalid recipe or one without an average;
// NotFound naming the site whose statistics are missing; the reads' errors.
absl::StatusOr<AutoBits> ResolveAutoBits(const LlamaModel& model, const Recipe& recipe,
                                         const LayerStatisticsSource& statistics);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_AUTO_BITS_H_
