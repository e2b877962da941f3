#include "core/cat/recipe.h"

#include <gtest/gtest.h>

#include <limits>

#include "tests/util/status_matchers.h"

namespace catq {
namespace {

Recipe CatAuto() {
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = 32;
  recipe.online_cost_budget = 0.05;
  return recipe;
}

TEST(RecipeTest, SiteSettingsOverrideTheBlockSizeOfTheirSiteOnly) {
  Recipe recipe = CatAuto();
  recipe.site_settings = {{.layer = 1, .site = Site::kMlpOut, .block_size = 8}};
  ASSERT_OK(recipe.Validate());
  EXPECT_EQ(recipe.BlockSizeFor(1, Site::kMlpOut), 8);
  EXPECT_EQ(recipe.BlockSizeFor(1, Site::kMlpIn), 32);
  EXPECT_EQ(recipe.BlockSizeFor(0, Site::kMlpOut), 32);
  const Recipe site = recipe.ForSite(1, Site::kMlpOut);
  EXPECT_EQ(site.block_size, 8);
  EXPECT_TRUE(site.site_settings.empty());
  EXPECT_FALSE(site.is_auto());
  EXPECT_EQ(recipe.ForSite(0, Site::kMlpOut).block_size, 32);
}

TEST(RecipeTest, ValidateNamesTheBudgetAndTheSiteSettingFields) {
  Recipe recipe = CatAuto();
  recipe.online_cost_budget = -0.1;
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument, "online_cost_budget: -0.1");
  recipe.online_cost_budget = std::numeric_limits<double>::infinity();
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument, "online_cost_budget: inf");
  recipe.online_cost_budget = std::numeric_limits<double>::quiet_NaN();
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument, "online_cost_budget");

  recipe = CatAuto();
  recipe.method = Method::kHadamard;
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "online_cost_budget: per-site block sizes need method cat");

  recipe = CatAuto();
  recipe.site_settings = {{.layer = 0, .site = Site::kAttnIn, .block_size = 8},
                          {.layer = 0, .site = Site::kAttnOut, .block_size = 0}};
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "site_settings[1].block_size: 0 must be >= 1");
  recipe.site_settings[1] = {.layer = -2, .site = Site::kAttnOut, .block_size = 8};
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "site_settings[1].layer: -2");
  recipe.site_settings[1] = {.layer = 0, .site = Site::kAttnIn, .block_size = 16};
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "site_settings[1]: a second setting for model.layers.0.attn_in");
}

TEST(RecipeTest, SiteSettingsGiveTheirSiteItsBitsAndZeroKeepsTheRecipes) {
  Recipe recipe;
  recipe.method = Method::kHadamard;  // per-site bits need no cat
  recipe.weights.bits = 4;
  recipe.activation_bits = 4;
  recipe.site_settings = {{.layer = 1,
                           .site = Site::kMlpOut,
                           .block_size = 128,
                           .weight_bits = 8,
                           .activation_bits = 6},
                          {.layer = 0, .site = Site::kAttnIn, .block_size = 128, .weight_bits = 6}};
  ASSERT_OK(recipe.Validate());
  const Recipe mlp_out = recipe.ForSite(1, Site::kMlpOut);
  EXPECT_EQ(mlp_out.weights.bits, 8);
  EXPECT_EQ(mlp_out.activation_bits, 6);
  const Recipe attn_in = recipe.ForSite(0, Site::kAttnIn);
  EXPECT_EQ(attn_in.weights.bits, 6);
  EXPECT_EQ(attn_in.activation_bits, 4);  // 0: the recipe's
  EXPECT_EQ(recipe.ForSite(0, Site::kMlpOut).weights.bits, 4);
  EXPECT_EQ(recipe.ForSite(0, Site::kMlpOut).activation_bits, 4);
}

TEST(RecipeTest, ValidateNamesTheSiteBitsFields) {
  Recipe recipe;
  recipe.site_settings = {{.layer = 0, .site = Site::kAttnIn, .block_size = 128},
                          {.layer = 0, .site = Site::kMlpIn, .block_size = 128, .weight_bits = 5}};
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "site_settings[1].weight_bits: 5 must be 4, 6 or 8");
  recipe.site_settings[1].weight_bits = 16;
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "site_settings[1].weight_bits: 16");
  recipe.site_settings[1].weight_bits = 6;
  recipe.site_settings[1].activation_bits = 3;
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "site_settings[1].activation_bits: 3 must be 4, 6, 8 or 16");
  recipe.site_settings[1].activation_bits = 16;
  ASSERT_OK(recipe.Validate());
  // A block size of its own still needs cat.
  recipe.site_settings[1].block_size = 8;
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "site_settings: per-site block sizes need method cat, not rtn");
}

TEST(RecipeTest, AverageBitsAreZeroOrInFourToEightAndNotPerSite) {
  Recipe recipe;
  EXPECT_FALSE(recipe.allocates_bits());
  recipe.average_weight_bits = 5.0;
  ASSERT_OK(recipe.Validate());
  EXPECT_TRUE(recipe.allocates_bits());
  EXPECT_EQ(recipe.ForSite(0, Site::kAttnIn).average_weight_bits, 0.0);
  recipe.average_weight_bits = 3.5;
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "average_weight_bits: 3.5 must be in [4, 8]");
  recipe.average_weight_bits = 0.0;
  recipe.average_activation_bits = 9.0;
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                "average_activation_bits: 9 must be in [4, 8]");
  recipe.average_activation_bits = std::numeric_limits<double>::quiet_NaN();
  EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument, "average_activation_bits");
}

TEST(RecipeTest, ZeroBudgetIsAFixedBlockSizeRecipe) {
  Recipe recipe;
  recipe.method = Method::kCat;
  EXPECT_FALSE(recipe.is_auto());
  ASSERT_OK(recipe.Validate());
  EXPECT_EQ(recipe.BlockSizeFor(3, Site::kAttnIn), recipe.block_size);
}

}  // namespace
}  // namespace catq
