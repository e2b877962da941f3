// Tests of KlDivergence (core/eval/kl_divergence.h) on the tiny synthetic
// model: zero against itself, by-product perplexities equal to
// EvaluatePerplexity's bit for bit, and results independent of how the
// documents are grouped and threaded.
#include "core/eval/kl_divergence.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/eval/evaluate.h"
#include "core/model/synth.h"
#include "tests/eval/output_dir_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using absl::StatusCode::kInvalidArgument;

// Documents of several lengths; one longer than the context (256), one of a
// single token (predicts nothing).
std::vector<std::vector<int32_t>> TestDocuments() {
  std::vector<std::vector<int32_t>> docs;
  for (int64_t length : {40, 300, 1, 17, 64}) {
    std::vector<int32_t> ids = {1};
    for (int64_t i = 1; i < length; ++i) {
      ids.push_back(static_cast<int32_t>((i * 29 + length) % 512));
    }
    docs.push_back(std::move(ids));
  }
  return docs;
}

void ExpectSamePerplexity(const PerplexityResult& a, const PerplexityResult& b) {
  EXPECT_EQ(a.mean_nll, b.mean_nll);
  EXPECT_EQ(a.perplexity, b.perplexity);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.documents, b.documents);
  EXPECT_EQ(a.truncated_documents, b.truncated_documents);
}

class KlDivergenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions options;
    options.preset = "tiny";
    ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir_.Join("fp")));
    absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir_.Join("fp"));
    ASSERT_OK(model);
    model_ = std::make_unique<LlamaModel>(*std::move(model));
  }

  std::unique_ptr<QuantizedModel> OpenOutput(const testing::TransformedOutputOptions& options) {
    absl::StatusOr<testing::OutputDir> out = testing::MakeTransformedOutput(*model_, options);
    EXPECT_OK(out);
    const std::string dir = dir_.Join(absl::StrCat("out", ++outputs_));
    EXPECT_OK(out->Write(dir));
    absl::StatusOr<QuantizedModel> q = QuantizedModel::Open(dir);
    EXPECT_OK(q);
    return q.ok() ? std::make_unique<QuantizedModel>(*std::move(q)) : nullptr;
  }

  testing::TempDir dir_;
  std::unique_ptr<LlamaModel> model_;
  const std::vector<std::vector<int32_t>> docs_ = TestDocuments();
  int outputs_ = 0;
};

TEST_F(KlDivergenceTest, ZeroAgainstItselfWithEvaluatePerplexitysNumbers) {
  absl::StatusOr<KlDivergenceResult> kl = KlDivergence(*model_, {}, *model_, {}, docs_);
  ASSERT_OK(kl);
  EXPECT_EQ(kl->mean_kl, 0.0);
  EXPECT_EQ(kl->max_kl, 0.0);
  EXPECT_EQ(kl->tokens, 39 + 255 + 0 + 16 + 63);
  absl::StatusOr<PerplexityResult> ppl = EvaluatePerplexity(*model_, docs_);
  ASSERT_OK(ppl);
  ExpectSamePerplexity(kl->reference, *ppl);
  ExpectSamePerplexity(kl->candidate, *ppl);
  EXPECT_EQ(kl->reference.truncated_documents, 1);
}

// The function-preserving output is the FP model up to float rounding; the
// packed one (RTN W4 g32 of W T^-1) is measurably off, and its perplexity is
// EvaluateQuantizedPerplexity's.
TEST_F(KlDivergenceTest, MeasuresTheStoredOutputAgainstTheReference) {
  std::unique_ptr<QuantizedModel> exact = OpenOutput({});
  ASSERT_NE(exact, nullptr);
  absl::StatusOr<KlDivergenceResult> near = CompareQuantizedToReference(*model_, *exact, docs_);
  ASSERT_OK(near);
  EXPECT_GE(near->mean_kl, -1e-12);
  EXPECT_LT(near->max_kl, 1e-7);

  testing::TransformedOutputOptions packed;
  packed.pack_linears = true;
  std::unique_ptr<QuantizedModel> w4 = OpenOutput(packed);
  ASSERT_NE(w4, nullptr);
  absl::StatusOr<KlDivergenceResult> far = CompareQuantizedToReference(*model_, *w4, docs_);
  ASSERT_OK(far);
  EXPECT_GT(far->mean_kl, 1e3 * near->max_kl);
  EXPECT_GE(far->max_kl, far->mean_kl);
  absl::StatusOr<PerplexityResult> fp = EvaluatePerplexity(*model_, docs_);
  absl::StatusOr<PerplexityResult> q = EvaluateQuantizedPerplexity(*w4, docs_);
  ASSERT_OK(fp);
  ASSERT_OK(q);
  ExpectSamePerplexity(far->reference, *fp);
  ExpectSamePerplexity(far->candidate, *q);
  EXPECT_NE(q->mean_nll, fp->mean_nll);
}

// Groups of one document each (a 1-byte budget) and any thread count give the
// same bits as one group.
TEST_F(KlDivergenceTest, IndependentOfGroupingAndThreads) {
  testing::TransformedOutputOptions packed;
  packed.pack_linears = true;
  packed.activation_bits = 6;
  std::unique_ptr<QuantizedModel> q = OpenOutput(packed);
  ASSERT_NE(q, nullptr);
  ForwardOptions one_thread;
  one_thread.num_threads = 1;
  absl::StatusOr<KlDivergenceResult> base =
      CompareQuantizedToReference(*model_, *q, docs_, one_thread);
  ASSERT_OK(base);
  KlOptions tiny_groups;
  tiny_groups.max_reference_logits_bytes = 1;
  ForwardOptions three_threads;
  three_threads.num_threads = 3;
  absl::StatusOr<KlDivergenceResult> other =
      CompareQuantizedToReference(*model_, *q, docs_, three_threads, tiny_groups);
  ASSERT_OK(other);
  EXPECT_EQ(other->mean_kl, base->mean_kl);
  EXPECT_EQ(other->max_kl, base->max_kl);
  ExpectSamePerplexity(other->reference, base->reference);
  ExpectSamePerplexity(other->candidate, base->candidate);
}

TEST_F(KlDivergenceTest, RefusesBadDocumentsAndMismatchedModels) {
  std::vector<std::vector<int32_t>> docs = docs_;
  docs[1].clear();
  EXPECT_STATUS(KlDivergence(*model_, {}, *model_, {}, docs), kInvalidArgument,
                "document 1 is empty");
  docs = docs_;
  docs[3][5] = 512;
  EXPECT_STATUS(KlDivergence(*model_, {}, *model_, {}, docs), kInvalidArgument,
                "document 3, position 5: token id 512 is outside [0, 512)");
  EXPECT_STATUS(KlDivergence(*model_, {}, *model_, {}, {{1}, {1}}), kInvalidArgument,
                "no document has two tokens");

  SynthOptions small;
  small.preset = "small";
  small.num_layers = 1;
  ASSERT_OK(WriteSyntheticModel(Env::Default(), small, dir_.Join("small")));
  absl::StatusOr<LlamaModel> other = LlamaModel::Open(dir_.Join("small"));
  ASSERT_OK(other);
  EXPECT_STATUS(KlDivergence(*model_, {}, *other, {}, docs_), kInvalidArgument,
                "vocab_size: the reference has 512, the candidate 2048");
  std::unique_ptr<QuantizedModel> q = OpenOutput({});
  ASSERT_NE(q, nullptr);
  EXPECT_STATUS(CompareQuantizedToReference(*other, *q, docs_), kInvalidArgument,
                "hidden_size: the quantized model has 64, the reference 256");
  ForwardOptions with_weights;
  ModelWeightProvider provider(*model_);
  with_weights.weights = &provider;
  EXPECT_STATUS(EvaluateQuantizedPerplexity(*q, docs_, with_weights), kInvalidArgument,
                "ForwardOptions.weights");
}

}  // namespace
}  // namespace catq
