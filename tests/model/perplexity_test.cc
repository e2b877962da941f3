#include "core/model/perplexity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/model/llama2c_import.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/model/synth.h"
#include "core/model/text_documents.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// The known figure for stories260K on the TinyStories sample (see the model's
// SOURCE.md): each story stripped, BOS first, at most 512 tokens, mean NLL
// over the predicted tokens.
TEST(Perplexity, Stories260KOnTinyStoriesSample) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  ASSERT_OK(ImportLlama2c(Env::Default(), testing::SharedPath("models/stories260K/stories260K.bin"),
                          testing::SharedPath("models/stories260K/tok512.bin"), dir.path()));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  absl::StatusOr<Llama2cTokenizer> tok = Llama2cTokenizer::Load(
      Env::Default(), dir.Join(kLlama2cTokenizerFileName), model->config().vocab_size);
  ASSERT_OK(tok);
  absl::StatusOr<std::vector<std::string>> docs =
      ReadTextDocuments(Env::Default(), testing::SharedPath("data/tinystories_sample.txt"));
  ASSERT_OK(docs);
  const std::vector<std::vector<int32_t>> ids = TokenizeDocuments(*tok, *docs);
  absl::StatusOr<PerplexityResult> result = EvaluatePerplexity(*model, ids);
  ASSERT_OK(result);
  RecordProperty("perplexity", std::to_string(result->perplexity));
  RecordProperty("mean_nll", std::to_string(result->mean_nll));
  RecordProperty("tokens", std::to_string(result->tokens));
  EXPECT_NEAR(result->perplexity, 3.548, 0.005);
  EXPECT_NEAR(std::exp(result->mean_nll), result->perplexity, 1e-12);
  EXPECT_EQ(result->documents, 5);
  int64_t expected_tokens = 0;
  int64_t truncated = 0;
  for (const std::vector<int32_t>& doc : ids) {
    expected_tokens += std::min<int64_t>(static_cast<int64_t>(doc.size()), 512) - 1;
    truncated += doc.size() > 512 ? 1 : 0;
  }
  EXPECT_EQ(result->tokens, expected_tokens);
  EXPECT_EQ(result->truncated_documents, truncated);
}

class SyntheticPerplexityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions options;  // tiny: vocab 512, context 256.
    options.num_layers = 1;
    ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir_.path()));
    absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir_.path());
    ASSERT_OK(model);
    model_ = std::make_unique<LlamaModel>(std::move(*model));
    ASSERT_EQ(model_->config().max_position_embeddings, 256);
  }

  static std::vector<int32_t> Sequence(int64_t length, int32_t salt) {
    std::vector<int32_t> ids = {Llama2cTokenizer::kBos};
    for (int64_t i = 1; i < length; ++i) ids.push_back(static_cast<int32_t>((i * 31 + salt) % 512));
    return ids;
  }

  testing::TempDir dir_;
  std::unique_ptr<LlamaModel> model_;
};

TEST_F(SyntheticPerplexityTest, MeanOverPredictedTokensAfterTruncation) {
  const std::vector<std::vector<int32_t>> docs = {Sequence(300, 1), Sequence(1, 0),
                                                  Sequence(10, 7)};
  absl::StatusOr<PerplexityResult> result = EvaluatePerplexity(*model_, docs);
  ASSERT_OK(result);
  EXPECT_EQ(result->documents, 3);
  EXPECT_EQ(result->truncated_documents, 1);
  EXPECT_EQ(result->tokens, 255 + 0 + 9);

  std::vector<std::vector<int32_t>> truncated = docs;
  truncated[0].resize(256);
  absl::StatusOr<std::vector<std::vector<float>>> nll = ComputeTokenNll(*model_, truncated);
  ASSERT_OK(nll);
  double sum = 0.0;
  for (const auto& doc : *nll) {
    for (float v : doc) sum += v;
  }
  EXPECT_NEAR(result->mean_nll, sum / 264.0, 1e-9);
  EXPECT_NEAR(result->perplexity, std::exp(sum / 264.0), 1e-6);
}

TEST_F(SyntheticPerplexityTest, SameResultOnAnyThreadCount) {
  const std::vector<std::vector<int32_t>> docs = {Sequence(40, 1), Sequence(100, 2), Sequence(7, 3),
                                                  Sequence(64, 4)};
  ForwardOptions one;
  one.num_threads = 1;
  ForwardOptions four;
  four.num_threads = 4;
  four.max_batch_tokens = 100;
  absl::StatusOr<PerplexityResult> a = EvaluatePerplexity(*model_, docs, one);
  absl::StatusOr<PerplexityResult> b = EvaluatePerplexity(*model_, docs, four);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(a->mean_nll, b->mean_nll);
  EXPECT_EQ(a->tokens, b->tokens);
}

TEST_F(SyntheticPerplexityTest, Errors) {
  EXPECT_STATUS(EvaluatePerplexity(*model_, {Sequence(1, 0)}), absl::StatusCode::kInvalidArgument,
                "no document has two tokens");
  EXPECT_STATUS(EvaluatePerplexity(*model_, {}), absl::StatusCode::kInvalidArgument,
                "no document has two tokens");
  EXPECT_STATUS(EvaluatePerplexity(*model_, {{1, 2}, {}}), absl::StatusCode::kInvalidArgument,
                "sequence 1 is empty");
}

}  // namespace
}  // namespace catq
