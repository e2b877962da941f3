// A layer task's result written and read back is the same result, and an
// output assembled from read-back results is byte-identical to the one the
// in-process quantizer writes: the contract the service's workers rely on.
#include "core/output/layer_result_io.h"

#include <gtest/gtest.h>

#include <random>

#include "core/cat/calibration.h"
#include "core/io/staged_directory.h"
#include "core/model/synth.h"
#include "core/output/in_process_quantizer.h"
#include "core/output/output_assembler.h"
#include "core/tensor/safetensors_names.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

void ExpectSameSqnr(const std::optional<LinearSqnrReport>& a,
                    const std::optional<LinearSqnrReport>& b) {
  ASSERT_EQ(a.has_value(), b.has_value());
  if (!a.has_value()) return;
  EXPECT_EQ(a->alignment_db, b->alignment_db);
  EXPECT_EQ(a->max_alignment_db, b->max_alignment_db);
  EXPECT_EQ(a->predicted_sqnr_db, b->predicted_sqnr_db);
  EXPECT_EQ(a->measured_sqnr_db, b->measured_sqnr_db);
  EXPECT_EQ(a->activation_concentration_db, b->activation_concentration_db);
}

void ExpectSameSite(const SiteResult& a, const SiteResult& b) {
  EXPECT_EQ(a.record.site, b.record.site);
  EXPECT_EQ(a.record.online, b.record.online);
  EXPECT_EQ(a.record.folded, b.record.folded);
  EXPECT_EQ(a.record.block_size, b.record.block_size);
  EXPECT_EQ(a.report.key, b.report.key);
  EXPECT_EQ(a.report.condition, b.report.condition);
  EXPECT_EQ(a.report.seconds, b.report.seconds);
  EXPECT_EQ(a.report.stages.solve, b.report.stages.solve);
  EXPECT_EQ(a.report.stages.quantize, b.report.stages.quantize);
  EXPECT_EQ(a.report.stages.pack, b.report.stages.pack);
  EXPECT_EQ(a.report.stages.measure, b.report.stages.measure);
  ExpectSameSqnr(a.report.sqnr_after, b.report.sqnr_after);
  ASSERT_EQ(a.packed.size(), b.packed.size());
  for (size_t i = 0; i < a.packed.size(); ++i) {
    EXPECT_EQ(a.packed[i].bytes, b.packed[i].bytes);
    ASSERT_EQ(a.packed[i].specs.size(), b.packed[i].specs.size());
    for (size_t j = 0; j < a.packed[i].specs.size(); ++j) {
      EXPECT_EQ(a.packed[i].specs[j].name, b.packed[i].specs[j].name);
      EXPECT_EQ(a.packed[i].specs[j].shape, b.packed[i].specs[j].shape);
    }
    EXPECT_EQ(a.linears[i].module, b.linears[i].module);
    EXPECT_EQ(a.linears[i].weight_sqnr_db, b.linears[i].weight_sqnr_db);
    ExpectSameSqnr(a.linears[i].sqnr_before, b.linears[i].sqnr_before);
  }
  ASSERT_EQ(a.online.blocks.has_value(), b.online.blocks.has_value());
  if (a.online.blocks) {
    EXPECT_EQ(a.online.blocks->values, b.online.blocks->values);
  }
  ASSERT_EQ(a.online.rot_q.has_value(), b.online.rot_q.has_value());
  if (a.online.rot_q) {
    EXPECT_EQ(a.online.rot_q->values, b.online.rot_q->values);
  }
  ASSERT_EQ(a.folded_diagonal.has_value(), b.folded_diagonal.has_value());
  if (a.folded_diagonal) {
    EXPECT_EQ(*a.folded_diagonal, *b.folded_diagonal);
  }
}

class LayerResultIoTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    SynthOptions options;
    options.preset = "tiny";
    ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir_.Join("model")));
    auto model = LlamaModel::Open(dir_.Join("model"));
    ASSERT_OK(model);
    model_ = std::make_unique<LlamaModel>(std::move(*model));
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> token(
        3, static_cast<int32_t>(model_->config().vocab_size) - 1);
    std::vector<std::vector<int32_t>> sequences(4, std::vector<int32_t>(48));
    for (auto& sequence : sequences) {
      sequence[0] = 1;
      for (size_t i = 1; i < sequence.size(); ++i) sequence[i] = token(rng);
    }
    CalibrationOptions calibration_options;
    calibration_options.sample_tokens = 64;
    auto calibration = CollectSiteStatistics(*model_, sequences, calibration_options);
    ASSERT_OK(calibration);
    data_.statistics = std::move(calibration->statistics);
    data_.samples = std::move(calibration->samples);
  }

  Recipe RecipeOf(absl::string_view name) {
    Recipe recipe;
    recipe.activation_bits = 4;
    if (name == "cat16") {
      recipe.method = Method::kCat;
      recipe.block_size = 16;
    } else if (name == "diagonal") {
      recipe.method = Method::kCat;
      recipe.block_size = 1;
      recipe.cat_hadamard = false;
    } else if (name == "gptq") {
      recipe.method = Method::kHadamard;
      recipe.weight_quantizer = WeightQuantizer::kGptq;
      recipe.weights.group_size = 32;
    } else if (name == "w8a8") {  // 8-bit weights: four levels per word, zero points.
      recipe.method = Method::kCat;
      recipe.block_size = 16;
      recipe.weight_quantizer = WeightQuantizer::kGptq;
      recipe.weights = WeightQuantOptions{8, 32, false};
      recipe.activation_bits = 8;
    }
    return recipe;
  }

  testing::TempDir dir_;
  std::unique_ptr<LlamaModel> model_;
  CalibrationData data_;
};

TEST_P(LayerResultIoTest, RoundTripsEveryField) {
  const Recipe recipe = RecipeOf(GetParam());
  auto result = QuantizeLayer(*model_, recipe, 1, data_);
  ASSERT_OK(result);
  ASSERT_OK(WriteLayerResult(Env::Default(), dir_.Join("layer1"), *result));
  auto back = ReadLayerResult(Env::Default(), dir_.Join("layer1"));
  ASSERT_OK(back);
  EXPECT_EQ(back->layer, 1);
  EXPECT_EQ(back->quantize_seconds, result->quantize_seconds);
  for (Site site : kAllSites) {
    SCOPED_TRACE(std::string(SiteName(site)));
    ExpectSameSite(result->site(site), back->site(site));
  }
}

TEST_P(LayerResultIoTest, AssembledFromStoredResultsEqualsInProcess) {
  const Recipe recipe = RecipeOf(GetParam());
  InProcessOptions options;
  options.calibration_data = &data_;
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_.Join("model"), dir_.Join("direct"), recipe,
                                   options));

  for (int64_t layer = 0; layer < model_->config().num_hidden_layers; ++layer) {
    auto result = QuantizeLayer(*model_, recipe, layer, data_);
    ASSERT_OK(result);
    ASSERT_OK(WriteLayerResult(Env::Default(), dir_.Join(absl::StrCat("layer", layer)), *result));
  }
  ASSERT_OK(Env::Default()->CreateDirs(dir_.Join("assembled")));
  QuantizationReport report = NewQuantizationReport(*model_, dir_.Join("model"), recipe);
  const LayerResultSource stored = [&](int64_t layer) {
    return ReadLayerResult(Env::Default(), dir_.Join(absl::StrCat("layer", layer)));
  };
  ASSERT_OK(AssembleOutput(Env::Default(), *model_, dir_.Join("model"), recipe, stored, {},
                           dir_.Join("assembled"), &report));
  for (const char* name : {kSafetensorsSingleFileName, "config.json"}) {
    auto a = Env::Default()->ReadFile(dir_.Join("direct/") + name);
    auto b = Env::Default()->ReadFile(dir_.Join("assembled/") + name);
    ASSERT_OK(a);
    ASSERT_OK(b);
    EXPECT_TRUE(*a == *b) << name << " differs";
  }
}

INSTANTIATE_TEST_SUITE_P(Recipes, LayerResultIoTest,
                         ::testing::Values("rtn", "cat16", "diagonal", "gptq", "w8a8"));

TEST(LayerResultIo, RejectsAFileThatIsNotALayerResult) {
  testing::TempDir dir;
  const std::string path = dir.Join("other.safetensors");
  auto writer = SafetensorsWriter::Create(Env::Default(), path, {{"x", DType::kF32, {1}}});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Append(std::string(4, '\0')));
  ASSERT_OK((*writer)->Finish());
  auto back = ReadLayerResult(Env::Default(), path);
  EXPECT_EQ(back.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(back.status().message(), ::testing::HasSubstr("catq_layer_result"));
}

}  // namespace
}  // namespace catq
