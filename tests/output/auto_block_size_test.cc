#include "core/output/auto_block_size.h"

#include <gtest/gtest.h>

#include <memory>

#include "core/cat/site_statistics.h"
#include "core/output/in_process_quantizer.h"
#include "core/output/layer_quantizer.h"
#include "core/output/quantization_config.h"
#include "core/output/quantization_report.h"
#include "tests/util/output_comparison.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// The synthetic "tiny" model: 2 layers, hidden 64, intermediate 172, 8 query
// heads on 4 KV heads, F32; its statistics are full matrices.
class AutoBlockSizeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    ASSERT_OK(testing::WriteSyntheticJobInputs(dir_->Join("model"), dir_->Join("stats")));
    auto model = LlamaModel::Open(dir_->Join("model"));
    ASSERT_OK(model);
    model_ = new LlamaModel(*std::move(model));
    auto stats = ReadSiteStatistics(dir_->Join("stats"));
    ASSERT_OK(stats);
    data_ = new CalibrationData{*std::move(stats), {}};
  }
  static void TearDownTestSuite() {
    delete data_;
    delete model_;
    delete dir_;
  }

  static LayerStatisticsSource Source() {
    return [](int64_t layer) -> absl::StatusOr<SiteStatisticsMap> {
      SiteStatisticsMap out;
      for (Site site : kAllSites) {
        const std::string key = SiteQualifiedName(layer, site);
        out.emplace(key, data_->statistics.at(key));
      }
      return out;
    };
  }

  static Recipe Cat(int block_size) {
    Recipe recipe = testing::CatW4A4Recipe();
    recipe.block_size = block_size;
    return recipe;
  }

  static testing::TempDir* dir_;
  static LlamaModel* model_;
  static CalibrationData* data_;
};

testing::TempDir* AutoBlockSizeTest::dir_ = nullptr;
LlamaModel* AutoBlockSizeTest::model_ = nullptr;
CalibrationData* AutoBlockSizeTest::data_ = nullptr;

TEST_F(AutoBlockSizeTest, OnlineCostOfFixedRecipesByHand) {
  // Per layer with k = 32 and the mixing: three 64-wide sites at
  // 2 * 32^2 + 64 * 6 = 2432, mlp_out (172 = 4 * 43) at
  // 5 * 32^2 + 12^2 + 172 * (2 + 43) = 13004.
  auto cat32 = ModelOnlineCost(*model_, Cat(32));
  ASSERT_OK(cat32);
  EXPECT_EQ(cat32->macs, 2 * (3 * 2432 + 13004));
  EXPECT_EQ(cat32->linear_macs, 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64));
  EXPECT_DOUBLE_EQ(cat32->relative(), 40600.0 / 90624.0);
  Recipe hadamard;
  hadamard.method = Method::kHadamard;
  auto mixing = ModelOnlineCost(*model_, hadamard);
  ASSERT_OK(mixing);
  EXPECT_EQ(mixing->macs, 2 * (3 * 64 * 6 + 172 * 45));
  auto rtn = ModelOnlineCost(*model_, Recipe());
  ASSERT_OK(rtn);
  EXPECT_EQ(rtn->macs, 0);
  // k = 1 without mixing folds into up_proj at mlp_out: nothing online.
  Recipe diagonal = Cat(1);
  diagonal.cat_hadamard = false;
  auto folded = SiteOnlineCostMacs(*model_, diagonal, 0, Site::kMlpOut);
  ASSERT_OK(folded);
  EXPECT_EQ(*folded, 0);
  // Per-site settings are what is costed.
  Recipe mixed = Cat(32);
  mixed.site_settings = {{.layer = 1, .site = Site::kMlpOut, .block_size = 172}};
  auto with_setting = ModelOnlineCost(*model_, mixed);
  ASSERT_OK(with_setting);
  EXPECT_EQ(with_setting->macs, cat32->macs - 13004 + 172 * 172 + 172 * 45);
}

TEST_F(AutoBlockSizeTest, TheChoiceStaysWithinTheBudgetAndIsInTheRecipe) {
  auto cat32 = ModelOnlineCost(*model_, Cat(32));
  ASSERT_OK(cat32);
  Recipe recipe = Cat(32);
  recipe.online_cost_budget = cat32->relative();
  auto resolved = ResolveAutoBlockSizes(*model_, recipe, Source());
  ASSERT_OK(resolved);
  ASSERT_EQ(resolved->recipe.site_settings.size(), 8u);
  ASSERT_OK(resolved->recipe.Validate());
  auto cost = ModelOnlineCost(*model_, resolved->recipe);
  ASSERT_OK(cost);
  EXPECT_LE(cost->macs, cat32->macs);
  const nlohmann::json& report = resolved->report;
  EXPECT_EQ(report["online_macs_per_token"], cost->macs);
  EXPECT_DOUBLE_EQ(report["online_cost_budget"].get<double>(), cat32->relative());
  EXPECT_TRUE(report["note"].is_null());
  ASSERT_EQ(report["sites"].size(), 8u);
  double predicted_at_32 = 0.0;
  for (size_t s = 0; s < 8; ++s) {
    const nlohmann::json& site = report["sites"][s];
    const SiteSetting& setting = resolved->recipe.site_settings[s];
    EXPECT_EQ(site["key"], SiteQualifiedName(setting.layer, setting.site));
    EXPECT_EQ(site["block_size"], setting.block_size);
    for (const nlohmann::json& c : site["candidates"]) {
      if (c["block_size"] == 32) predicted_at_32 += c["predicted_noise_removed"].get<double>();
    }
  }
  // At the cost of k = 32 everywhere, the choice removes at least as much.
  EXPECT_GE(report["predicted_noise_removed_total"].get<double>(), predicted_at_32);
}

TEST_F(AutoBlockSizeTest, ABudgetBelowTheCheapestIsANoteNotAnError) {
  Recipe recipe = Cat(32);
  recipe.online_cost_budget = 1e-9;
  auto resolved = ResolveAutoBlockSizes(*model_, recipe, Source());
  ASSERT_OK(resolved);
  for (const SiteSetting& setting : resolved->recipe.site_settings) {
    EXPECT_EQ(setting.block_size, 1);
  }
  EXPECT_NE(resolved->report["note"].get<std::string>().find("below the cheapest"),
            std::string::npos);
}

TEST_F(AutoBlockSizeTest, CandidatesTheStatisticsCannotServeAreSkippedAndListed) {
  // Statistics with blocks of 16 serve k = 1, 8, 16 only.
  const LayerStatisticsSource blocks16 = [](int64_t layer) -> absl::StatusOr<SiteStatisticsMap> {
    SiteStatisticsMap out;
    for (Site site : kAllSites) {
      const std::string key = SiteQualifiedName(layer, site);
      const SiteStatistics& full = data_->statistics.at(key);
      auto blocks = SiteStatistics::Create(full.dim(), {.block_size = 16});
      if (!blocks.ok()) return blocks.status();
      // Block statistics of a few random tokens: only their layout matters here.
      const RowMatrixXf x = RowMatrixXf::Random(64, full.dim());
      if (absl::Status added = blocks->Accumulate(x); !added.ok()) return added;
      out.emplace(key, *std::move(blocks));
    }
    return out;
  };
  Recipe recipe = Cat(16);
  recipe.online_cost_budget = 10.0;
  auto resolved = ResolveAutoBlockSizes(*model_, recipe, blocks16);
  ASSERT_OK(resolved);
  for (const nlohmann::json& site : resolved->report["sites"]) {
    EXPECT_EQ(site["block_size"], 16) << site["key"];
    ASSERT_FALSE(site["skipped"].empty());
    EXPECT_EQ(site["skipped"][0]["block_size"], 32);
  }
}

TEST_F(AutoBlockSizeTest, AnUnresolvedCatAutoRecipeIsRefusedByTheLayerTask) {
  Recipe recipe = Cat(32);
  recipe.online_cost_budget = 0.1;
  EXPECT_STATUS(QuantizeLayer(*model_, recipe, 0, *data_), absl::StatusCode::kFailedPrecondition,
                "not resolved");
}

// Settings equal to the global block size change nothing: the per-site
// plumbing leaves fixed-k outputs as they were.
TEST_F(AutoBlockSizeTest, SettingsEqualToTheBlockSizeQuantizeTheSameBytes) {
  const Recipe fixed = Cat(16);
  Recipe with_settings = Cat(128);
  for (int64_t layer = 0; layer < 2; ++layer) {
    for (Site site : kAllSites) {
      with_settings.site_settings.push_back({.layer = layer, .site = site, .block_size = 16});
    }
  }
  InProcessOptions options;
  options.calibration_data = data_;
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_->Join("model"), dir_->Join("fixed"), fixed,
                                   options));
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_->Join("model"), dir_->Join("settings"),
                                   with_settings, options));
  // config.json records the global block_size, which differs; the shards
  // must not.
  const std::string fixed_config = testing::ReadTestFile(dir_->Join("fixed/config.json"));
  EXPECT_EQ(fixed_config.find("online_cost_budget"), std::string::npos);
  EXPECT_EQ(testing::ReadTestFile(dir_->Join("fixed/model.safetensors")),
            testing::ReadTestFile(dir_->Join("settings/model.safetensors")));
  const nlohmann::json report = RecipeToJson(fixed);
  EXPECT_FALSE(report.contains("online_cost_budget"));
}

TEST_F(AutoBlockSizeTest, TheOutputRecordsTheChosenBlockSizePerSite) {
  Recipe recipe = Cat(32);
  recipe.online_cost_budget = 0.3;
  InProcessOptions options;
  options.calibration_data = data_;
  auto report = QuantizeModelInProcess(Env::Default(), dir_->Join("model"), dir_->Join("auto"),
                                       recipe, options);
  ASSERT_OK(report);
  const nlohmann::json config =
      nlohmann::json::parse(testing::ReadTestFile(dir_->Join("auto/config.json")));
  const nlohmann::json stored =
      nlohmann::json::parse(testing::ReadTestFile(dir_->Join("auto/catq_report.json")));
  const nlohmann::json& catq = config["quantization_config"]["catq"];
  EXPECT_DOUBLE_EQ(catq["online_cost_budget"].get<double>(), 0.3);
  EXPECT_DOUBLE_EQ(stored["recipe"]["online_cost_budget"].get<double>(), 0.3);
  const nlohmann::json& choice = stored["block_size_choice"];
  ASSERT_EQ(choice["sites"].size(), 8u);
  EXPECT_LE(choice["online_cost"].get<double>(), 0.3);
  bool differs = false;
  for (const nlohmann::json& site : choice["sites"]) {
    const std::string key = site["key"];
    EXPECT_EQ(catq["sites"][key]["block_size"], site["block_size"]) << key;
    differs |= site["block_size"] != choice["sites"][0]["block_size"];
  }
  EXPECT_TRUE(differs) << "every site got the same k; the test shows no per-site choice";
  // The report's sites carry the k each site task used.
  for (const SiteReport& site : report->sites) {
    EXPECT_EQ(site.block_size, report->recipe.BlockSizeFor(site.layer, *ParseSite(site.site)))
        << site.key;
  }
}

}  // namespace
}  // namespace catq
