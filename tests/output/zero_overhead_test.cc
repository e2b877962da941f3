// Tests of the zero-overhead export of the diagonal recipes (block CAT k = 1
// without mixing, SmoothQuant): every site's diagonal T folds into the norm
// gains and the v_proj / up_proj rows, also under grouped-query attention
// and with BF16 norms, so that
//   - the folded model run unquantized computes the original logits;
//   - quantized, it has the perplexity of the same recipe with T applied
//     online (unfolded) and every linear quantized as W T^-1;
//   - the stored output holds no `.catq.` tensor, its config nothing a
//     standard W4A16 engine lacks, its report says it is zero-overhead, and
//     evaluating it from its shards equals the in-memory evaluation.
// The synthetic tiny preset has 8 query heads on 4 KV heads; stories260K
// (../shared) too.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cat/calibration.h"
#include "core/cat/tied_diagonal.h"
#include "core/eval/eval_documents.h"
#include "core/eval/evaluate.h"
#include "core/eval/quantized_model.h"
#include "core/model/llama2c_import.h"
#include "core/model/llama_forward.h"
#include "core/model/perplexity.h"
#include "core/model/synth.h"
#include "core/output/calibration_data.h"
#include "core/output/gptq_export.h"
#include "core/output/in_process_quantizer.h"
#include "core/output/layer_quantizer.h"
#include "core/output/packed_linear.h"
#include "core/output/quantized_layer.h"
#include "core/quant/rtn.h"
#include "core/tensor/safetensors_dir.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

Recipe CatK1() {
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = 1;
  recipe.cat_hadamard = false;
  recipe.weights.group_size = 32;
  return recipe;
}

Recipe SmoothQuant() {
  Recipe recipe;
  recipe.method = Method::kSmoothQuant;
  recipe.weights.group_size = 32;
  return recipe;
}

// Every layer of a model held in memory as QuantizedLayers (any float
// weights, norm gains and online transforms), run as evaluation runs a
// stored output: the provider serves the layers' linears and gains, one
// QuantizedLayerHook per layer applies its transforms and activation grid.
class InMemoryModel {
 public:
  InMemoryModel(const LlamaModel& model, const Recipe& recipe, std::vector<QuantizedLayer> layers)
      : model_(model), layers_(std::move(layers)), weights_(model, layers_) {
    for (const QuantizedLayer& layer : layers_) {
      hooks_.push_back(std::make_unique<QuantizedLayerHook>(layer, recipe));
    }
  }

  ForwardOptions Options() {
    ForwardOptions options;
    options.num_threads = 2;
    options.weights = &weights_;
    for (const auto& hook : hooks_) options.hooks.push_back(hook.get());
    return options;
  }

  absl::StatusOr<double> Perplexity(const std::vector<std::vector<int32_t>>& documents) {
    CATQ_ASSIGN_OR_RETURN(PerplexityResult result,
                          EvaluatePerplexity(model_, documents, Options()));
    return result.perplexity;
  }

 private:
  class Weights : public ModelWeightProvider {
   public:
    Weights(const LlamaModel& model, const std::vector<QuantizedLayer>& layers)
        : ModelWeightProvider(model), layers_(layers) {}
    absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Linear(int64_t layer,
                                                              LinearKind kind) override {
      return layers_[static_cast<size_t>(layer)].linears[static_cast<size_t>(kind)];
    }
    absl::StatusOr<std::shared_ptr<const std::vector<float>>> NormGain(int64_t layer,
                                                                       NormKind kind) override {
      const QuantizedLayer& q = layers_[static_cast<size_t>(layer)];
      return kind == NormKind::kInputLayernorm ? q.input_norm : q.post_attention_norm;
    }

   private:
    const std::vector<QuantizedLayer>& layers_;
  };

  const LlamaModel& model_;
  const std::vector<QuantizedLayer> layers_;
  Weights weights_;
  std::vector<std::unique_ptr<QuantizedLayerHook>> hooks_;
};

// Every layer's result, with the dequantized and the unquantized
// transformed linears kept.
absl::StatusOr<std::vector<LayerResult>> QuantizeLayers(const LlamaModel& model,
                                                        const Recipe& recipe,
                                                        const CalibrationData& data) {
  std::vector<LayerResult> results;
  for (int64_t layer = 0; layer < model.config().num_hidden_layers; ++layer) {
    CATQ_ASSIGN_OR_RETURN(LayerResult result,
                          QuantizeLayer(model, recipe, layer, data,
                                        {.keep_dequantized = true, .keep_transformed = true}));
    results.push_back(std::move(result));
  }
  return results;
}

// The folded model as stored: the dequantized linears, or with `unquantized`
// the transformed float ones (W T^-1 with the producers' rows scaled).
absl::StatusOr<std::vector<QuantizedLayer>> FoldedLayers(const LlamaModel& model,
                                                         const Recipe& recipe,
                                                         std::vector<LayerResult> results,
                                                         bool unquantized) {
  std::vector<QuantizedLayer> layers;
  for (LayerResult& result : results) {
    for (SiteResult& site : result.sites) {
      if (!site.folded_diagonal.has_value()) {
        return absl::InternalError(absl::StrCat(site.report.key, " is not folded"));
      }
      if (unquantized) site.dequantized = site.transformed;
    }
    CATQ_ASSIGN_OR_RETURN(QuantizedLayer layer, MakeQuantizedLayer(model, recipe, result));
    layers.push_back(std::move(layer));
  }
  return layers;
}

// The same recipe unfolded: each site's T (the folded run's) applied online
// to the activations, the norms as the recipe leaves them without a fold,
// and every linear quantized from W T^-1 alone: the readers' as stored,
// v_proj's and up_proj's requantized from their transformed rows divided
// again by the row scales the fold gave them.
absl::StatusOr<std::vector<QuantizedLayer>> UnfoldedLayers(
    const LlamaModel& model, const Recipe& recipe, const std::vector<LayerResult>& results) {
  const LlamaConfig& config = model.config();
  std::vector<QuantizedLayer> layers;
  for (const LayerResult& result : results) {
    QuantizedLayer layer;
    layer.layer = result.layer;
    for (Site site : kAllSites) {
      const SiteResult& site_result = result.site(site);
      const std::vector<LinearKind> kinds = LinearsOfSite(site);
      for (size_t i = 0; i < kinds.size(); ++i) {
        layer.linears[static_cast<size_t>(kinds[i])] =
            std::make_shared<const RowMatrixXf>(site_result.dequantized[i]);
      }
      CATQ_ASSIGN_OR_RETURN(
          layer.transforms[static_cast<size_t>(site)],
          SiteTransform::CreateDiagonal(*site_result.folded_diagonal, std::nullopt));
    }
    const std::pair<Site, LinearKind> producers[] = {{Site::kAttnOut, LinearKind::kVProj},
                                                     {Site::kMlpOut, LinearKind::kUpProj}};
    for (const auto& [site, kind] : producers) {
      Eigen::VectorXd scales = *result.site(site).folded_diagonal;
      if (site == Site::kAttnOut && config.num_key_value_heads < config.num_attention_heads) {
        CATQ_ASSIGN_OR_RETURN(
            scales, TiedGroupValues(scales, AttentionOutputGroups(config.num_attention_heads,
                                                                  config.num_key_value_heads,
                                                                  config.head_dim())));
      }
      const Site reader = SiteOfLinear(kind);
      const std::vector<LinearKind> kinds = LinearsOfSite(reader);
      const size_t index = std::find(kinds.begin(), kinds.end(), kind) - kinds.begin();
      const RowMatrixXf unscaled =
          scales.cast<float>().cwiseInverse().asDiagonal() * result.site(reader).transformed[index];
      CATQ_ASSIGN_OR_RETURN(
          QuantizedWeight q,
          QuantizeRtn(unscaled, recipe.weights, StorageScaleRounding(recipe.scale_dtype)));
      layer.linears[static_cast<size_t>(kind)] = std::make_shared<const RowMatrixXf>(Dequantize(q));
    }
    for (NormKind norm : {NormKind::kInputLayernorm, NormKind::kPostAttentionLayernorm}) {
      CATQ_ASSIGN_OR_RETURN(std::vector<float> gain,
                            model.GetFloat(NormWeightName(result.layer, norm)));
      if (recipe.fold_norm_gains) gain.assign(gain.size(), 1.0f);
      auto shared = std::make_shared<const std::vector<float>>(std::move(gain));
      (norm == NormKind::kInputLayernorm ? layer.input_norm : layer.post_attention_norm) = shared;
    }
    layers.push_back(std::move(layer));
  }
  return layers;
}

class ZeroOverheadTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    SynthOptions synth;
    synth.preset = "tiny";
    synth.dtype = GetParam();
    ASSERT_OK(WriteSyntheticModel(Env::Default(), synth, dir_.Join("model")));
    absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir_.Join("model"));
    ASSERT_OK(model);
    model_ = std::make_unique<LlamaModel>(std::move(*model));
    ASSERT_LT(model_->config().num_key_value_heads, model_->config().num_attention_heads);
    std::mt19937 rng(5);
    std::uniform_int_distribution<int32_t> token(3, model_->config().vocab_size - 1);
    for (int s = 0; s < 12; ++s) {
      std::vector<int32_t> ids = {1};
      for (int i = 1; i < 48; ++i) ids.push_back(token(rng));
      (s < 8 ? calibration_ : documents_).push_back(std::move(ids));
    }
    CalibrationOptions options;
    options.sample_tokens = 0;
    options.forward.num_threads = 2;
    absl::StatusOr<Calibration> collected = CollectSiteStatistics(*model_, calibration_, options);
    ASSERT_OK(collected);
    data_.statistics = std::move(collected->statistics);
  }

  testing::TempDir dir_;
  std::unique_ptr<LlamaModel> model_;
  std::vector<std::vector<int32_t>> calibration_;
  std::vector<std::vector<int32_t>> documents_;
  CalibrationData data_;
};

// The folded float model computes the original function. Folding moves
// each t_j into a norm gain (g t, F32) or a producer's rows and 1 / t_j into
// the readers' columns (W T^-1 rounded to float), so the two differ only by
// float rounding carried through two layers: the logits (|logit| < 5 here)
// agree to 1e-5, ~20 ulps of the largest (measured: up to 1.5e-6). A wrong
// fold (a v_proj row scaled for the wrong query head, t left out of a gain)
// moves them by O(0.1).
TEST_P(ZeroOverheadTest, FoldedFloatModelComputesTheOriginalLogits) {
  for (const Recipe& recipe : {CatK1(), SmoothQuant()}) {
    SCOPED_TRACE(std::string(MethodName(recipe.method)));
    absl::StatusOr<std::vector<LayerResult>> results = QuantizeLayers(*model_, recipe, data_);
    ASSERT_OK(results);
    absl::StatusOr<std::vector<QuantizedLayer>> folded =
        FoldedLayers(*model_, recipe, *results, /*unquantized=*/true);
    ASSERT_OK(folded);
    InMemoryModel run(*model_, recipe, *std::move(folded));
    for (const std::vector<int32_t>& document : documents_) {
      absl::StatusOr<RowMatrixXf> want = ComputeLogits(*model_, document);
      absl::StatusOr<RowMatrixXf> got = ComputeLogits(*model_, document, run.Options());
      ASSERT_OK(want);
      ASSERT_OK(got);
      EXPECT_LT((*got - *want).cwiseAbs().maxCoeff(), 1e-5)
          << "largest logit " << want->cwiseAbs().maxCoeff();
    }
  }
}

// Quantized, the folded model has the perplexity of the same recipe with T
// applied online. With A16 the two differ only where the fold multiplies:
// v_proj and up_proj are quantized with their rows scaled by t, which with
// F32 scales scales the scale by t and leaves every level as it was, up to
// float rounding of w t / (amax t / 7) (a level flips only at an exact tie).
// So the perplexities agree to float rounding: 1e-6 relative (measured: up
// to 3e-8; quantization itself moves them by ~2e-3). With F16 scales the
// rounding of each scale up to F16 does not commute with t and some levels
// flip, which is why this comparison stores F32 scales.
TEST_P(ZeroOverheadTest, QuantizedPerplexityEqualsTheUnfoldedRecipe) {
  for (Recipe recipe : {CatK1(), SmoothQuant()}) {
    SCOPED_TRACE(std::string(MethodName(recipe.method)));
    recipe.scale_dtype = DType::kF32;
    absl::StatusOr<std::vector<LayerResult>> results = QuantizeLayers(*model_, recipe, data_);
    ASSERT_OK(results);
    absl::StatusOr<std::vector<QuantizedLayer>> unfolded =
        UnfoldedLayers(*model_, recipe, *results);
    ASSERT_OK(unfolded);
    absl::StatusOr<std::vector<QuantizedLayer>> folded =
        FoldedLayers(*model_, recipe, *std::move(results), /*unquantized=*/false);
    ASSERT_OK(folded);
    InMemoryModel folded_run(*model_, recipe, *std::move(folded));
    InMemoryModel unfolded_run(*model_, recipe, *std::move(unfolded));
    absl::StatusOr<double> folded_ppl = folded_run.Perplexity(documents_);
    absl::StatusOr<double> unfolded_ppl = unfolded_run.Perplexity(documents_);
    absl::StatusOr<PerplexityResult> fp = EvaluatePerplexity(*model_, documents_);
    ASSERT_OK(folded_ppl);
    ASSERT_OK(unfolded_ppl);
    ASSERT_OK(fp);
    EXPECT_NEAR(*folded_ppl, *unfolded_ppl, 1e-6 * *unfolded_ppl);
    // The tolerance has teeth: quantization moved the perplexity a hundred
    // times as far from the FP model's.
    EXPECT_GT(std::abs(*folded_ppl - fp->perplexity), 1e-4 * fp->perplexity);
  }
}

// The stored W4A16 output of block CAT k = 1 has no online transform: no
// `.catq.` tensor, every site folded, F32 norm gains, and a
// quantization_config a compressed-tensors W4A16 loader reads as plain
// pack-quantized weights (no activation scheme). Evaluated from its shards
// it has exactly the in-memory folded model's perplexity.
TEST_P(ZeroOverheadTest, StoredOutputIsPlainW4A16AndEvaluatesAsInMemory) {
  const Recipe recipe = CatK1();
  InProcessOptions options;
  options.calibration_data = &data_;
  const std::string out = dir_.Join("out");
  absl::StatusOr<QuantizationReport> report =
      QuantizeModelInProcess(Env::Default(), dir_.Join("model"), out, recipe, options);
  ASSERT_OK(report);
  absl::StatusOr<SafetensorsDir> stored = SafetensorsDir::Open(out);
  ASSERT_OK(stored);
  for (const std::string& name : stored->TensorNames()) {
    EXPECT_EQ(name.find(".catq."), std::string::npos) << name;
    if (name.find("layernorm") != std::string::npos) {
      EXPECT_EQ(DTypeName(stored->Get(name)->dtype()), "F32") << name;
    }
  }
  const nlohmann::json qc =
      nlohmann::json::parse(testing::ReadTestFile(out + "/config.json"))["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "compressed-tensors");
  EXPECT_EQ(qc["format"], "pack-quantized");
  EXPECT_TRUE(qc["config_groups"]["group_0"]["input_activations"].is_null());
  EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["num_bits"], 4);
  for (const auto& [key, site] : qc["catq"]["sites"].items()) {
    EXPECT_FALSE(site["online"]) << key;
    EXPECT_TRUE(site["folded"]) << key;
  }

  const int64_t sites = 4 * model_->config().num_hidden_layers;
  EXPECT_EQ(report->online_sites, 0);
  EXPECT_EQ(report->folded_sites, sites);
  const nlohmann::json totals =
      nlohmann::json::parse(testing::ReadTestFile(out + "/catq_report.json"))["totals"];
  EXPECT_EQ(totals["zero_overhead"], true);
  EXPECT_EQ(totals["online_transform_sites"], 0);
  EXPECT_EQ(totals["folded_sites"], sites);

  absl::StatusOr<QuantizedModel> quantized = QuantizedModel::Open(out);
  ASSERT_OK(quantized);
  ForwardOptions forward;
  forward.num_threads = 2;
  absl::StatusOr<PerplexityResult> from_shards =
      EvaluateQuantizedPerplexity(*quantized, documents_, forward);
  ASSERT_OK(from_shards);
  absl::StatusOr<std::vector<LayerResult>> results = QuantizeLayers(*model_, recipe, data_);
  ASSERT_OK(results);
  absl::StatusOr<std::vector<QuantizedLayer>> folded =
      FoldedLayers(*model_, recipe, *std::move(results), /*unquantized=*/false);
  ASSERT_OK(folded);
  InMemoryModel in_memory(*model_, recipe, *std::move(folded));
  absl::StatusOr<double> in_memory_ppl = in_memory.Perplexity(documents_);
  ASSERT_OK(in_memory_ppl);
  EXPECT_EQ(from_shards->perplexity, *in_memory_ppl);
}

// A recipe with a transform that cannot fold (Hadamard mixing) is reported
// as running online at every site; RTN, with no transform, as zero-overhead.
TEST_P(ZeroOverheadTest, ReportSaysWhetherAnyTransformRunsOnline) {
  Recipe hadamard;
  hadamard.method = Method::kHadamard;
  Recipe rtn;
  const int64_t sites = 4 * model_->config().num_hidden_layers;
  for (const Recipe& recipe : {hadamard, rtn}) {
    const std::string out = dir_.Join(std::string(MethodName(recipe.method)));
    absl::StatusOr<QuantizationReport> report =
        QuantizeModelInProcess(Env::Default(), dir_.Join("model"), out, recipe, {});
    ASSERT_OK(report);
    const bool online = recipe.method == Method::kHadamard;
    EXPECT_EQ(report->online_sites, online ? sites : 0);
    EXPECT_EQ(report->folded_sites, 0);
    const nlohmann::json totals =
        nlohmann::json::parse(testing::ReadTestFile(out + "/catq_report.json"))["totals"];
    EXPECT_EQ(totals["zero_overhead"], !online);
  }
}

INSTANTIATE_TEST_SUITE_P(NormDTypes, ZeroOverheadTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

// stories260K (8 query heads on 4 KV heads) at W4A16 with block CAT k = 1:
// no `.catq.` tensor, the GPTQ export accepts it, and `catq eval
// --quantized` (the stored shards) equals the in-memory evaluation.
TEST(ZeroOverheadStories260KTest, CatK1W4A16IsZeroOverheadAndExportsAsGptq) {
  CATQ_REQUIRE_SHARED();
  Env* env = Env::Default();
  testing::TempDir dir;
  ASSERT_OK(ImportLlama2c(env, testing::SharedPath("models/stories260K/stories260K.bin"),
                          testing::SharedPath("models/stories260K/tok512.bin"), dir.Join("hf")));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.Join("hf"));
  ASSERT_OK(model);
  ASSERT_LT(model->config().num_key_value_heads, model->config().num_attention_heads);
  const Recipe recipe = CatK1();
  CalibrationInput input;
  input.text_path = testing::SharedPath("data/tinystories_197k.txt");
  input.text.max_documents = 16;
  input.sample_tokens = 0;
  input.threads = 2;
  CalibrationReport calibration_report;
  absl::StatusOr<CalibrationData> data =
      LoadCalibration(env, *model, dir.Join("hf"), recipe, input, &calibration_report);
  ASSERT_OK(data);
  InProcessOptions options;
  options.calibration_data = &*data;
  ASSERT_OK(QuantizeModelInProcess(env, dir.Join("hf"), dir.Join("out"), recipe, options));

  absl::StatusOr<SafetensorsDir> stored = SafetensorsDir::Open(dir.Join("out"));
  ASSERT_OK(stored);
  int catq_tensors = 0;
  for (const std::string& name : stored->TensorNames()) {
    if (name.find(".catq.") != std::string::npos) ++catq_tensors;
  }
  EXPECT_EQ(catq_tensors, 0);
  absl::StatusOr<GptqExportSummary> exported =
      ExportGptqLayout(env, dir.Join("out"), dir.Join("gptq"), GptqExportOptions());
  ASSERT_OK(exported);
  EXPECT_EQ(exported->linears, 7 * model->config().num_hidden_layers);

  absl::StatusOr<std::vector<std::vector<int32_t>>> documents =
      ReadEvalDocuments(dir.Join("hf"), testing::SharedPath("data/tinystories_sample.txt"),
                        model->config().vocab_size);
  ASSERT_OK(documents);
  documents->resize(std::min<size_t>(documents->size(), 8));
  absl::StatusOr<QuantizedModel> quantized = QuantizedModel::Open(dir.Join("out"));
  ASSERT_OK(quantized);
  ForwardOptions forward;
  forward.num_threads = 2;
  absl::StatusOr<PerplexityResult> from_shards =
      EvaluateQuantizedPerplexity(*quantized, *documents, forward);
  ASSERT_OK(from_shards);
  absl::StatusOr<std::vector<LayerResult>> results = QuantizeLayers(*model, recipe, *data);
  ASSERT_OK(results);
  absl::StatusOr<std::vector<QuantizedLayer>> folded =
      FoldedLayers(*model, recipe, *std::move(results), /*unquantized=*/false);
  ASSERT_OK(folded);
  InMemoryModel in_memory(*model, recipe, *std::move(folded));
  absl::StatusOr<double> in_memory_ppl = in_memory.Perplexity(*documents);
  ASSERT_OK(in_memory_ppl);
  EXPECT_EQ(from_shards->perplexity, *in_memory_ppl);
}

}  // namespace
}  // namespace catq
