// File: core/eval/stored_quantization.h
//
// StoredQuantization: what an output's config.json says about how it was
// quantized (architecture.md section 4, written by
// core/output/quantization_config.cc): the weight grid, the activation grid,
// and per layer and site whether a transform runs online. Evaluation reads
// this, never guesses from which tensors exist.
//
//   CATQ_ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(env, dir));
//   CATQ_ASSIGN_OR_RETURN(StoredQuantization q, ParseStoredQuantization(config, path));
//   if (q.site(3, Site::kMlpOut).online) ...
//
// Thread-safety: a plain value type; the parser is a pure function.
#ifndef CATQ_CORE_EVAL_STORED_QUANTIZATION_H_
#define CATQ_CORE_EVAL_STORED_QUANTIZATION_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/eval/kv_cache_quantizer.h"
#include "core/model/llama_config.h"
#include "core/model/llama_weights.h"
#include "core/quant/weight_quant_options.h"
#include "nlohmann/json.hpp"

namespace catq {

// How one activation site is stored: quantization_config.catq.sites[
// "model.layers.{i}.{site}"].
struct StoredSite {
  bool online = false;     // A transform T runs on the activations at inference.
  bool hadamard = false;   // T includes the mixing M (rot_q, or the FWHT when absent).
  int64_t block_size = 0;  // k of the block-diagonal factor B; 0: B = I.
  bool folded = false;     // A diagonal transform was folded into other weights.
};

// Activations at this many bits stay in floating point (no fake quant).
inline constexpr int kFloatActivationBits = 16;

struct StoredQuantization {
  // config_groups.group_0.weights: bits, group size (-1 per channel), symmetric.
  // Under mixed precision, the scheme of the lowest bits; each linear's own is
  // linear_weights.
  WeightQuantOptions weights;
  // config_groups.group_0.input_activations: bits per token, or
  // kFloatActivationBits when that entry is null (weight-only). Under mixed
  // precision each site's own is site_activation_bits.
  int activation_bits = kFloatActivationBits;
  bool activation_symmetric = false;
  // Whether config_groups has more than one group (bits per module).
  bool mixed_precision = false;
  // [layer][linear], in kAllLinearKinds order: the weight scheme of the group
  // whose targets hold the linear (its module name, or "Linear").
  std::vector<std::array<WeightQuantOptions, kAllLinearKinds.size()>> linear_weights;
  // [layer][site], in kAllSites order: the activation bits of the group of
  // the linears reading the site (they agree; the parser checks).
  std::vector<std::array<int, kAllSites.size()>> site_activation_bits;
  // The K/V cache quantizer evaluation installs: bits from
  // kv_cache_scheme.num_bits (kFloatKvCacheBits when kv_cache_scheme is null
  // or absent), hadamard from catq.kv_cache_hadamard, mixing_seed from
  // catq.mixing_seed.
  KvCacheQuantizerOptions kv_cache;
  // catq.method, e.g. "rtn" or "cat".
  std::string method;
  // The recipe as a reader reports it: catq's scalar fields (method,
  // block_size, damping, ...; whatever the writer recorded) plus w_bits,
  // w_group_size, w_symmetric, a_bits, a_symmetric and kv_cache_bits from the
  // schemes.
  nlohmann::json recipe;
  // [layer][site], in kAllSites order.
  std::vector<std::array<StoredSite, kAllSites.size()>> sites;

  const StoredSite& site(int64_t layer, Site s) const {
    return sites[static_cast<size_t>(layer)][static_cast<size_t>(s)];
  }
  const WeightQuantOptions& linear(int64_t layer, LinearKind kind) const {
    return linear_weights[static_cast<size_t>(layer)][static_cast<size_t>(kind)];
  }
  int activation_bits_at(int64_t layer, Site s) const {
    return site_activation_bits[static_cast<size_t>(layer)][static_cast<size_t>(s)];
  }
};

// ParseStoredQuantization
//
// Reads config.original["quantization_config"]: config_groups is one group
// whose targets are ["Linear"], or groups whose targets name modules
// ("model.layers.{i}.self_attn.q_proj", ...; one of them may be "Linear",
// the scheme of every linear no other group names). InvalidArgument, prefixed
// with `config_path` and naming the field (a JSON path such as
// "quantization_config.config_groups.group_0.weights.num_bits"), when it is
// missing or has the wrong type or range: quant_method other than
// "compressed-tensors", format other than "pack-quantized", weights other
// than 4-, 6- or 8-bit int, a group size below 1 with strategy "group",
// activation bits outside [2, 8] (a present input_activations entry), a
// sites map that lacks a layer's site, names a layer or site the model does
// not have, or marks a site both online and folded, and a kv_cache_scheme
// (when neither null nor absent) other than what catq writes: type int,
// num_bits in [2, 8], symmetric false, strategy group, group_size head_dim,
// dynamic true, with catq.kv_cache_hadamard a bool (and catq.mixing_seed a
// non-negative integer when it is true); a target that is neither "Linear"
// nor a linear of the model, a linear two groups name or none covers,
// activation schemes that differ in symmetry, and linears of one site with
// different activation bits. Unknown extra fields are ignored.
absl::StatusOr<StoredQuantization> ParseStoredQuantization(const LlamaConfig& config,
                                                           absl::string_view config_path);

}  // namespace catq

#endif  // CATQ_CORE_EVAL_STORED_QUANTIZATION_H_
