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

TEST(RecipeTest, ZeroBudgetIsAFixedBlockSizeRecipe) {
  Recipe recipe;
  recipe.method = Method::kCat;
  EXPECT_FALSE(recipe.is_auto());
  ASSERT_OK(recipe.Validate());
  EXPECT_EQ(recipe.BlockSizeFor(3, Site::kAttnIn), recipe.block_size);
}

}  // namespace
}  // namespace catq
