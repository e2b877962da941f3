#include "core/model/llama2c_import.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/model/llama2c_format.h"
#include "core/model/llama_model.h"
#include "core/model/rope_permutation.h"
#include "tests/model/llama2c_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::testing::ElementsAre;

std::vector<float> FloatsAt(absl::string_view file, uint64_t offset, size_t count) {
  std::vector<float> out(count);
  std::memcpy(out.data(), file.data() + offset, count * sizeof(float));
  return out;
}

std::vector<float> Flat(const RowMatrixXf& m) { return {m.data(), m.data() + m.size()}; }

class Stories260KImport : public ::testing::Test {
 protected:
  void SetUp() override {
    if (testing::SharedDir().empty()) GTEST_SKIP() << "../shared is absent";
    bin_path_ = testing::SharedPath("models/stories260K/stories260K.bin");
    tok_path_ = testing::SharedPath("models/stories260K/tok512.bin");
    ASSERT_OK(ImportLlama2c(Env::Default(), bin_path_, tok_path_, out_.path()));
  }
  std::string bin_path_, tok_path_;
  testing::TempDir out_;
};

TEST_F(Stories260KImport, WritesAModelLlamaModelOpens) {
  Env* env = Env::Default();
  EXPECT_TRUE(env->FileExists(out_.Join("config.json")));
  EXPECT_TRUE(env->FileExists(out_.Join("model.safetensors")));
  EXPECT_FALSE(env->FileExists(out_.Join("model.safetensors.index.json")));
  EXPECT_EQ(*env->ReadFile(out_.Join("tokenizer.bin")), *env->ReadFile(tok_path_));

  absl::StatusOr<LlamaModel> model = LlamaModel::Open(out_.path());
  ASSERT_OK(model);
  const LlamaConfig& c = model->config();
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_hidden_layers, 5);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "float32");
  EXPECT_EQ(c.original["bos_token_id"], 1);
  EXPECT_EQ(c.original["eos_token_id"], 2);
  EXPECT_EQ(c.original["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(model->lm_head_name(), "model.embed_tokens.weight");
  EXPECT_FALSE(model->tensors().Contains("lm_head.weight"));

  const std::vector<int64_t> shapes[] = {{64, 64},  {32, 64},  {32, 64}, {64, 64},
                                         {172, 64}, {172, 64}, {64, 172}};
  int linears = 0;
  for (int64_t layer = 0; layer < 5; ++layer) {
    for (size_t k = 0; k < kAllLinearKinds.size(); ++k) {
      absl::StatusOr<TensorView> w = model->Get(LinearWeightName(layer, kAllLinearKinds[k]));
      ASSERT_OK(w);
      EXPECT_EQ(w->shape(), shapes[k]) << w->name();
      EXPECT_EQ(w->dtype(), DType::kF32);
      ++linears;
    }
  }
  EXPECT_EQ(linears, 35);
  absl::StatusOr<TensorView> embed = model->Get(kEmbedTokensName);
  ASSERT_OK(embed);
  EXPECT_THAT(embed->shape(), ElementsAre(512, 64));
}

TEST_F(Stories260KImport, WeightsMatchTheBinAtDocumentedOffsets) {
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(out_.path());
  ASSERT_OK(model);
  absl::StatusOr<std::string> bin = Env::Default()->ReadFile(bin_path_);
  ASSERT_OK(bin);
  // wq of layer 0 starts after the header, token_embedding and rms_att:
  // 28 + 4 * (512 * 64 + 5 * 64) = 132380.
  const std::vector<float> wq0 = FloatsAt(*bin, 132380, 64 * 64);
  absl::StatusOr<std::vector<float>> expected_q = PermuteRowsForRotateHalf(wq0, 8, 8, 64);
  ASSERT_OK(expected_q);
  absl::StatusOr<RowMatrixXf> q = model->LinearWeight(0, LinearKind::kQProj);
  ASSERT_OK(q);
  EXPECT_EQ(Flat(*q), *expected_q);

  absl::StatusOr<Llama2cHeader> header = ParseLlama2cHeader(*bin, "stories260K.bin");
  ASSERT_OK(header);
  const Llama2cLayout layout = ComputeLlama2cLayout(*header);
  ASSERT_EQ(layout.wq.offset, 132380u);
  // k_proj of layer 3 is permuted by the 4 kv heads.
  absl::StatusOr<std::vector<float>> expected_k =
      PermuteRowsForRotateHalf(FloatsAt(*bin, layout.wk.LayerOffset(3), 32 * 64), 4, 8, 64);
  ASSERT_OK(expected_k);
  absl::StatusOr<RowMatrixXf> k = model->LinearWeight(3, LinearKind::kKProj);
  ASSERT_OK(k);
  EXPECT_EQ(Flat(*k), *expected_k);
  // Unpermuted ones are copied as they are: w3 -> up_proj, w2 -> down_proj.
  absl::StatusOr<RowMatrixXf> up = model->LinearWeight(4, LinearKind::kUpProj);
  ASSERT_OK(up);
  EXPECT_EQ(Flat(*up), FloatsAt(*bin, layout.w3.LayerOffset(4), 172 * 64));
  absl::StatusOr<RowMatrixXf> down = model->LinearWeight(2, LinearKind::kDownProj);
  ASSERT_OK(down);
  EXPECT_EQ(Flat(*down), FloatsAt(*bin, layout.w2.LayerOffset(2), 64 * 172));
  absl::StatusOr<std::vector<float>> norm = model->GetFloat(kFinalNormName);
  ASSERT_OK(norm);
  EXPECT_EQ(*norm, FloatsAt(*bin, layout.rms_final.offset, 64));
  absl::StatusOr<std::vector<float>> ffn_norm =
      model->GetFloat(NormWeightName(1, NormKind::kPostAttentionLayernorm));
  ASSERT_OK(ffn_norm);
  EXPECT_EQ(*ffn_norm, FloatsAt(*bin, layout.rms_ffn.LayerOffset(1), 64));
}

TEST(Llama2cImport, UnsharedClassifierBecomesLmHead) {
  testing::TempDir dir;
  Env* env = Env::Default();
  const std::string bin = testing::MakeLlama2cCheckpoint({8, 12, 2, 2, 1, -16, 8});
  ASSERT_OK(WriteFileAtomically(env, dir.Join("m.bin"), bin));
  ASSERT_OK(WriteFileAtomically(env, dir.Join("t.bin"), testing::MakeLlama2cTokenizer(16)));
  ASSERT_OK(ImportLlama2c(env, dir.Join("m.bin"), dir.Join("t.bin"), dir.Join("out")));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.Join("out"));
  ASSERT_OK(model);
  EXPECT_FALSE(model->config().tie_word_embeddings);
  EXPECT_EQ(model->lm_head_name(), "lm_head.weight");
  EXPECT_EQ(model->config().num_key_value_heads, 1);
  absl::StatusOr<Llama2cHeader> header = ParseLlama2cHeader(bin, "m.bin");
  ASSERT_OK(header);
  const Llama2cLayout layout = ComputeLlama2cLayout(*header);
  absl::StatusOr<std::vector<float>> lm_head = model->GetFloat(kLmHeadName);
  ASSERT_OK(lm_head);
  EXPECT_EQ(*lm_head, FloatsAt(bin, layout.wcls.offset, 16 * 8));
  EXPECT_EQ(layout.wcls.end(), bin.size());
}

TEST(Llama2cImport, BadInputsFailBeforeAnythingIsWritten) {
  testing::TempDir dir;
  Env* env = Env::Default();
  const std::string bin = testing::MakeLlama2cCheckpoint({8, 12, 2, 2, 1, 16, 8});
  const std::string tok = testing::MakeLlama2cTokenizer(16);
  ASSERT_OK(WriteFileAtomically(env, dir.Join("m.bin"), bin));
  ASSERT_OK(WriteFileAtomically(env, dir.Join("short.bin"), bin.substr(0, bin.size() - 4)));
  ASSERT_OK(WriteFileAtomically(env, dir.Join("long.bin"), bin + "xxxx"));
  ASSERT_OK(WriteFileAtomically(env, dir.Join("bad.bin"),
                                testing::MakeLlama2cHeader({8, 12, 2, 3, 1, 16, 8})));
  ASSERT_OK(WriteFileAtomically(env, dir.Join("t.bin"), tok));
  ASSERT_OK(WriteFileAtomically(env, dir.Join("t_short.bin"), tok.substr(0, tok.size() - 1)));
  const std::string out = dir.Join("out");

  EXPECT_STATUS(ImportLlama2c(env, dir.Join("short.bin"), dir.Join("t.bin"), out),
                absl::StatusCode::kDataLoss,
                absl::StrCat("short.bin: needs ", bin.size(), " bytes for the header's shapes"));
  EXPECT_STATUS(ImportLlama2c(env, dir.Join("long.bin"), dir.Join("t.bin"), out),
                absl::StatusCode::kDataLoss, "4 more than the");
  EXPECT_STATUS(ImportLlama2c(env, dir.Join("bad.bin"), dir.Join("t.bin"), out),
                absl::StatusCode::kInvalidArgument, "n_heads (offset 12) is 3");
  EXPECT_STATUS(ImportLlama2c(env, dir.Join("m.bin"), dir.Join("t_short.bin"), out),
                absl::StatusCode::kDataLoss, "t_short.bin: token 15 at offset");
  EXPECT_STATUS(ImportLlama2c(env, dir.Join("missing.bin"), dir.Join("t.bin"), out),
                absl::StatusCode::kNotFound, "missing.bin");
  EXPECT_FALSE(env->FileExists(out));
}

TEST(Llama2cImport, NonFiniteWeightIsDataLossWithOffset) {
  testing::TempDir dir;
  Env* env = Env::Default();
  std::string bin = testing::MakeLlama2cCheckpoint({8, 12, 2, 2, 1, 16, 8});
  const float nan = std::nanf("");
  const uint64_t offset = 28 + 4 * (16 * 8 + 2 * 8) + 4 * 5;  // wq layer 0, element 5.
  std::memcpy(bin.data() + offset, &nan, 4);
  ASSERT_OK(WriteFileAtomically(env, dir.Join("m.bin"), bin));
  ASSERT_OK(WriteFileAtomically(env, dir.Join("t.bin"), testing::MakeLlama2cTokenizer(16)));
  EXPECT_STATUS(ImportLlama2c(env, dir.Join("m.bin"), dir.Join("t.bin"), dir.Join("out")),
                absl::StatusCode::kDataLoss,
                absl::StrCat("m.bin: wq (for model.layers.0.self_attn.q_proj.weight) holds nan "
                             "at byte offset ",
                             offset));
  EXPECT_FALSE(env->FileExists(dir.Join("out/model.safetensors")));
  EXPECT_FALSE(env->FileExists(dir.Join("out/config.json")));
}

}  // namespace
}  // namespace catq
