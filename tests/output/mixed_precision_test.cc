// Mixed precision per site (Recipe::site_settings' weight_bits and
// activation_bits): the bits reach the stored weights, config.json's
// config_groups name each group's modules, and evaluation of the stored
// output runs each site at its own bits, exactly as the recipe says.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/cat/recipe.h"
#include "core/eval/evaluate.h"
#include "core/eval/kl_divergence.h"
#include "core/eval/output_evaluation.h"
#include "core/eval/quantized_model.h"
#include "core/eval/quantized_weight_provider.h"
#include "core/eval/stored_quantization.h"
#include "core/model/llama2c_import.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/model/text_documents.h"
#include "core/output/in_process_quantizer.h"
#include "core/output/packed_linear.h"
#include "core/output/quantization_config.h"
#include "core/output/quantization_report.h"
#include "core/quant/activation_quant.h"
#include "core/util/status_macros.h"
#include "tests/util/output_comparison.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// cat k=16 W4A4 with layer 0's attn_in at W6A6 and layer 1's mlp_out at W8A8.
Recipe MixedRecipe() {
  Recipe recipe = testing::CatW4A4Recipe();
  recipe.site_settings = {
      {.layer = 0, .site = Site::kAttnIn, .block_size = 16, .weight_bits = 6, .activation_bits = 6},
      {.layer = 1,
       .site = Site::kMlpOut,
       .block_size = 16,
       .weight_bits = 8,
       .activation_bits = 8}};
  return recipe;
}

std::vector<SiteRecord> AllSiteRecords(int layers) {
  std::vector<SiteRecord> records;
  for (int layer = 0; layer < layers; ++layer) {
    for (Site site : kAllSites) {
      records.push_back({.layer = layer, .site = std::string(SiteName(site))});
    }
  }
  return records;
}

TEST(MixedPrecisionConfig, OneGroupPerBitsNamingItsModules) {
  const nlohmann::json qc = BuildQuantizationConfig(MixedRecipe(), AllSiteRecords(2), 8);
  const nlohmann::json& groups = qc["config_groups"];
  ASSERT_EQ(groups.size(), 3u) << groups.dump(1);
  EXPECT_EQ(groups["group_0"]["weights"]["num_bits"], 4);
  EXPECT_EQ(groups["group_0"]["input_activations"]["num_bits"], 4);
  EXPECT_EQ(groups["group_0"]["targets"].size(), 2u * 7u - 4u);
  EXPECT_EQ(groups["group_1"]["weights"]["num_bits"], 6);
  EXPECT_EQ(groups["group_1"]["input_activations"]["num_bits"], 6);
  EXPECT_EQ(groups["group_1"]["targets"],
            nlohmann::json({"model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.q_proj",
                            "model.layers.0.self_attn.v_proj"}));
  EXPECT_EQ(groups["group_2"]["weights"]["num_bits"], 8);
  EXPECT_EQ(groups["group_2"]["targets"], nlohmann::json({"model.layers.1.mlp.down_proj"}));
  EXPECT_EQ(qc["catq"]["sites"]["model.layers.0.attn_in"]["weight_bits"], 6);
  EXPECT_EQ(qc["catq"]["sites"]["model.layers.1.mlp_out"]["activation_bits"], 8);
  EXPECT_EQ(qc["catq"]["sites"]["model.layers.1.mlp_in"]["weight_bits"], 4);
}

TEST(MixedPrecisionConfig, SettingsAtTheRecipesBitsWriteTheUniformConfig) {
  Recipe same = testing::CatW4A4Recipe();
  same.site_settings = {{.layer = 0,
                         .site = Site::kAttnIn,
                         .block_size = 16,
                         .weight_bits = 4,
                         .activation_bits = 4}};
  EXPECT_EQ(BuildQuantizationConfig(same, AllSiteRecords(2), 8).dump(),
            BuildQuantizationConfig(testing::CatW4A4Recipe(), AllSiteRecords(2), 8).dump());
  EXPECT_EQ(
      BuildQuantizationConfig(same, AllSiteRecords(2), 8)["config_groups"]["group_0"]["targets"],
      nlohmann::json({"Linear"}));
}

LlamaConfig TwoLayerConfig(const nlohmann::json& quantization_config) {
  LlamaConfig config;
  config.hidden_size = 64;
  config.intermediate_size = 96;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 8;
  config.num_key_value_heads = 4;
  config.original["quantization_config"] = quantization_config;
  return config;
}

TEST(MixedPrecisionConfig, ReadBackPerLinearAndPerSite) {
  const Recipe recipe = MixedRecipe();
  absl::StatusOr<StoredQuantization> stored = ParseStoredQuantization(
      TwoLayerConfig(BuildQuantizationConfig(recipe, AllSiteRecords(2), 8)), "c.json");
  ASSERT_OK(stored);
  EXPECT_TRUE(stored->mixed_precision);
  for (int64_t layer = 0; layer < 2; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      EXPECT_EQ(stored->linear(layer, kind).bits,
                recipe.ForSite(layer, SiteOfLinear(kind)).weights.bits)
          << LinearModuleName(layer, kind);
    }
    for (Site site : kAllSites) {
      EXPECT_EQ(stored->activation_bits_at(layer, site),
                recipe.ForSite(layer, site).activation_bits);
    }
  }
  absl::StatusOr<StoredQuantization> uniform = ParseStoredQuantization(
      TwoLayerConfig(BuildQuantizationConfig(testing::CatW4A4Recipe(), AllSiteRecords(2), 8)),
      "c.json");
  ASSERT_OK(uniform);
  EXPECT_FALSE(uniform->mixed_precision);
  EXPECT_EQ(uniform->linear(1, LinearKind::kDownProj).bits, 4);
  EXPECT_EQ(uniform->activation_bits_at(1, Site::kMlpOut), 4);
}

TEST(MixedPrecisionConfig, BadTargetsAreInvalidArgumentNamingTheField) {
  const nlohmann::json good = BuildQuantizationConfig(MixedRecipe(), AllSiteRecords(2), 8);
  const std::string groups = "c.json: quantization_config.config_groups";
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](nlohmann::json& qc) { qc["config_groups"]["group_2"]["targets"][0] = "lm_head"; },
       groups + ".group_2.targets[0]: \"lm_head\" is neither \"Linear\" nor a linear"},
      {[](nlohmann::json& qc) {
         qc["config_groups"]["group_2"]["targets"][0] = "model.layers.0.self_attn.q_proj";
       },
       groups + ".group_2.targets[0]: \"model.layers.0.self_attn.q_proj\" is also a target of " +
           "quantization_config.config_groups.group_1"},
      {[](nlohmann::json& qc) { qc["config_groups"].erase("group_2"); },
       groups + ": no group targets model.layers.1.mlp.down_proj"},
      {[](nlohmann::json& qc) {
         qc["config_groups"]["group_1"]["targets"].erase(0);  // k_proj back to no group
         qc["config_groups"]["group_0"]["targets"].push_back("model.layers.0.self_attn.k_proj");
       },
       groups + ": model.layers.0.self_attn.k_proj reads model.layers.0.attn_in at 4 bits"},
  };
  for (const Case& c : cases) {
    nlohmann::json qc = good;
    c.edit(qc);
    EXPECT_STATUS(ParseStoredQuantization(TwoLayerConfig(qc), "c.json"),
                  absl::StatusCode::kInvalidArgument, c.message);
  }
}

// The site hook of a mixed output made from the recipe rather than read from
// config.json: the stored online transform, then fake quantization at the
// bits recipe.ForSite gives the site.
class RecipeBitsHook : public SiteHook {
 public:
  RecipeBitsHook(const QuantizedModel& model, const Recipe& recipe, int uniform_bits = 0)
      : model_(model), recipe_(recipe), uniform_bits_(uniform_bits) {}
  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> activations) override {
    if (const SiteTransform* t = model_.OnlineTransform(call.layer, call.site)) {
      CATQ_RETURN_IF_ERROR(t->ApplyToActivations(activations));
    }
    const int bits =
        uniform_bits_ > 0 ? uniform_bits_ : recipe_.ForSite(call.layer, call.site).activation_bits;
    if (bits < kMaxActivationBits) {
      FakeQuantizeTokens(activations, bits, recipe_.activation_symmetric);
    }
    return absl::OkStatus();
  }

 private:
  const QuantizedModel& model_;
  const Recipe& recipe_;
  const int uniform_bits_;
};

TEST(MixedPrecisionStories260K, BitsReachTheStoredWeightsAndEvaluation) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  const std::string model_dir = dir.Join("hf");
  ASSERT_OK(ImportLlama2c(Env::Default(), testing::SharedPath("models/stories260K/stories260K.bin"),
                          testing::SharedPath("models/stories260K/tok512.bin"), model_dir));
  const Recipe recipe = MixedRecipe();
  InProcessOptions in_process;
  in_process.calibration.text_path = testing::SharedPath("data/tinystories_197k.txt");
  in_process.calibration.text.max_documents = 8;
  const std::string out = dir.Join("mixed");
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), model_dir, out, recipe, in_process));
  absl::StatusOr<QuantizedModel> quantized = QuantizedModel::Open(out);
  ASSERT_OK(quantized);
  const StoredQuantization& stored = quantized->quantization();
  EXPECT_TRUE(stored.mixed_precision);
  const nlohmann::json& groups =
      quantized->config().original["quantization_config"]["config_groups"];
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups["group_1"]["targets"].size(), 3u);

  // Each linear's stored levels at its site's bits: the 6-bit q_proj uses
  // more than a 4-bit grid's 16 levels, within 6 signed bits.
  for (int64_t layer = 0; layer < quantized->config().num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      const int bits = recipe.ForSite(layer, SiteOfLinear(kind)).weights.bits;
      EXPECT_EQ(stored.linear(layer, kind).bits, bits) << LinearModuleName(layer, kind);
      absl::StatusOr<QuantizedWeight> qw = ReadPackedLinear(
          quantized->model().tensors(), LinearModuleName(layer, kind), stored.linear(layer, kind));
      ASSERT_OK(qw);
      const auto [lo, hi] = std::minmax_element(qw->q.begin(), qw->q.end());
      EXPECT_GE(*lo, -(1 << (bits - 1))) << LinearModuleName(layer, kind);
      EXPECT_LE(*hi, (1 << (bits - 1)) - 1) << LinearModuleName(layer, kind);
      if (bits > 4) {
        const std::set<int> levels(qw->q.begin(), qw->q.end());
        EXPECT_GT(levels.size(), 16u) << LinearModuleName(layer, kind);
      }
    }
    for (Site site : kAllSites) {
      EXPECT_EQ(stored.activation_bits_at(layer, site),
                recipe.ForSite(layer, site).activation_bits);
    }
  }

  absl::StatusOr<std::vector<std::string>> docs =
      ReadTextDocuments(Env::Default(), testing::SharedPath("data/tinystories_sample.txt"));
  ASSERT_OK(docs);
  absl::StatusOr<Llama2cTokenizer> tokenizer =
      Llama2cTokenizer::Load(Env::Default(), model_dir + "/tokenizer.bin", 512);
  ASSERT_OK(tokenizer);
  const std::vector<std::vector<int32_t>> documents = TokenizeDocuments(*tokenizer, *docs);

  // The output run by hand with the recipe's bits per site, and at 4 bits
  // everywhere (which must differ, or the per-site bits were not exercised).
  QuantizedWeightProvider weights(*quantized);
  RecipeBitsHook hook(*quantized, recipe);
  ForwardOptions by_hand;
  by_hand.weights = &weights;
  by_hand.hooks = {&hook};
  absl::StatusOr<PerplexityResult> expected =
      EvaluatePerplexity(quantized->model(), documents, by_hand);
  ASSERT_OK(expected);
  RecipeBitsHook uniform_hook(*quantized, recipe, 4);
  by_hand.hooks = {&uniform_hook};
  absl::StatusOr<PerplexityResult> uniform =
      EvaluatePerplexity(quantized->model(), documents, by_hand);
  ASSERT_OK(uniform);
  EXPECT_NE(expected->perplexity, uniform->perplexity);

  // `catq eval --quantized` (and compare, quantize --eval-text) read the bits
  // from config.json and get exactly that.
  absl::StatusOr<PerplexityResult> alone = EvaluateQuantizedPerplexity(*quantized, documents);
  ASSERT_OK(alone);
  EXPECT_EQ(alone->perplexity, expected->perplexity);
  absl::StatusOr<LlamaModel> fp = LlamaModel::Open(model_dir);
  ASSERT_OK(fp);
  absl::StatusOr<KlDivergenceResult> pair = CompareQuantizedToReference(*fp, *quantized, documents);
  ASSERT_OK(pair);
  EXPECT_EQ(pair->candidate.perplexity, expected->perplexity);
  absl::StatusOr<OutputEvaluation> output = EvaluateOutput(
      model_dir, out, testing::SharedPath("data/tinystories_sample.txt"), ForwardOptions());
  ASSERT_OK(output);
  EXPECT_EQ(output->perplexity, expected->perplexity);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// No averages (budget 0), or per-site settings at the recipe's own bits: the
// shards and config.json are the uniform recipe's, byte for byte, and the
// report has no bit_allocation.
TEST(MixedPrecisionStories260K, UniformBitsLeaveTheOutputByteIdentical) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  const std::string model_dir = dir.Join("hf");
  ASSERT_OK(ImportLlama2c(Env::Default(), testing::SharedPath("models/stories260K/stories260K.bin"),
                          testing::SharedPath("models/stories260K/tok512.bin"), model_dir));
  InProcessOptions in_process;
  in_process.calibration.text_path = testing::SharedPath("data/tinystories_197k.txt");
  in_process.calibration.text.max_documents = 8;
  const Recipe uniform = testing::CatW4A4Recipe();
  absl::StatusOr<QuantizationReport> plain =
      QuantizeModelInProcess(Env::Default(), model_dir, dir.Join("uniform"), uniform, in_process);
  ASSERT_OK(plain);
  EXPECT_TRUE(plain->bit_allocation.is_null());
  EXPECT_FALSE(QuantizationReportToJson(*plain).contains("bit_allocation"));
  Recipe explicit_bits = uniform;
  for (int64_t layer = 0; layer < 5; ++layer) {
    for (Site site : kAllSites) {
      explicit_bits.site_settings.push_back(
          {.layer = layer, .site = site, .block_size = 16, .weight_bits = 4, .activation_bits = 4});
    }
  }
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), model_dir, dir.Join("explicit"), explicit_bits,
                                   in_process));
  for (const std::string file : {"config.json", "model.safetensors"}) {
    const std::string a = ReadFile(dir.Join("uniform/" + file));
    EXPECT_FALSE(a.empty()) << file;
    EXPECT_TRUE(a == ReadFile(dir.Join("explicit/" + file))) << file;
  }
  const nlohmann::json config = nlohmann::json::parse(ReadFile(dir.Join("uniform/config.json")));
  EXPECT_FALSE(config["quantization_config"]["catq"].contains("average_weight_bits"));
  EXPECT_EQ(config["quantization_config"]["config_groups"].size(), 1u);
}

// The parameter-weighted average of the bits `recipe` gives each linear
// (weights) or each site's linears (activations, by their MACs: the same
// weights).
std::pair<double, double> AverageBits(const LlamaConfig& config, const Recipe& recipe) {
  double params = 0.0;
  double weight_bits = 0.0;
  double activation_bits = 0.0;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      const MatrixShape shape = LinearShape(config, kind);
      const double n = static_cast<double>(shape.rows * shape.cols);
      const Recipe site = recipe.ForSite(layer, SiteOfLinear(kind));
      params += n;
      weight_bits += n * site.weights.bits;
      activation_bits += n * site.activation_bits;
    }
  }
  return {weight_bits / params, activation_bits / params};
}

TEST(MixedPrecisionStories260K, AllocationRespectsBothBudgetsAndIsRecorded) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  const std::string model_dir = dir.Join("hf");
  ASSERT_OK(ImportLlama2c(Env::Default(), testing::SharedPath("models/stories260K/stories260K.bin"),
                          testing::SharedPath("models/stories260K/tok512.bin"), model_dir));
  Recipe recipe = testing::CatW4A4Recipe();
  recipe.average_weight_bits = 5.0;
  recipe.average_activation_bits = 6.5;
  InProcessOptions in_process;
  in_process.calibration.text_path = testing::SharedPath("data/tinystories_197k.txt");
  in_process.calibration.text.max_documents = 8;
  const std::string out = dir.Join("allocated");
  absl::StatusOr<QuantizationReport> report =
      QuantizeModelInProcess(Env::Default(), model_dir, out, recipe, in_process);
  ASSERT_OK(report);
  const Recipe& resolved = report->recipe;
  absl::StatusOr<LlamaModel> fp = LlamaModel::Open(model_dir);
  ASSERT_OK(fp);
  const auto [weight_average, activation_average] = AverageBits(fp->config(), resolved);
  EXPECT_LE(weight_average, 5.0);
  EXPECT_GT(weight_average, 4.5);  // the budget is used, not ignored
  EXPECT_LE(activation_average, 6.5);
  EXPECT_GT(activation_average, 6.0);
  std::set<int> weight_widths;
  for (int64_t layer = 0; layer < fp->config().num_hidden_layers; ++layer) {
    for (Site site : kAllSites) {
      const Recipe site_recipe = resolved.ForSite(layer, site);
      weight_widths.insert(site_recipe.weights.bits);
      EXPECT_TRUE(site_recipe.activation_bits == 4 || site_recipe.activation_bits == 6 ||
                  site_recipe.activation_bits == 8);
      EXPECT_EQ(site_recipe.block_size, 16);
    }
  }
  EXPECT_GT(weight_widths.size(), 1u);  // mixed, not uniform

  // catq_report.json: each site's bits and predicted SQNR; config.json: the
  // averages and the groups that give each module its bits.
  const nlohmann::json json = QuantizationReportToJson(*report);
  ASSERT_TRUE(json.contains("bit_allocation"));
  const nlohmann::json& allocation = json["bit_allocation"];
  EXPECT_EQ(allocation["sites"].size(), static_cast<size_t>(fp->config().num_hidden_layers) * 4u);
  EXPECT_DOUBLE_EQ(allocation["totals"]["average_weight_bits"].get<double>(), weight_average);
  EXPECT_TRUE(allocation["sites"][0]["linears"][0].contains("predicted_sqnr_db"));
  absl::StatusOr<QuantizedModel> quantized = QuantizedModel::Open(out);
  ASSERT_OK(quantized);
  const nlohmann::json& qc = quantized->config().original["quantization_config"];
  EXPECT_EQ(qc["catq"]["average_weight_bits"], 5.0);
  EXPECT_GT(qc["config_groups"].size(), 1u);
  for (int64_t layer = 0; layer < fp->config().num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      EXPECT_EQ(quantized->quantization().linear(layer, kind).bits,
                resolved.ForSite(layer, SiteOfLinear(kind)).weights.bits);
    }
  }
}

}  // namespace
}  // namespace catq
