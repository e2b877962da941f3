// A Hugging Face directory whose tokenizer is SentencePiece's tokenizer.model
// (and no tokenizer.bin) calibrates and evaluates exactly as the same model
// with llama2.c's tokenizer.bin: stories260K imported twice, the second copy's
// tokenizer.bin replaced by the tokenizer.model it was exported from.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/cat/calibration.h"
#include "core/eval/eval_documents.h"
#include "core/eval/output_evaluation.h"
#include "core/io/env.h"
#include "core/model/llama2c_import.h"
#include "core/model/llama_model.h"
#include "core/model/model_tokenizer.h"
#include "core/model/perplexity.h"
#include "core/output/in_process_quantizer.h"
#include "tests/model/sentencepiece_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

constexpr int64_t kVocab = 512;

class SentencePieceModelDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CATQ_REQUIRE_SHARED();
    Env* env = Env::Default();
    const std::string checkpoint = testing::SharedPath("models/stories260K/stories260K.bin");
    const std::string tok512 = testing::SharedPath("models/stories260K/tok512.bin");
    ASSERT_OK(ImportLlama2c(env, checkpoint, tok512, bin()));
    ASSERT_OK(ImportLlama2c(env, checkpoint, tok512, sp()));
    ASSERT_OK(env->RemoveFile(sp() + "/" + kLlama2cTokenizerFileName));
    ASSERT_OK(WriteFileAtomically(
        env, sp() + "/" + kSentencePieceModelFileName,
        testing::SentencePieceModelFromLlama2c(testing::ReadTestFile(tok512), kVocab)));
  }

  std::string bin() const { return dir_.Join("bin"); }
  std::string sp() const { return dir_.Join("sp"); }
  static std::string EvalText() { return testing::SharedPath("data/tinystories_sample.txt"); }
  static std::string CalibText() { return testing::SharedPath("data/tinystories_197k.txt"); }

  testing::TempDir dir_;
};

TEST_F(SentencePieceModelDirTest, CalibratesOnTheSameTokenIds) {
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(sp());
  ASSERT_OK(model);
  absl::StatusOr<std::vector<std::vector<int32_t>>> with_bin =
      CalibrationSequencesFromText(Env::Default(), *model, bin(), CalibText(), {32, 0});
  ASSERT_OK(with_bin);
  absl::StatusOr<std::vector<std::vector<int32_t>>> with_model =
      CalibrationSequencesFromText(Env::Default(), *model, sp(), CalibText(), {32, 0});
  ASSERT_OK(with_model);
  EXPECT_EQ(with_model->size(), 32u);
  EXPECT_EQ(*with_model, *with_bin);
}

TEST_F(SentencePieceModelDirTest, EvaluatesToTheSamePerplexity) {
  absl::StatusOr<std::vector<std::vector<int32_t>>> with_bin =
      ReadEvalDocuments(bin(), EvalText(), kVocab);
  ASSERT_OK(with_bin);
  absl::StatusOr<std::vector<std::vector<int32_t>>> with_model =
      ReadEvalDocuments(sp(), EvalText(), kVocab);
  ASSERT_OK(with_model);
  EXPECT_EQ(*with_model, *with_bin);
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(sp());
  ASSERT_OK(model);
  absl::StatusOr<PerplexityResult> perplexity = EvaluatePerplexity(*model, *with_model);
  ASSERT_OK(perplexity);
  EXPECT_NEAR(perplexity->perplexity, 3.548, 0.005);  // The README's FP figure.
}

// The whole in-process path (calibration text, CAT, evaluation text) gives
// the same shards and figures from either tokenizer.
TEST_F(SentencePieceModelDirTest, QuantizesAndEvaluatesAlike) {
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = 16;
  recipe.weights.group_size = 32;
  InProcessOptions options;
  options.calibration.text_path = CalibText();
  options.calibration.text = {16, 0};
  options.calibration.threads = 2;
  Env* env = Env::Default();
  ASSERT_OK(QuantizeModelInProcess(env, bin(), dir_.Join("q_bin"), recipe, options).status());
  ASSERT_OK(QuantizeModelInProcess(env, sp(), dir_.Join("q_sp"), recipe, options).status());
  absl::StatusOr<std::vector<std::string>> names = env->ListDir(dir_.Join("q_bin"));
  ASSERT_OK(names);
  int shards = 0;
  for (const std::string& name : *names) {
    if (!absl::EndsWith(name, ".safetensors")) continue;
    ++shards;
    EXPECT_EQ(testing::ReadTestFile(dir_.Join("q_sp/" + name)),
              testing::ReadTestFile(dir_.Join("q_bin/" + name)))
        << name;
  }
  EXPECT_GT(shards, 0);
  EXPECT_TRUE(env->FileExists(dir_.Join("q_sp/tokenizer.model")));

  ForwardOptions forward;
  forward.num_threads = 2;
  absl::StatusOr<OutputEvaluation> with_bin =
      EvaluateOutput(bin(), dir_.Join("q_bin"), EvalText(), forward);
  ASSERT_OK(with_bin);
  absl::StatusOr<OutputEvaluation> with_model =
      EvaluateOutput(sp(), dir_.Join("q_sp"), EvalText(), forward);
  ASSERT_OK(with_model);
  EXPECT_EQ(with_model->tokens, with_bin->tokens);
  EXPECT_EQ(with_model->perplexity, with_bin->perplexity);
  EXPECT_EQ(with_model->fp_perplexity, with_bin->fp_perplexity);
  EXPECT_EQ(with_model->kl_to_fp, with_bin->kl_to_fp);
}

}  // namespace
}  // namespace catq
