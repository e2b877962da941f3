#include "core/model/synth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/model/llama_model.h"
#include "core/tensor/half.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::testing::ElementsAreArray;

std::string ModelBytes(const std::string& dir) {
  absl::StatusOr<std::string> bytes = Env::Default()->ReadFile(dir + "/model.safetensors");
  return bytes.ok() ? *bytes : std::string();
}

TEST(Synth, PresetsHaveTheirShapes) {
  absl::StatusOr<LlamaConfig> tiny = SynthPresetConfig("tiny");
  ASSERT_OK(tiny);
  EXPECT_EQ(tiny->hidden_size, 64);
  EXPECT_EQ(tiny->intermediate_size, 172);
  EXPECT_EQ(tiny->num_hidden_layers, 2);
  EXPECT_EQ(tiny->num_key_value_heads, 4);
  EXPECT_EQ(tiny->vocab_size, 512);
  EXPECT_EQ(tiny->max_position_embeddings, 256);
  absl::StatusOr<LlamaConfig> seven = SynthPresetConfig("7b");
  ASSERT_OK(seven);
  EXPECT_EQ(seven->hidden_size, 4096);
  EXPECT_EQ(seven->intermediate_size, 11008);
  EXPECT_EQ(seven->num_hidden_layers, 32);
  EXPECT_EQ(seven->num_key_value_heads, 32);
  EXPECT_EQ(seven->vocab_size, 32000);
  absl::StatusOr<LlamaConfig> one = SynthPresetConfig("1b");
  ASSERT_OK(one);
  EXPECT_EQ(one->kv_dim(), 512);
  EXPECT_TRUE(one->tie_word_embeddings);
  for (const char* preset : {"tiny", "small", "1b", "7b"}) {
    absl::StatusOr<LlamaConfig> c = SynthPresetConfig(preset);
    ASSERT_OK(c);
    EXPECT_OK(ValidateLlamaConfig(*c));
  }
  EXPECT_STATUS(SynthPresetConfig("13b"), absl::StatusCode::kInvalidArgument,
                "unknown preset \"13b\"");
}

TEST(Synth, TinyModelOpensAndIsDeterministic) {
  testing::TempDir a, b, c;
  SynthOptions options;
  options.seed = 7;
  ASSERT_OK(WriteSyntheticModel(Env::Default(), options, a.path()));
  ASSERT_OK(WriteSyntheticModel(Env::Default(), options, b.path()));
  options.seed = 8;
  ASSERT_OK(WriteSyntheticModel(Env::Default(), options, c.path()));
  EXPECT_FALSE(Env::Default()->FileExists(a.Join("model.safetensors.index.json")));
  EXPECT_FALSE(Env::Default()->FileExists(a.Join("tokenizer.bin")));
  const std::string bytes_a = ModelBytes(a.path());
  ASSERT_FALSE(bytes_a.empty());
  EXPECT_EQ(bytes_a, ModelBytes(b.path()));
  EXPECT_NE(bytes_a, ModelBytes(c.path()));

  absl::StatusOr<LlamaModel> model = LlamaModel::Open(a.path());
  ASSERT_OK(model);
  EXPECT_EQ(model->config().num_hidden_layers, 2);
  EXPECT_FALSE(model->config().tie_word_embeddings);
  absl::StatusOr<TensorView> q = model->Get(LinearWeightName(1, LinearKind::kQProj));
  ASSERT_OK(q);
  EXPECT_EQ(q->dtype(), DType::kF32);
  // Different tensors draw from different streams.
  absl::StatusOr<RowMatrixXf> q0 = model->LinearWeight(0, LinearKind::kQProj);
  absl::StatusOr<RowMatrixXf> o0 = model->LinearWeight(0, LinearKind::kOProj);
  ASSERT_OK(q0);
  ASSERT_OK(o0);
  EXPECT_NE((*q0)(0, 0), (*o0)(0, 0));
}

TEST(Synth, OutlierChannelsAreInTheGainsAndCompensatedInTheReaders) {
  testing::TempDir dir;
  SynthOptions options;
  options.seed = 3;
  ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir.path()));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  const std::vector<int64_t> outliers = SynthOutlierChannels(options, 64);
  ASSERT_EQ(outliers.size(), 4u);
  EXPECT_THAT(
      model->config().original["catq_synthetic"]["outlier_channels"].get<std::vector<int64_t>>(),
      ElementsAreArray(outliers));
  for (int64_t layer = 0; layer < 2; ++layer) {
    for (NormKind norm : {NormKind::kInputLayernorm, NormKind::kPostAttentionLayernorm}) {
      absl::StatusOr<std::vector<float>> gains = model->GetFloat(NormWeightName(layer, norm));
      ASSERT_OK(gains);
      std::vector<int64_t> large;
      for (int64_t c = 0; c < 64; ++c) {
        const float g = (*gains)[c];
        if (g > 10) {
          large.push_back(c);
          EXPECT_GE(g, 20.0f);
          EXPECT_LE(g, 50.0f);
        } else {
          EXPECT_NEAR(g, 1.0f, 0.6f);
        }
      }
      EXPECT_EQ(large, outliers);
    }
    // q_proj's outlier columns are damped by the gains: W diag(g) is N(0, 1/64).
    absl::StatusOr<std::vector<float>> gains =
        model->GetFloat(NormWeightName(layer, NormKind::kInputLayernorm));
    absl::StatusOr<RowMatrixXf> q = model->LinearWeight(layer, LinearKind::kQProj);
    ASSERT_OK(gains);
    ASSERT_OK(q);
    const Eigen::VectorXf g = Eigen::Map<const Eigen::VectorXf>(gains->data(), 64);
    const RowMatrixXf folded = *q * g.asDiagonal();
    const double folded_std = std::sqrt(folded.squaredNorm() / folded.size());
    EXPECT_NEAR(folded_std, 1.0 / 8, 0.02);
    for (int64_t c : outliers) EXPECT_LT(q->col(c).norm(), 0.5 * folded.col(c).norm());
  }
  // The embedding carries the outliers in the residual stream.
  absl::StatusOr<RowMatrixXf> embed = model->GetMatrix(kEmbedTokensName);
  ASSERT_OK(embed);
  const double typical = embed->col(outliers[0] == 0 ? 1 : 0).norm();
  for (int64_t c : outliers) EXPECT_GT(embed->col(c).norm(), 5 * typical);
}

TEST(Synth, Bf16IsTheF32ModelRounded) {
  testing::TempDir f32_dir, bf16_dir;
  SynthOptions options;
  options.seed = 11;
  ASSERT_OK(WriteSyntheticModel(Env::Default(), options, f32_dir.path()));
  options.dtype = DType::kBF16;
  ASSERT_OK(WriteSyntheticModel(Env::Default(), options, bf16_dir.path()));
  absl::StatusOr<LlamaModel> f32 = LlamaModel::Open(f32_dir.path());
  absl::StatusOr<LlamaModel> bf16 = LlamaModel::Open(bf16_dir.path());
  ASSERT_OK(f32);
  ASSERT_OK(bf16);
  EXPECT_EQ(bf16->config().torch_dtype, "bfloat16");
  for (const char* name : {kEmbedTokensName, "model.layers.1.mlp.down_proj.weight",
                           "model.layers.0.input_layernorm.weight", kLmHeadName}) {
    absl::StatusOr<TensorView> view = bf16->Get(name);
    ASSERT_OK(view);
    EXPECT_EQ(view->dtype(), DType::kBF16) << name;
    absl::StatusOr<std::vector<float>> exact = f32->GetFloat(name);
    absl::StatusOr<std::vector<float>> rounded = bf16->GetFloat(name);
    ASSERT_OK(exact);
    ASSERT_OK(rounded);
    ASSERT_EQ(exact->size(), rounded->size());
    for (size_t i = 0; i < exact->size(); ++i) {
      ASSERT_EQ((*rounded)[i], BFloat16ToFloat(FloatToBFloat16((*exact)[i]))) << name << " " << i;
    }
  }
}

TEST(Synth, ShardsAndLayerOverride) {
  testing::TempDir dir;
  SynthOptions options;
  options.preset = "small";
  options.num_layers = 1;
  options.dtype = DType::kF16;
  options.max_shard_bytes = 1 << 20;  // small is ~2.4 MiB in F16 with one layer.
  ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir.path()));
  EXPECT_TRUE(Env::Default()->FileExists(dir.Join("model.safetensors.index.json")));
  EXPECT_FALSE(Env::Default()->FileExists(dir.Join("model.safetensors")));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  EXPECT_EQ(model->config().num_hidden_layers, 1);
  EXPECT_EQ(model->config().hidden_size, 256);
  EXPECT_EQ(model->config().torch_dtype, "float16");
  absl::StatusOr<TensorView> down = model->Get(LinearWeightName(0, LinearKind::kDownProj));
  ASSERT_OK(down);
  EXPECT_EQ(down->dtype(), DType::kF16);
  EXPECT_EQ(down->shape(), (std::vector<int64_t>{256, 688}));
}

TEST(Synth, BadOptionsAreNamed) {
  testing::TempDir dir;
  Env* env = Env::Default();
  SynthOptions options;
  options.dtype = DType::kI8;
  EXPECT_STATUS(WriteSyntheticModel(env, options, dir.path()), absl::StatusCode::kInvalidArgument,
                "dtype I8 is not a float type");
  options = SynthOptions();
  options.outlier_channels = 65;
  EXPECT_STATUS(WriteSyntheticModel(env, options, dir.path()), absl::StatusCode::kInvalidArgument,
                "outlier_channels 65");
  options = SynthOptions();
  options.outlier_gain_min = 60;
  EXPECT_STATUS(WriteSyntheticModel(env, options, dir.path()), absl::StatusCode::kInvalidArgument,
                "outlier gains");
  options = SynthOptions();
  options.num_layers = -1;
  EXPECT_STATUS(WriteSyntheticModel(env, options, dir.path()), absl::StatusCode::kInvalidArgument,
                "num_layers -1");
  options = SynthOptions();
  options.preset = "huge";
  EXPECT_STATUS(WriteSyntheticModel(env, options, dir.path()), absl::StatusCode::kInvalidArgument,
                "unknown preset \"huge\"");
  EXPECT_FALSE(env->FileExists(dir.Join("config.json")));
}

TEST(Synth, NoOutliersMeansPlainGains) {
  testing::TempDir dir;
  SynthOptions options;
  options.outlier_channels = 0;
  options.num_layers = 1;
  ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir.path()));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  absl::StatusOr<std::vector<float>> gains =
      model->GetFloat(NormWeightName(0, NormKind::kInputLayernorm));
  ASSERT_OK(gains);
  EXPECT_LT(*std::max_element(gains->begin(), gains->end()), 2.0f);
}

}  // namespace
}  // namespace catq
