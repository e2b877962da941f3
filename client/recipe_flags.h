// File: client/recipe_flags.h
//
// The recipe flags shared by every command that starts a quantization
// (`quantize`, later `submit`): they are declared once here so the names and
// defaults cannot drift between commands.
//
//   auto recipe_flags = std::make_shared<RecipeFlags>();
//   AddRecipeFlags(*sub, *recipe_flags);
//   ...
//   CATQ_ASSIGN_OR_RETURN(Recipe recipe, recipe_flags->ToRecipe());
#ifndef CATQ_CLIENT_RECIPE_FLAGS_H_
#define CATQ_CLIENT_RECIPE_FLAGS_H_

#include <CLI/CLI.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "core/cat/recipe.h"

namespace catq::cli {

struct RecipeFlags {
  std::string method = "rtn";
  int block_size = 128;
  // cat-auto's online cost budget (relative to the linear MACs); 0: none.
  double budget = 0.0;
  // Mixed precision: average weight / activation bits; 0: uniform.
  double avg_weight_bits = 0.0;
  double avg_activation_bits = 0.0;
  double damping = 1e-2;
  bool no_cat_hadamard = false;
  double eigen_clip = 1e-12;
  bool normalize_weight_moments = false;
  uint64_t mixing_seed = 0;
  double gptq_damping = 0.01;
  bool gptq_act_order = false;
  double smoothquant_alpha = 0.5;
  int w_bits = 4;
  int w_group = -1;
  bool w_asymmetric = false;
  std::string weight_quantizer = "rtn";
  int a_bits = 16;
  bool a_symmetric = false;
  int kv_cache_bits = 16;
  bool no_kv_cache_hadamard = false;
  bool no_fold_norm_gains = false;
  std::string scale_dtype = "F16";

  // The validated recipe; InvalidArgument names the flag's field.
  absl::StatusOr<Recipe> ToRecipe() const;
};

void AddRecipeFlags(CLI::App& command, RecipeFlags& flags);

}  // namespace catq::cli

#endif  // CATQ_CLIENT_RECIPE_FLAGS_H_
