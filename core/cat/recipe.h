// File: core/cat/recipe.h
//
// Recipe: every choice of a quantization job in one struct, in the manner of
// LevelDB's Options. Each field states its default and unit. The server calls
// Validate() once per job; its message names the bad field.
//
//   Recipe recipe;                 // RTN W4, per channel, no activation quant
//   recipe.method = Method::kCat;
//   recipe.block_size = 32;
//   recipe.weights.group_size = 128;
//   CATQ_RETURN_IF_ERROR(recipe.Validate());
//
// Plain data; not synchronized.
#ifndef CATQ_CORE_CAT_RECIPE_H_
#define CATQ_CORE_CAT_RECIPE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/model/llama_weights.h"
#include "core/quant/weight_quant_options.h"
#include "core/tensor/dtype.h"

namespace catq {

// The transform applied at each activation site (cat-method.md section 2).
enum class Method {
  kRtn,          // No transform: plain round-to-nearest.
  kSmoothQuant,  // Diagonal scaling, max based, with `smoothquant_alpha`.
  kHadamard,     // Orthogonal mixing H only.
  kCat,          // Block CAT: H * blockdiag(T_1..T_n).
};
absl::string_view MethodName(Method method);
// The method name of cat with per-site block sizes under a budget
// (Recipe::online_cost_budget), accepted by the CLI and the wire form.
inline constexpr absl::string_view kCatAutoMethodName = "cat-auto";
absl::StatusOr<Method> ParseMethod(absl::string_view name);

// How the weights are rounded after the transform.
enum class WeightQuantizer { kRtn, kGptq };
absl::string_view WeightQuantizerName(WeightQuantizer quantizer);
absl::StatusOr<WeightQuantizer> ParseWeightQuantizer(absl::string_view name);

// What one site uses where it differs from the recipe's global fields: what
// cat-auto resolves per site (core/output/auto_block_size.h), and the bit
// widths of mixed precision. Read through Recipe::ForSite.
struct SiteSetting {
  int64_t layer = 0;
  Site site = Site::kAttnIn;
  // k of the site's block CAT, >= 1 (as Recipe::block_size). A method other
  // than cat takes only the recipe's block_size here.
  int block_size = 128;
  // Bits of the weights of the linears reading the site: 4, 6 or 8 (the
  // widths the pack-quantized output stores); 0 (default): weights.bits.
  int weight_bits = 0;
  // Bits of the site's activations: 4, 6 or 8, or 16 for floating point;
  // 0 (default): activation_bits.
  int activation_bits = 0;
};

struct Recipe {
  // Default kRtn.
  Method method = Method::kRtn;
  // Block size k of block CAT, in channels. 1 is diagonal, a value >= the
  // site's dimension is full CAT. Default 128 (the paper's choice).
  int block_size = 128;
  // Damping lambda: S <- S + lambda * mean(diag S) * I before solving.
  // Default 1e-2 (cat-method.md 2.4).
  double damping = 1e-2;
  // Whether block CAT applies the Hadamard mixing on top. Default true.
  bool cat_hadamard = true;
  // Relative eigenvalue floor of the block CAT solve, in [0, 1). Default 1e-12.
  double eigen_clip = 1e-12;
  // Weight each W_l^T W_l of a site read by several linears by 1 / ||W_l||_F^2
  // (cat-method.md 3, choice), so that q_proj does not decide attn_in's
  // transform alone. Default false.
  bool normalize_weight_moments = false;
  // Seed of the random orthogonal factor Q_q of the mixing matrix. Default 0.
  uint64_t mixing_seed = 0;
  // SmoothQuant migration strength alpha in [0, 1]. Default 0.5.
  double smoothquant_alpha = 0.5;
  // Weight grid: bits (4, 6 or 8, the widths the output stores), group size
  // along the input, symmetric. Default W4, symmetric, per output channel.
  WeightQuantOptions weights;
  WeightQuantizer weight_quantizer = WeightQuantizer::kRtn;
  // GPTQ: Hessian damping relative to its mean diagonal (default 0.01) and
  // processing columns by decreasing Hessian diagonal (default false).
  double gptq_damping = 0.01;
  bool gptq_act_order = false;
  // Activation bits, per token, at every quantized linear's input. 16 means
  // activations stay in floating point (weight-only). Default 16.
  int activation_bits = 16;
  // Activation grid: asymmetric (the default) or symmetric.
  bool activation_symmetric = false;
  // K/V cache bits: the keys (after RoPE) and values each attention layer
  // caches are fake-quantized per token and KV head, asymmetric, group =
  // head_dim (core/eval/kv_cache_quantizer.h). 4 or 8; 16 (the default) keeps
  // the cache in floating point. Changes no stored weight: the output records
  // it in quantization_config.kv_cache_scheme and evaluation applies it.
  int kv_cache_bits = 16;
  // Whether the K/V cache quantizer rotates each head's vector by a normalized
  // Hadamard (MixingMatrix of head_dim, seeded by mixing_seed) before the
  // grid. Default true.
  bool kv_cache_hadamard = true;
  // Fold the RMSNorm gains before attn_in and mlp_in into the weights reading
  // those sites, storing the norms as ones (as QuaRot does). Default true.
  bool fold_norm_gains = true;
  // Data type of the stored weight scales: kF16 (default), kBF16 or kF32.
  DType scale_dtype = DType::kF16;

  // cat-auto: the budget on the online transforms' MACs per token relative
  // to the model's linear MACs per token (core/cat/online_cost.h), under
  // which each site's block size is chosen from the predicted SQNR (method
  // cat only). 0 (default): every site uses block_size. Resolved into
  // site_settings before any layer is quantized.
  double online_cost_budget = 0.0;
  // Mixed precision (core/output/auto_bits.h): the average weight bits over
  // the quantized linears, weighted by their parameters, and the average
  // activation bits, weighted by the MACs of the linears reading each site
  // (the same weights), under which each site's bits are chosen from
  // {4, 6, 8} by predicted SQNR. 0 (default): every site at weights.bits /
  // activation_bits. Else in [4, 8]. Resolved into site_settings after
  // calibration, before any layer is quantized.
  double average_weight_bits = 0.0;
  double average_activation_bits = 0.0;
  // Per-site settings (at most one per layer and site); a site without one
  // uses the global fields. Default empty.
  std::vector<SiteSetting> site_settings;

  // Recipe::BlockSizeFor()
  //
  // The block size of (layer, site): its site setting's, else block_size.
  int BlockSizeFor(int64_t layer, Site site) const;

  // Recipe::ForSite()
  //
  // This recipe as the one site sees it: its settings (block size, weight
  // and activation bits) in the global fields, no site_settings and no budget. What every per-site
  // consumer (site task, output specs, folding) reads.
  Recipe ForSite(int64_t layer, Site site) const;

  // Whether this is a cat-auto recipe (online_cost_budget > 0).
  bool is_auto() const { return online_cost_budget > 0.0; }
  // Whether bits are chosen per site under an average (either average > 0).
  bool allocates_bits() const { return average_weight_bits > 0.0 || average_activation_bits > 0.0; }

  // Validate: OK, or InvalidArgument naming the first bad field and its range.
  absl::Status Validate() const;
};

}  // namespace catq

#endif  // CATQ_CORE_CAT_RECIPE_H_
