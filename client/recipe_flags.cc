#include "client/recipe_flags.h"

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq::cli {

void AddRecipeFlags(CLI::App& command, RecipeFlags& flags) {
  command.add_option("--recipe", flags.method, "rtn, smoothquant, hadamard, cat or cat-auto")
      ->capture_default_str();
  command
      .add_option("--block-size", flags.block_size,
                  "Block size k of block CAT (cat-auto: the largest k when the statistics hold "
                  "only diagonal blocks)")
      ->capture_default_str();
  command.add_option("--budget", flags.budget,
                     "cat-auto: online transform MACs per token over the model's linear MACs; "
                     "each site's k is chosen under it");
  command.add_option("--avg-weight-bits", flags.avg_weight_bits,
                     "Mixed precision: average weight bits in [4, 8] over the linears (by "
                     "parameters), each site's chosen from 4, 6, 8 by predicted SQNR");
  command.add_option("--avg-activation-bits", flags.avg_activation_bits,
                     "Mixed precision: average activation bits in [4, 8] (by the MACs of the "
                     "linears reading each site), each site's chosen from 4, 6, 8");
  command.add_option("--damping", flags.damping, "Relative damping of the solve")
      ->capture_default_str();
  command.add_flag("--no-cat-hadamard", flags.no_cat_hadamard,
                   "Block CAT without the Hadamard mixing on top");
  command.add_option("--eigen-clip", flags.eigen_clip, "Relative eigenvalue floor of the solve")
      ->capture_default_str();
  command.add_flag("--normalize-weight-moments", flags.normalize_weight_moments,
                   "Weight each W^T W of a shared site by 1 / ||W||_F^2");
  command.add_option("--mixing-seed", flags.mixing_seed, "Seed of the random orthogonal Q_q")
      ->capture_default_str();
  command.add_option("--gptq-damping", flags.gptq_damping, "GPTQ Hessian damping")
      ->capture_default_str();
  command.add_flag("--gptq-act-order", flags.gptq_act_order,
                   "GPTQ: columns by decreasing Hessian diagonal");
  command.add_option("--smoothquant-alpha", flags.smoothquant_alpha, "SmoothQuant alpha")
      ->capture_default_str();
  command.add_option("--w-bits", flags.w_bits, "Weight bits: 4, 6 or 8")->capture_default_str();
  command.add_option("--w-group", flags.w_group, "Weight group size along the input; -1 per row")
      ->capture_default_str();
  command.add_flag("--w-asym", flags.w_asymmetric, "Asymmetric weight grid with zero points");
  command.add_option("--weight-quantizer", flags.weight_quantizer, "rtn or gptq")
      ->capture_default_str();
  command.add_option("--a-bits", flags.a_bits, "Activation bits per token; 16 keeps them float")
      ->capture_default_str();
  command.add_flag("--a-sym", flags.a_symmetric, "Symmetric activation grid");
  command
      .add_option("--kv-cache-bits", flags.kv_cache_bits,
                  "K/V cache bits per token and head at evaluation: 4 or 8; 16 keeps it float")
      ->capture_default_str();
  command.add_flag("--no-kv-cache-hadamard", flags.no_kv_cache_hadamard,
                   "Quantize the K/V cache without the Hadamard rotation of each head");
  command.add_flag("--no-fold-norms", flags.no_fold_norm_gains,
                   "Keep RMSNorm gains instead of folding them into the weights");
  command.add_option("--scale-dtype", flags.scale_dtype, "F16, BF16 or F32")->capture_default_str();
}

absl::StatusOr<Recipe> RecipeFlags::ToRecipe() const {
  Recipe recipe;
  if (method == kCatAutoMethodName) {
    if (!(budget > 0.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("online_cost_budget: --recipe cat-auto needs --budget > 0, got ", budget));
    }
    recipe.method = Method::kCat;
  } else {
    CATQ_ASSIGN_OR_RETURN(recipe.method, ParseMethod(method));
  }
  recipe.online_cost_budget = budget;
  recipe.average_weight_bits = avg_weight_bits;
  recipe.average_activation_bits = avg_activation_bits;
  recipe.block_size = block_size;
  recipe.damping = damping;
  recipe.cat_hadamard = !no_cat_hadamard;
  recipe.smoothquant_alpha = smoothquant_alpha;
  recipe.eigen_clip = eigen_clip;
  recipe.normalize_weight_moments = normalize_weight_moments;
  recipe.mixing_seed = mixing_seed;
  recipe.gptq_damping = gptq_damping;
  recipe.gptq_act_order = gptq_act_order;
  recipe.weights.bits = w_bits;
  recipe.weights.group_size = w_group;
  recipe.weights.symmetric = !w_asymmetric;
  CATQ_ASSIGN_OR_RETURN(recipe.weight_quantizer, ParseWeightQuantizer(weight_quantizer));
  recipe.activation_bits = a_bits;
  recipe.activation_symmetric = a_symmetric;
  recipe.kv_cache_bits = kv_cache_bits;
  recipe.kv_cache_hadamard = !no_kv_cache_hadamard;
  recipe.fold_norm_gains = !no_fold_norm_gains;
  CATQ_ASSIGN_OR_RETURN(recipe.scale_dtype, ParseDType(scale_dtype));
  CATQ_RETURN_IF_ERROR(recipe.Validate());
  return recipe;
}

}  // namespace catq::cli
