// The K/V cache option end to end: the recipe fields (validation, proto),
// quantization_config.kv_cache_scheme as written and as read back, and the
// quantized cache in evaluation on stories260K (skipped without ../shared).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/cat/recipe.h"
#include "core/eval/evaluate.h"
#include "core/eval/kv_cache_quantizer.h"
#include "core/eval/output_evaluation.h"
#include "core/eval/stored_quantization.h"
#include "core/model/llama2c_import.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/model/text_documents.h"
#include "core/output/in_process_quantizer.h"
#include "core/output/quantization_config.h"
#include "proto/recipe_conversion.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

TEST(KvCacheRecipe, ValidateNamesTheField) {
  Recipe recipe;
  EXPECT_EQ(recipe.kv_cache_bits, 16);
  EXPECT_TRUE(recipe.kv_cache_hadamard);
  for (int bits : {4, 8, 16}) {
    recipe.kv_cache_bits = bits;
    EXPECT_OK(recipe.Validate());
  }
  for (int bits : {0, 3, 5, 12, 32}) {
    recipe.kv_cache_bits = bits;
    EXPECT_STATUS(recipe.Validate(), absl::StatusCode::kInvalidArgument,
                  "kv_cache_bits: " + std::to_string(bits) + " must be 4 or 8, or 16");
  }
}

TEST(KvCacheRecipe, ProtoRoundTrip) {
  Recipe recipe;
  recipe.kv_cache_bits = 4;
  recipe.kv_cache_hadamard = false;
  const v1::Recipe proto = RecipeToProto(recipe);
  EXPECT_EQ(proto.kv_cache_bits(), 4);
  EXPECT_FALSE(proto.kv_cache_hadamard());
  absl::StatusOr<Recipe> back = RecipeFromProto(proto);
  ASSERT_OK(back);
  EXPECT_EQ(back->kv_cache_bits, 4);
  EXPECT_FALSE(back->kv_cache_hadamard);
  // Unset fields keep the defaults: a float cache, Hadamard on.
  absl::StatusOr<Recipe> defaults = RecipeFromProto(v1::Recipe());
  ASSERT_OK(defaults);
  EXPECT_EQ(defaults->kv_cache_bits, 16);
  EXPECT_TRUE(defaults->kv_cache_hadamard);
  v1::Recipe bad;
  bad.set_kv_cache_bits(5);
  EXPECT_STATUS(RecipeFromProto(bad), absl::StatusCode::kInvalidArgument,
                "recipe.kv_cache_bits: 5 must be 4 or 8");
}

// A two-layer config and the quantization_config catq writes for `recipe`.
LlamaConfig TwoLayerConfig(const Recipe& recipe) {
  LlamaConfig config;
  config.hidden_size = 64;
  config.intermediate_size = 96;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 8;
  config.num_key_value_heads = 4;
  std::vector<SiteRecord> sites;
  for (int layer = 0; layer < 2; ++layer) {
    for (Site site : kAllSites) {
      SiteRecord record;
      record.layer = layer;
      record.site = std::string(SiteName(site));
      sites.push_back(record);
    }
  }
  config.original["quantization_config"] =
      BuildQuantizationConfig(recipe, sites, config.head_dim());
  return config;
}

TEST(KvCacheScheme, WrittenInCompressedTensorsFormAndReadBack) {
  Recipe recipe;
  recipe.kv_cache_bits = 4;
  recipe.mixing_seed = 42;
  const LlamaConfig config = TwoLayerConfig(recipe);
  const nlohmann::json& qc = config.original["quantization_config"];
  EXPECT_EQ(qc["kv_cache_scheme"], nlohmann::json({{"num_bits", 4},
                                                   {"type", "int"},
                                                   {"symmetric", false},
                                                   {"strategy", "group"},
                                                   {"group_size", 8},
                                                   {"dynamic", true},
                                                   {"observer", nullptr}}));
  EXPECT_EQ(qc["catq"]["kv_cache_hadamard"], true);
  absl::StatusOr<StoredQuantization> stored = ParseStoredQuantization(config, "c.json");
  ASSERT_OK(stored);
  EXPECT_EQ(stored->kv_cache.bits, 4);
  EXPECT_TRUE(stored->kv_cache.hadamard);
  EXPECT_EQ(stored->kv_cache.mixing_seed, 42u);
  EXPECT_EQ(stored->recipe["kv_cache_bits"], 4);

  recipe.kv_cache_hadamard = false;
  absl::StatusOr<StoredQuantization> plain =
      ParseStoredQuantization(TwoLayerConfig(recipe), "c.json");
  ASSERT_OK(plain);
  EXPECT_FALSE(plain->kv_cache.hadamard);
}

TEST(KvCacheScheme, OffIsNullAndAbsentIsOff) {
  LlamaConfig config = TwoLayerConfig(Recipe());
  EXPECT_TRUE(config.original["quantization_config"]["kv_cache_scheme"].is_null());
  absl::StatusOr<StoredQuantization> stored = ParseStoredQuantization(config, "c.json");
  ASSERT_OK(stored);
  EXPECT_EQ(stored->kv_cache.bits, kFloatKvCacheBits);
  // Outputs written before the option have no such key.
  config.original["quantization_config"].erase("kv_cache_scheme");
  stored = ParseStoredQuantization(config, "c.json");
  ASSERT_OK(stored);
  EXPECT_EQ(stored->kv_cache.bits, kFloatKvCacheBits);
}

TEST(KvCacheScheme, MalformedIsInvalidArgumentNamingTheField) {
  Recipe recipe;
  recipe.kv_cache_bits = 8;
  const LlamaConfig good = TwoLayerConfig(recipe);
  const std::string scheme = "quantization_config.kv_cache_scheme";
  const struct {
    std::function<void(nlohmann::json&)> edit;
    std::string message;
  } cases[] = {
      {[](nlohmann::json& qc) { qc["kv_cache_scheme"] = "int4"; },
       scheme + ": expected an object or null"},
      {[](nlohmann::json& qc) { qc["kv_cache_scheme"]["num_bits"] = 9; },
       scheme + ".num_bits: 9 is outside [2, 8]"},
      {[](nlohmann::json& qc) { qc["kv_cache_scheme"].erase("num_bits"); },
       scheme + ".num_bits: missing"},
      {[](nlohmann::json& qc) { qc["kv_cache_scheme"]["type"] = "float"; },
       scheme + ".type: 'float', expected 'int'"},
      {[](nlohmann::json& qc) { qc["kv_cache_scheme"]["strategy"] = "token"; },
       scheme + ".strategy: 'token', expected 'group'"},
      {[](nlohmann::json& qc) { qc["kv_cache_scheme"]["group_size"] = 16; },
       scheme + ".group_size: 16, expected head_dim 8"},
      {[](nlohmann::json& qc) { qc["kv_cache_scheme"]["symmetric"] = true; },
       scheme + ".symmetric: true"},
      {[](nlohmann::json& qc) { qc["kv_cache_scheme"]["dynamic"] = false; },
       scheme + ".dynamic: false"},
      {[](nlohmann::json& qc) { qc["catq"].erase("kv_cache_hadamard"); },
       "quantization_config.catq.kv_cache_hadamard: missing"},
      {[](nlohmann::json& qc) { qc["catq"]["mixing_seed"] = -1; },
       "quantization_config.catq.mixing_seed: expected a non-negative integer"},
  };
  for (const auto& c : cases) {
    LlamaConfig config = good;
    c.edit(config.original["quantization_config"]);
    EXPECT_STATUS(ParseStoredQuantization(config, "dir/config.json"),
                  absl::StatusCode::kInvalidArgument, "dir/config.json: " + c.message);
  }
}

// ---------------------------------------------------------------------------
// stories260K (head_dim 8, 4 KV heads).

class Stories260KKvCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::SharedDir().empty()) return;
    dir_ = new testing::TempDir();
    ASSERT_OK(ImportLlama2c(Env::Default(),
                            testing::SharedPath("models/stories260K/stories260K.bin"),
                            testing::SharedPath("models/stories260K/tok512.bin"), Model()));
    absl::StatusOr<LlamaModel> model = LlamaModel::Open(Model());
    ASSERT_OK(model);
    fp_ = new LlamaModel(std::move(*model));
    absl::StatusOr<std::vector<std::string>> docs =
        ReadTextDocuments(Env::Default(), testing::SharedPath("data/tinystories_sample.txt"));
    ASSERT_OK(docs);
    absl::StatusOr<Llama2cTokenizer> tokenizer =
        Llama2cTokenizer::Load(Env::Default(), Model() + "/tokenizer.bin", 512);
    ASSERT_OK(tokenizer);
    documents_ = new std::vector<std::vector<int32_t>>(TokenizeDocuments(*tokenizer, *docs));
  }
  static void TearDownTestSuite() {
    delete documents_;
    delete fp_;
    delete dir_;
  }
  static std::string Model() { return dir_->Join("hf"); }

  // The FP model's perplexity with the K/V cache at `bits`.
  static double FpPerplexity(int bits, bool hadamard) {
    KvCacheQuantizerOptions options;
    options.bits = bits;
    options.hadamard = hadamard;
    absl::StatusOr<KvCacheQuantizer> kv =
        KvCacheQuantizer::Create(fp_->config().head_dim(), options);
    EXPECT_OK(kv);
    ForwardOptions forward;
    forward.kv_hooks = {&*kv};
    absl::StatusOr<PerplexityResult> result = EvaluatePerplexity(*fp_, *documents_, forward);
    EXPECT_OK(result);
    return result.ok() ? result->perplexity : 0.0;
  }

  static testing::TempDir* dir_;
  static LlamaModel* fp_;
  static std::vector<std::vector<int32_t>>* documents_;
};

testing::TempDir* Stories260KKvCacheTest::dir_ = nullptr;
LlamaModel* Stories260KKvCacheTest::fp_ = nullptr;
std::vector<std::vector<int32_t>>* Stories260KKvCacheTest::documents_ = nullptr;

TEST_F(Stories260KKvCacheTest, EightBitsIsCloseToFpAndHadamardHelpsFourBits) {
  CATQ_REQUIRE_SHARED();
  const double fp = FpPerplexity(kFloatKvCacheBits, true);
  EXPECT_NEAR(fp, 3.548, 0.005);
  // Off is off: every bit as without the hook.
  absl::StatusOr<PerplexityResult> plain = EvaluatePerplexity(*fp_, *documents_);
  ASSERT_OK(plain);
  EXPECT_EQ(fp, plain->perplexity);
  const double kv8 = FpPerplexity(8, true);
  const double kv4 = FpPerplexity(4, true);
  const double kv4_plain = FpPerplexity(4, false);
  RecordProperty("fp", std::to_string(fp));
  RecordProperty("kv8", std::to_string(kv8));
  RecordProperty("kv4_hadamard", std::to_string(kv4));
  RecordProperty("kv4_plain", std::to_string(kv4_plain));
  EXPECT_NE(kv8, fp);
  EXPECT_NEAR(kv8 / fp, 1.0, 0.005) << kv8;
  EXPECT_GT(kv4, fp);
  EXPECT_LE(kv4, kv4_plain);
}

TEST_F(Stories260KKvCacheTest, StoredSchemeIsWhatEvaluationRuns) {
  CATQ_REQUIRE_SHARED();
  Recipe recipe;  // RTN W4, per channel, activations float: the cache is what differs.
  recipe.kv_cache_bits = 4;
  recipe.mixing_seed = 3;
  InProcessOptions in_process;
  in_process.calibration.text_path = testing::SharedPath("data/tinystories_197k.txt");
  in_process.calibration.text.max_documents = 8;
  const std::string out = dir_->Join("kv4");
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), Model(), out, recipe, in_process));
  absl::StatusOr<QuantizedModel> quantized = QuantizedModel::Open(out);
  ASSERT_OK(quantized);
  EXPECT_EQ(quantized->config().original["quantization_config"]["kv_cache_scheme"]["num_bits"], 4);
  const KvCacheQuantizer* stored = quantized->kv_cache_quantizer();
  ASSERT_NE(stored, nullptr);
  EXPECT_EQ(stored->options().bits, 4);
  EXPECT_TRUE(stored->options().hadamard);
  EXPECT_EQ(stored->options().mixing_seed, 3u);

  // The same output run by hand: its weights and site hook, and a K/V
  // quantizer made from the recipe rather than read from config.json.
  QuantizedWeightProvider weights(*quantized);
  OnlineQuantizationHook hook(*quantized);
  absl::StatusOr<KvCacheQuantizer> kv =
      KvCacheQuantizer::Create(8, {.bits = 4, .hadamard = true, .mixing_seed = recipe.mixing_seed});
  ASSERT_OK(kv);
  ForwardOptions by_hand;
  by_hand.weights = &weights;
  by_hand.hooks = {&hook};
  by_hand.kv_hooks = {&*kv};
  absl::StatusOr<PerplexityResult> expected =
      EvaluatePerplexity(quantized->model(), *documents_, by_hand);
  ASSERT_OK(expected);
  by_hand.kv_hooks.clear();
  absl::StatusOr<PerplexityResult> float_cache =
      EvaluatePerplexity(quantized->model(), *documents_, by_hand);
  ASSERT_OK(float_cache);
  EXPECT_NE(expected->perplexity, float_cache->perplexity);

  // `catq eval --model OUT`, `catq eval --quantized OUT` (and compare), and
  // `catq quantize --eval-text` (EvaluateOutput) all run the stored scheme.
  absl::StatusOr<PerplexityResult> alone = EvaluateQuantizedPerplexity(*quantized, *documents_);
  ASSERT_OK(alone);
  EXPECT_EQ(alone->perplexity, expected->perplexity);
  absl::StatusOr<KlDivergenceResult> pair =
      CompareQuantizedToReference(*fp_, *quantized, *documents_);
  ASSERT_OK(pair);
  EXPECT_EQ(pair->candidate.perplexity, expected->perplexity);
  absl::StatusOr<OutputEvaluation> output = EvaluateOutput(
      Model(), out, testing::SharedPath("data/tinystories_sample.txt"), ForwardOptions());
  ASSERT_OK(output);
  EXPECT_EQ(output->perplexity, expected->perplexity);
}

}  // namespace
}  // namespace catq
