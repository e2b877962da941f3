// Runs `catq eval` as a user would and checks its figures against the library
// calls they come from (core/eval/evaluate.h).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/eval/evaluate.h"
#include "core/io/env.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/model/text_documents.h"
#include "nlohmann/json.hpp"
#include "tests/client/catq_runner.h"
#include "tests/model/sentencepiece_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// stories260K imported to `fp` and quantized RTN W4 g32 to `q`, by the CLI.
class EvalCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CATQ_REQUIRE_SHARED();
    const CommandResult import = RunCatq(absl::StrCat(
        "import-llama2c --model ", testing::SharedPath("models/stories260K/stories260K.bin"),
        " --tokenizer ", testing::SharedPath("models/stories260K/tok512.bin"), " --out ", fp()));
    ASSERT_EQ(import.exit_code, 0) << import.output;
    const CommandResult quantize =
        RunCatq(absl::StrCat("quantize --quiet --model ", fp(), " --out ", q(),
                             " --recipe rtn --w-bits 4 --w-group 32"));
    ASSERT_EQ(quantize.exit_code, 0) << quantize.output;
  }

  std::string fp() const { return dir_.Join("fp"); }
  std::string q() const { return dir_.Join("q"); }
  std::string text() const { return testing::SharedPath("data/tinystories_sample.txt"); }

  // The documents as the CLI reads them: fp's tokenizer, cut to the context.
  std::vector<std::vector<int32_t>> Documents(int64_t vocab) const {
    absl::StatusOr<Llama2cTokenizer> tokenizer =
        Llama2cTokenizer::Load(Env::Default(), fp() + "/tokenizer.bin", vocab);
    EXPECT_OK(tokenizer);
    absl::StatusOr<std::vector<std::string>> docs = ReadTextDocuments(Env::Default(), text());
    EXPECT_OK(docs);
    if (!tokenizer.ok() || !docs.ok()) return {};
    return TokenizeDocuments(*tokenizer, *docs);
  }

  testing::TempDir dir_;
};

TEST_F(EvalCliTest, FpPerplexityIsTheKnownFigure) {
  const CommandResult eval =
      RunCatq(absl::StrCat("eval --json --threads 2 --model ", fp(), " --text ", text()));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  const nlohmann::json json = ParseJsonOutput(eval);
  EXPECT_NEAR(json["perplexity"].get<double>(), 3.548, 0.005);
  EXPECT_EQ(json["documents"], 5);
  EXPECT_GT(json["tokens"].get<int64_t>(), 0);
  EXPECT_NEAR(std::exp(json["mean_nll"].get<double>()), json["perplexity"].get<double>(), 1e-12);
  EXPECT_FALSE(json.contains("kl_to_fp"));
}

// The printed numbers are the library's, to the last bit (JSON numbers
// round-trip doubles).
TEST_F(EvalCliTest, QuantizedFiguresEqualTheLibraryCall) {
  const CommandResult eval =
      RunCatq(absl::StrCat("eval --json --model ", fp(), " --quantized ", q(), " --text ", text()));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  const nlohmann::json json = ParseJsonOutput(eval);

  absl::StatusOr<LlamaModel> reference = LlamaModel::Open(fp());
  ASSERT_OK(reference);
  absl::StatusOr<QuantizedModel> quantized = QuantizedModel::Open(q());
  ASSERT_OK(quantized);
  absl::StatusOr<KlDivergenceResult> expected = CompareQuantizedToReference(
      *reference, *quantized, Documents(reference->config().vocab_size));
  ASSERT_OK(expected);
  EXPECT_EQ(json["perplexity"].get<double>(), expected->candidate.perplexity);
  EXPECT_EQ(json["mean_nll"].get<double>(), expected->candidate.mean_nll);
  EXPECT_EQ(json["fp_perplexity"].get<double>(), expected->reference.perplexity);
  EXPECT_EQ(json["kl_to_fp"].get<double>(), expected->mean_kl);
  EXPECT_EQ(json["tokens"].get<int64_t>(), expected->tokens);
  EXPECT_NEAR(json["fp_perplexity"].get<double>(), 3.548, 0.005);
  EXPECT_GT(json["kl_to_fp"].get<double>(), 0.0);
  EXPECT_EQ(json["recipe"]["method"], "rtn");
  EXPECT_EQ(json["recipe"]["w_group_size"], 32);
  EXPECT_EQ(json["recipe"]["a_bits"], 16);

  // The output alone: the same perplexity, from EvaluateQuantizedPerplexity.
  const CommandResult alone =
      RunCatq(absl::StrCat("eval --json --model ", q(), " --text ", text()));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  EXPECT_EQ(ParseJsonOutput(alone)["perplexity"].get<double>(), expected->candidate.perplexity);

  const CommandResult table =
      RunCatq(absl::StrCat("eval --model ", fp(), " --quantized ", q(), " --text ", text()));
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("KL(fp || quantized)"), std::string::npos) << table.output;
}

// The same model with SentencePiece's tokenizer.model in place of
// tokenizer.bin (the one tok512.bin was exported from) gives the same figures.
TEST_F(EvalCliTest, TokenizerModelGivesTheSameFigures) {
  const std::string sp = dir_.Join("fp_sp");
  const std::string tok512 = testing::SharedPath("models/stories260K/tok512.bin");
  const CommandResult import = RunCatq(absl::StrCat(
      "import-llama2c --model ", testing::SharedPath("models/stories260K/stories260K.bin"),
      " --tokenizer ", tok512, " --out ", sp));
  ASSERT_EQ(import.exit_code, 0) << import.output;
  ASSERT_OK(Env::Default()->RemoveFile(sp + "/tokenizer.bin"));
  ASSERT_OK(WriteFileAtomically(
      Env::Default(), sp + "/tokenizer.model",
      testing::SentencePieceModelFromLlama2c(testing::ReadTestFile(tok512), 512)));

  const CommandResult with_bin =
      RunCatq(absl::StrCat("eval --json --model ", fp(), " --quantized ", q(), " --text ", text()));
  ASSERT_EQ(with_bin.exit_code, 0) << with_bin.output;
  const CommandResult with_model =
      RunCatq(absl::StrCat("eval --json --model ", sp, " --quantized ", q(), " --text ", text()));
  ASSERT_EQ(with_model.exit_code, 0) << with_model.output;
  const nlohmann::json expected = ParseJsonOutput(with_bin);
  const nlohmann::json json = ParseJsonOutput(with_model);
  for (const char* key : {"perplexity", "fp_perplexity", "kl_to_fp", "mean_nll"}) {
    EXPECT_EQ(json[key].get<double>(), expected[key].get<double>()) << key;
  }
  EXPECT_EQ(json["tokens"], expected["tokens"]);

  ASSERT_OK(Env::Default()->RemoveFile(sp + "/tokenizer.model"));
  const CommandResult none = RunCatq(absl::StrCat("eval --model ", sp, " --text ", text()));
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.output.find("neither tokenizer.model (SentencePiece) nor tokenizer.bin"),
            std::string::npos)
      << none.output;
}

// `catq quantize --kv-cache-bits 4` records the K/V cache scheme, and `catq
// eval --quantized` runs it: its perplexity equals, to the last bit, the
// output run in memory with a K/V cache quantizer made by hand.
TEST_F(EvalCliTest, KvCacheBitsAreRecordedAndEvaluated) {
  const std::string kv = dir_.Join("q_kv4");
  const CommandResult quantize =
      RunCatq(absl::StrCat("quantize --quiet --model ", fp(), " --out ", kv,
                           " --recipe rtn --w-bits 4 --w-group 32 --kv-cache-bits 4"));
  ASSERT_EQ(quantize.exit_code, 0) << quantize.output;
  const CommandResult eval =
      RunCatq(absl::StrCat("eval --json --model ", fp(), " --quantized ", kv, " --text ", text()));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  const nlohmann::json json = ParseJsonOutput(eval);
  EXPECT_EQ(json["recipe"]["kv_cache_bits"], 4);
  EXPECT_EQ(json["recipe"]["kv_cache_hadamard"], true);

  absl::StatusOr<QuantizedModel> quantized = QuantizedModel::Open(kv);
  ASSERT_OK(quantized);
  EXPECT_EQ(quantized->config().original["quantization_config"]["kv_cache_scheme"]["num_bits"], 4);
  QuantizedWeightProvider weights(*quantized);
  OnlineQuantizationHook hook(*quantized);
  absl::StatusOr<KvCacheQuantizer> kv_quantizer = KvCacheQuantizer::Create(
      quantized->config().head_dim(), {.bits = 4, .hadamard = true, .mixing_seed = 0});
  ASSERT_OK(kv_quantizer);
  ForwardOptions in_memory;
  in_memory.weights = &weights;
  in_memory.hooks = {&hook};
  in_memory.kv_hooks = {&*kv_quantizer};
  const std::vector<std::vector<int32_t>> documents = Documents(quantized->config().vocab_size);
  absl::StatusOr<PerplexityResult> expected =
      EvaluatePerplexity(quantized->model(), documents, in_memory);
  ASSERT_OK(expected);
  EXPECT_EQ(json["perplexity"].get<double>(), expected->perplexity);

  // Not vacuous: the same weights with a float cache give another figure.
  const CommandResult plain =
      RunCatq(absl::StrCat("eval --json --model ", fp(), " --quantized ", q(), " --text ", text()));
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_GT(json["perplexity"].get<double>(), ParseJsonOutput(plain)["perplexity"].get<double>());
  EXPECT_EQ(ParseJsonOutput(plain)["recipe"]["kv_cache_bits"], 16);
}

TEST_F(EvalCliTest, MaxTokensPerDocCutsEveryDocument) {
  const CommandResult eval = RunCatq(
      absl::StrCat("eval --json --max-tokens-per-doc 33 --model ", fp(), " --text ", text()));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_EQ(ParseJsonOutput(eval)["tokens"], 5 * 32);
}

TEST_F(EvalCliTest, ErrorsExitNonZeroNamingTheProblem) {
  const CommandResult missing_text =
      RunCatq(absl::StrCat("eval --model ", fp(), " --text ", dir_.Join("absent.txt")));
  EXPECT_EQ(missing_text.exit_code, 1);
  EXPECT_NE(missing_text.output.find("absent.txt"), std::string::npos) << missing_text.output;

  const CommandResult missing_q = RunCatq(absl::StrCat("eval --model ", fp(), " --quantized ",
                                                       dir_.Join("nothing"), " --text ", text()));
  EXPECT_EQ(missing_q.exit_code, 1);
  EXPECT_NE(missing_q.output.find("nothing"), std::string::npos) << missing_q.output;

  const CommandResult swapped =
      RunCatq(absl::StrCat("eval --model ", q(), " --quantized ", q(), " --text ", text()));
  EXPECT_EQ(swapped.exit_code, 1);
  EXPECT_NE(swapped.output.find("is a quantized output"), std::string::npos) << swapped.output;

  const CommandResult threads =
      RunCatq(absl::StrCat("eval --threads -2 --model ", fp(), " --text ", text()));
  EXPECT_EQ(threads.exit_code, 1);
  EXPECT_NE(threads.output.find("--threads"), std::string::npos) << threads.output;
}

}  // namespace
}  // namespace catq
