#include "core/output/in_process_quantizer.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/model/llama2c_import.h"
#include "core/model/llama_model.h"
#include "core/model/synth.h"
#include "core/output/output_names.h"
#include "core/output/packed_linear.h"
#include "core/tensor/safetensors_dir.h"
#include "core/tensor/safetensors_names.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

nlohmann::json ReadJson(const std::string& path) {
  absl::StatusOr<std::string> text = Env::Default()->ReadFile(path);
  EXPECT_OK(text);
  return nlohmann::json::parse(text.value_or("null"));
}

// Checks the output at `out` against the input at `in`: every linear unpacks
// to within half a step of the input weight times its folded norm gain, norms
// before attn_in and mlp_in are ones, everything else is byte-identical.
void ExpectFaithfulOutput(const std::string& in, const std::string& out, const Recipe& recipe) {
  auto model = LlamaModel::Open(in);
  ASSERT_OK(model);
  auto output = SafetensorsDir::Open(out);
  ASSERT_OK(output);
  const LlamaConfig& config = model->config();
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      auto w = model->LinearWeight(layer, kind);
      ASSERT_OK(w);
      if (auto norm = SitePrecedingNorm(SiteOfLinear(kind)); norm && recipe.fold_norm_gains) {
        auto gain = model->GetFloat(NormWeightName(layer, *norm));
        ASSERT_OK(gain);
        *w *= Eigen::Map<const Eigen::VectorXf>(gain->data(), gain->size()).asDiagonal();
      }
      auto qw = ReadPackedLinear(*output, LinearModuleName(layer, kind), recipe.weights);
      ASSERT_OK(qw);
      const RowMatrixXf back = Dequantize(*qw);
      ASSERT_EQ(back.rows(), w->rows());
      ASSERT_EQ(back.cols(), w->cols());
      const int64_t groups = qw->groups();
      for (Eigen::Index r = 0; r < back.rows(); ++r) {
        for (Eigen::Index c = 0; c < back.cols(); ++c) {
          const float step = qw->scales[r * groups + GroupOfColumn(c, recipe.weights.group_size)];
          ASSERT_LE(std::fabs(back(r, c) - (*w)(r, c)), 0.5f * step * (1 + 1e-5f))
              << LinearModuleName(layer, kind) << " [" << r << ", " << c << "]";
        }
      }
    }
    for (NormKind norm : {NormKind::kInputLayernorm, NormKind::kPostAttentionLayernorm}) {
      auto view = output->Get(NormWeightName(layer, norm));
      ASSERT_OK(view);
      auto values = view->ToFloat();
      ASSERT_OK(values);
      for (float v : *values) ASSERT_EQ(v, recipe.fold_norm_gains ? 1.0f : v);
    }
  }
  for (const char* name : {kEmbedTokensName, kFinalNormName}) {
    auto a = model->Get(name);
    auto b = output->Get(name);
    ASSERT_OK(a);
    ASSERT_OK(b);
    EXPECT_EQ(a->bytes(), b->bytes()) << name;
    EXPECT_EQ(a->dtype(), b->dtype()) << name;
  }
}

class InProcessQuantizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions options;
    options.preset = "tiny";
    options.dtype = DType::kBF16;
    ASSERT_OK(WriteSyntheticModel(Env::Default(), options, model_dir()));
  }
  std::string model_dir() const { return dir_.Join("model"); }
  std::string out_dir() const { return dir_.Join("out"); }

  testing::TempDir dir_;
};

TEST_F(InProcessQuantizerTest, WritesTheOutputContract) {
  Recipe recipe;
  recipe.weights.group_size = 32;
  InProcessOptions options;
  options.max_shard_bytes = 64 << 10;  // Forces several shards for the tiny model.
  int64_t calls = 0;
  options.on_linear = [&calls](const LinearReport&, int64_t done, int64_t total) {
    EXPECT_EQ(done, ++calls);
    EXPECT_EQ(total, 14);
  };
  auto report = QuantizeModelInProcess(Env::Default(), model_dir(), out_dir(), recipe, options);
  ASSERT_OK(report);
  EXPECT_EQ(calls, 14);
  EXPECT_EQ(report->linears.size(), 14u);
  EXPECT_GT(report->shard_files.size(), 1u);
  EXPECT_TRUE(Env::Default()->FileExists(dir_.Join("out/") + kSafetensorsIndexFileName));
  EXPECT_FALSE(Env::Default()->FileExists(out_dir() + ".partial"));

  const nlohmann::json config = ReadJson(dir_.Join("out/config.json"));
  EXPECT_EQ(config["hidden_size"], 64);
  const nlohmann::json& qc = config["quantization_config"];
  EXPECT_EQ(qc["format"], "pack-quantized");
  EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["group_size"], 32);
  EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["num_bits"], 4);
  EXPECT_EQ(qc["catq"]["sites"].size(), 8u);  // 2 layers x 4 sites
  EXPECT_EQ(qc["catq"]["sites"]["model.layers.1.mlp_out"]["online"], false);

  const nlohmann::json json_report = ReadJson(dir_.Join("out/catq_report.json"));
  EXPECT_EQ(json_report["linears"].size(), 14u);
  EXPECT_EQ(json_report["totals"]["linears"], 14);
  EXPECT_LE(json_report["totals"]["max_error_steps"].get<double>(), 0.5 + 1e-6);
  EXPECT_TRUE(json_report["timings_seconds"].contains("total"));
  for (const LinearReport& linear : report->linears) {
    EXPECT_GT(linear.weight_sqnr_db, 15.0) << linear.module;
  }
  ExpectFaithfulOutput(model_dir(), out_dir(), recipe);
}

TEST_F(InProcessQuantizerTest, AsymmetricPerChannelWithoutFolding) {
  Recipe recipe;
  recipe.weights.symmetric = false;
  recipe.fold_norm_gains = false;
  recipe.scale_dtype = DType::kF32;
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), model_dir(), out_dir(), recipe, {}));
  ExpectFaithfulOutput(model_dir(), out_dir(), recipe);
  auto output = SafetensorsDir::Open(out_dir());
  ASSERT_OK(output);
  EXPECT_TRUE(output->Contains("model.layers.0.mlp.down_proj.weight_zero_point"));
}

// 8-bit weights: quantization_config says num_bits 8, each word holds four
// levels, and every linear reads back within half a step.
TEST_F(InProcessQuantizerTest, EightBitWeightsRecordTheirWidth) {
  Recipe recipe;
  recipe.weights.bits = 8;
  recipe.weights.group_size = 16;
  recipe.weights.symmetric = false;
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), model_dir(), out_dir(), recipe, {}));
  const nlohmann::json config = ReadJson(dir_.Join("out/config.json"));
  EXPECT_EQ(config["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"], 8);
  const nlohmann::json report = ReadJson(dir_.Join("out/catq_report.json"));
  EXPECT_EQ(report["recipe"]["w_bits"], 8);
  auto output = SafetensorsDir::Open(out_dir());
  ASSERT_OK(output);
  auto packed = output->Get("model.layers.0.mlp.down_proj.weight_packed");
  ASSERT_OK(packed);
  auto model = LlamaModel::Open(model_dir());
  ASSERT_OK(model);
  const MatrixShape down = LinearShape(model->config(), LinearKind::kDownProj);
  EXPECT_EQ(packed->shape(), (std::vector<int64_t>{down.rows, (down.cols + 3) / 4}));
  ExpectFaithfulOutput(model_dir(), out_dir(), recipe);
}

TEST_F(InProcessQuantizerTest, SameInputGivesByteIdenticalShards) {
  Recipe recipe;
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), model_dir(), out_dir(), recipe, {}));
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), model_dir(), dir_.Join("again"), recipe, {}));
  auto a = Env::Default()->ReadFile(dir_.Join("out/model.safetensors"));
  auto b = Env::Default()->ReadFile(dir_.Join("again/model.safetensors"));
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_TRUE(*a == *b);
}

TEST_F(InProcessQuantizerTest, ExistingOutputIsKeptUnlessReplaced) {
  Recipe recipe;
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), model_dir(), out_dir(), recipe, {}));
  EXPECT_STATUS(QuantizeModelInProcess(Env::Default(), model_dir(), out_dir(), recipe, {}),
                absl::StatusCode::kAlreadyExists, "out: already exists");
  recipe.weights.group_size = 16;
  InProcessOptions options;
  options.replace = true;
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), model_dir(), out_dir(), recipe, options));
  EXPECT_EQ(ReadJson(dir_.Join("out/config.json"))["quantization_config"]["config_groups"]
                                                  ["group_0"]["weights"]["group_size"],
            16);
}

TEST_F(InProcessQuantizerTest, FailuresLeaveNothingBehind) {
  Recipe cat;
  cat.method = Method::kCat;
  EXPECT_STATUS(QuantizeModelInProcess(Env::Default(), model_dir(), out_dir(), cat, {}),
                absl::StatusCode::kInvalidArgument,
                "recipe.method 'cat' with weight quantizer "
                "'rtn' needs calibration");
  Recipe w3;
  w3.weights.bits = 3;
  EXPECT_STATUS(QuantizeModelInProcess(Env::Default(), model_dir(), out_dir(), w3, {}),
                absl::StatusCode::kInvalidArgument,
                "recipe: weights.bits: 3 is not stored by the pack-quantized output (4, 6 or 8)");
  EXPECT_STATUS(QuantizeModelInProcess(Env::Default(), dir_.Join("nope"), out_dir(), Recipe(), {}),
                absl::StatusCode::kNotFound, "nope");
  EXPECT_FALSE(Env::Default()->FileExists(out_dir()));
  EXPECT_FALSE(Env::Default()->FileExists(out_dir() + ".partial"));
}

// The acceptance check on the real model: import stories260K, quantize
// RTN W4 as the demo does, and unpack every linear within half a step.
TEST(InProcessQuantizerStories260K, RoundTripsWithinHalfAStep) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  ASSERT_OK(ImportLlama2c(Env::Default(), testing::SharedPath("models/stories260K/stories260K.bin"),
                          testing::SharedPath("models/stories260K/tok512.bin"), dir.Join("hf")));
  Recipe recipe;
  recipe.weights.group_size = 32;
  auto report = QuantizeModelInProcess(Env::Default(), dir.Join("hf"), dir.Join("q"), recipe, {});
  ASSERT_OK(report);
  EXPECT_EQ(report->linears.size(), 35u);
  EXPECT_TRUE(Env::Default()->FileExists(dir.Join("q/tokenizer.bin")));
  ExpectFaithfulOutput(dir.Join("hf"), dir.Join("q"), recipe);
}

}  // namespace
}  // namespace catq
