#include "core/model/llama_model.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "core/tensor/half.h"
#include "core/tensor/safetensors_writer.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

LlamaConfig SmallConfig(bool tied) {
  LlamaConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.vocab_size = 32;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = tied;
  return c;
}

// Writes config.json and model.safetensors holding ExpectedLlamaTensors(config),
// after `edit` has changed the specs; every element is 0.5 (or 0 for integers),
// except that `poison` (when non-empty) gets an infinity at element 3.
absl::Status WriteModel(const std::string& dir, const LlamaConfig& config,
                        const std::function<void(std::vector<TensorSpec>&)>& edit = nullptr,
                        const std::string& poison = "") {
  Env* env = Env::Default();
  std::vector<TensorSpec> specs;
  for (const ExpectedTensor& t : ExpectedLlamaTensors(config)) {
    specs.push_back({t.name, DType::kF32, t.shape});
  }
  if (edit) edit(specs);
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(env, dir + "/model.safetensors", specs);
  if (!writer.ok()) return writer.status();
  for (const TensorSpec& spec : specs) {
    const size_t size = DTypeSize(spec.dtype);
    const uint64_t count = spec.NumBytes() / size;
    std::string bytes(spec.NumBytes(), '\0');
    for (uint64_t i = 0; i < count; ++i) {
      float value = spec.name == poison && i == 3 ? std::numeric_limits<float>::infinity() : 0.5f;
      if (spec.dtype == DType::kF32) std::memcpy(bytes.data() + 4 * i, &value, 4);
      if (spec.dtype == DType::kBF16) {
        const uint16_t b = FloatToBFloat16(value);
        std::memcpy(bytes.data() + 2 * i, &b, 2);
      }
    }
    absl::Status s = (*writer)->Append(bytes);
    if (!s.ok()) return s;
  }
  absl::Status s = (*writer)->Finish();
  if (!s.ok()) return s;
  return WriteFileAtomically(env, dir + "/config.json", LlamaConfigToJson(config));
}

TEST(LlamaModel, OpensAValidModel) {
  testing::TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(false)));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  EXPECT_EQ(model->config().kv_dim(), 8);
  EXPECT_EQ(model->lm_head_name(), kLmHeadName);
  EXPECT_EQ(model->dir(), dir.path());
  absl::StatusOr<RowMatrixXf> k = model->LinearWeight(1, LinearKind::kKProj);
  ASSERT_OK(k);
  EXPECT_EQ(k->rows(), 8);
  EXPECT_EQ(k->cols(), 16);
  EXPECT_EQ((*k)(7, 15), 0.5f);
  absl::StatusOr<std::vector<float>> norm = model->GetFloat(kFinalNormName);
  ASSERT_OK(norm);
  EXPECT_EQ(norm->size(), 16u);
  EXPECT_STATUS(model->LinearWeight(2, LinearKind::kQProj), absl::StatusCode::kInvalidArgument,
                "layer 2 is out of range");
  EXPECT_STATUS(model->GetMatrix(kFinalNormName), absl::StatusCode::kInvalidArgument,
                "expected a 2-D tensor, got shape [16]");
  EXPECT_FALSE(model->Get("nope").ok());
}

TEST(LlamaModel, TiedModelUsesTheEmbeddingAsLmHead) {
  testing::TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(true)));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  EXPECT_EQ(model->lm_head_name(), kEmbedTokensName);
}

TEST(LlamaModel, Bf16WeightsAreReadAsFloat) {
  testing::TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(true), [](std::vector<TensorSpec>& specs) {
    for (TensorSpec& s : specs) s.dtype = DType::kBF16;
  }));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  absl::StatusOr<RowMatrixXf> up = model->LinearWeight(0, LinearKind::kUpProj);
  ASSERT_OK(up);
  EXPECT_EQ((*up)(23, 0), 0.5f);
}

TEST(LlamaModel, MissingTensorIsNamed) {
  testing::TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(true), [](std::vector<TensorSpec>& specs) {
    std::erase_if(
        specs, [](const TensorSpec& s) { return s.name == "model.layers.1.mlp.up_proj.weight"; });
  }));
  EXPECT_STATUS(LlamaModel::Open(dir.path()), absl::StatusCode::kInvalidArgument,
                "model.layers.1.mlp.up_proj.weight: missing from");
}

// A quantized output stores packed linears instead of `<m>.weight`: with
// require_linear_weights off, absent linears are allowed (and NotFound when
// read), present ones are still checked, and the rest stays required.
TEST(LlamaModel, LinearsMayBeAbsentWhenAllowed) {
  testing::TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(true), [](std::vector<TensorSpec>& specs) {
    std::erase_if(specs, [](const TensorSpec& s) {
      return s.name == "model.layers.1.mlp.up_proj.weight" ||
             s.name == "model.layers.0.self_attn.q_proj.weight";
    });
  }));
  LlamaModelOptions options;
  options.require_linear_weights = false;
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path(), Env::Default(), options);
  ASSERT_OK(model);
  EXPECT_EQ(model->LinearWeight(1, LinearKind::kUpProj).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_OK(model->LinearWeight(1, LinearKind::kDownProj));

  testing::TempDir bad;
  ASSERT_OK(WriteModel(bad.path(), SmallConfig(true), [](std::vector<TensorSpec>& specs) {
    for (TensorSpec& s : specs) {
      if (s.name == "model.layers.0.self_attn.k_proj.weight") s.shape = {16, 16};
    }
  }));
  EXPECT_STATUS(LlamaModel::Open(bad.path(), Env::Default(), options),
                absl::StatusCode::kInvalidArgument,
                "model.layers.0.self_attn.k_proj.weight: expected shape [8, 16]");
  testing::TempDir no_norm;
  ASSERT_OK(WriteModel(no_norm.path(), SmallConfig(true), [](std::vector<TensorSpec>& specs) {
    std::erase_if(specs, [](const TensorSpec& s) { return s.name == kFinalNormName; });
  }));
  EXPECT_STATUS(LlamaModel::Open(no_norm.path(), Env::Default(), options),
                absl::StatusCode::kInvalidArgument, "model.norm.weight: missing from");
}

TEST(LlamaModel, UntiedModelNeedsLmHead) {
  testing::TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(false), [](std::vector<TensorSpec>& specs) {
    specs.pop_back();  // lm_head.weight
  }));
  EXPECT_STATUS(LlamaModel::Open(dir.path()), absl::StatusCode::kInvalidArgument,
                "lm_head.weight: missing from");
}

TEST(LlamaModel, WrongShapeNamesExpectedAndActual) {
  testing::TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(true), [](std::vector<TensorSpec>& specs) {
    for (TensorSpec& s : specs) {
      if (s.name == "model.layers.0.self_attn.k_proj.weight") s.shape = {16, 16};
    }
  }));
  EXPECT_STATUS(LlamaModel::Open(dir.path()), absl::StatusCode::kInvalidArgument,
                "model.layers.0.self_attn.k_proj.weight: expected shape [8, 16], got [16, 16]");
}

TEST(LlamaModel, TiedButPresentLmHeadIsChecked) {
  testing::TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(true), [](std::vector<TensorSpec>& specs) {
    specs.push_back({kLmHeadName, DType::kF32, {31, 16}});
  }));
  EXPECT_STATUS(LlamaModel::Open(dir.path()), absl::StatusCode::kInvalidArgument,
                "lm_head.weight: expected shape [32, 16], got [31, 16]");
}

TEST(LlamaModel, IntegerDtypeIsRefused) {
  testing::TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(true),
                       [](std::vector<TensorSpec>& specs) { specs[0].dtype = DType::kI32; }));
  EXPECT_STATUS(LlamaModel::Open(dir.path()), absl::StatusCode::kInvalidArgument,
                "model.embed_tokens.weight: dtype I32 is not a float type");
}

TEST(LlamaModel, NonFiniteValueIsDataLossWhenRead) {
  testing::TempDir dir;
  const std::string name = "model.layers.0.self_attn.v_proj.weight";
  ASSERT_OK(WriteModel(dir.path(), SmallConfig(true), nullptr, name));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  EXPECT_STATUS(model->GetFloat(name), absl::StatusCode::kDataLoss, name + ": element 3 is inf");
  EXPECT_STATUS(model->LinearWeight(0, LinearKind::kVProj), absl::StatusCode::kDataLoss,
                "element 3");
}

TEST(LlamaModel, MissingConfigOrWeightsIsNotFound) {
  testing::TempDir dir;
  EXPECT_STATUS(LlamaModel::Open(dir.path()), absl::StatusCode::kNotFound, "config.json");
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("config.json"),
                                LlamaConfigToJson(SmallConfig(true))));
  EXPECT_EQ(LlamaModel::Open(dir.path()).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace catq
