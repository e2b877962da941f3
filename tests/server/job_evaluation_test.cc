// A job with an evaluation stage. On the real stories260K model and text,
// through the server (llama2.c upload, text calibration, evaluation text),
// its shards and its report's perplexities equal the in-process pipeline's
// (`catq quantize --eval-text`) for the same recipe, also for a Hugging Face
// upload with SentencePiece's tokenizer.model; and SubmitJob refuses an
// evaluation it could not run.
#include <gtest/gtest.h>

#include "client/quantizer_client.h"
#include "core/eval/output_evaluation.h"
#include "core/model/llama2c_import.h"
#include "core/model/synth.h"
#include "core/output/in_process_quantizer.h"
#include "nlohmann/json.hpp"
#include "proto/recipe_conversion.h"
#include "server/catq_server.h"
#include "tests/model/sentencepiece_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq::server {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kCalibrationDocuments = 16;

Recipe CatRecipe() {
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = 32;
  recipe.activation_bits = 4;
  return recipe;
}

class JobEvaluationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Env* env = Env::Default();
    if (!testing::SharedDir().empty()) {
      // A llama2.c upload is exactly the checkpoint and its tokenizer.
      ASSERT_OK(env->CreateDirs(dir_.Join("llama2c")));
      for (const char* name : {"stories260K.bin", "tok512.bin"}) {
        ASSERT_OK(WriteFileAtomically(
            env, dir_.Join("llama2c/") + name,
            testing::ReadTestFile(testing::SharedPath("models/stories260K/") + name)));
      }
    }
    CatqServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.Join("data");
    options.workers = 2;
    auto server = CatqServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
    client::ClientOptions client_options;
    client_options.server = absl::StrCat("127.0.0.1:", server_->port());
    auto client = client::QuantizerClient::Connect(client_options);
    ASSERT_OK(client);
    client_ = std::move(*client);
  }

  v1::SubmitJobRequest Request(const std::string& model_id) {
    auto calibration = client_->UploadCalibration(testing::SharedPath("data/tinystories_197k.txt"),
                                                  v1::CALIBRATION_KIND_TEXT, "tinystories_197k");
    EXPECT_OK(calibration);
    auto eval = client_->UploadCalibration(testing::SharedPath("data/tinystories_sample.txt"),
                                           v1::CALIBRATION_KIND_TEXT, "tinystories_sample");
    EXPECT_OK(eval);
    v1::SubmitJobRequest request;
    request.set_model_id(model_id);
    request.set_calibration_id(calibration->calibration_id());
    request.set_eval_calibration_id(eval->calibration_id());
    request.mutable_calibration_options()->set_max_documents(kCalibrationDocuments);
    *request.mutable_recipe() = RecipeToProto(CatRecipe());
    return request;
  }

  testing::TempDir dir_;
  std::unique_ptr<CatqServer> server_;
  std::unique_ptr<client::QuantizerClient> client_;
};

TEST_F(JobEvaluationTest, ReportsThePerplexitiesOfTheInProcessPipeline) {
  CATQ_REQUIRE_SHARED();
  auto model = client_->UploadModel(dir_.Join("llama2c"), "stories260K", v1::MODEL_FORMAT_LLAMA2C);
  ASSERT_OK(model);
  auto submitted = client_->Submit(Request(model->model_id()));
  ASSERT_OK(submitted);
  bool saw_evaluating = false;
  auto job = client_->Watch(submitted->job().job_id(), [&](const v1::JobEvent& event) {
    if (event.job().state() == v1::JOB_STATE_EVALUATING) saw_evaluating = true;
  });
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  EXPECT_TRUE(saw_evaluating);
  ASSERT_OK(client_->Fetch(job->job_id(), dir_.Join("fetched")));

  // The same recipe in process on the imported model, then evaluated.
  ASSERT_OK(ImportLlama2c(Env::Default(), dir_.Join("llama2c/stories260K.bin"),
                          dir_.Join("llama2c/tok512.bin"), dir_.Join("hf")));
  InProcessOptions options;
  options.calibration.text_path = testing::SharedPath("data/tinystories_197k.txt");
  options.calibration.text.max_documents = kCalibrationDocuments;
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_.Join("hf"), dir_.Join("direct"),
                                   CatRecipe(), options));
  auto direct = EvaluateOutput(dir_.Join("hf"), dir_.Join("direct"),
                               testing::SharedPath("data/tinystories_sample.txt"), {});
  ASSERT_OK(direct);
  EXPECT_TRUE(testing::ReadTestFile(dir_.Join("direct/model.safetensors")) ==
              testing::ReadTestFile(dir_.Join("fetched/model.safetensors")))
      << "shards differ from the in-process output";

  const nlohmann::json report =
      nlohmann::json::parse(testing::ReadTestFile(dir_.Join("fetched/catq_report.json")));
  ASSERT_TRUE(report.contains("evaluation")) << report.dump(2);
  const nlohmann::json& evaluation = report["evaluation"];
  EXPECT_EQ(evaluation["text"], "tinystories_sample");
  EXPECT_EQ(evaluation["perplexity"].get<double>(), direct->perplexity);
  EXPECT_EQ(evaluation["fp_perplexity"].get<double>(), direct->fp_perplexity);
  EXPECT_EQ(evaluation["kl_to_fp"].get<double>(), direct->kl_to_fp);
  EXPECT_EQ(evaluation["tokens"].get<int64_t>(), direct->tokens);
  // stories260K's FP perplexity on this text (issue 4's check) and CAT W4A4
  // above it.
  EXPECT_NEAR(direct->fp_perplexity, 3.548, 0.005);
  EXPECT_GT(direct->perplexity, direct->fp_perplexity);
}

// A Hugging Face upload whose tokenizer is SentencePiece's tokenizer.model
// (no tokenizer.bin) calibrates and evaluates on text in a job, with the
// shards and figures of the same model with tokenizer.bin in process.
TEST_F(JobEvaluationTest, HuggingFaceUploadWithTokenizerModel) {
  CATQ_REQUIRE_SHARED();
  Env* env = Env::Default();
  const std::string tok512 = dir_.Join("llama2c/tok512.bin");
  ASSERT_OK(ImportLlama2c(env, dir_.Join("llama2c/stories260K.bin"), tok512, dir_.Join("hf")));
  ASSERT_OK(ImportLlama2c(env, dir_.Join("llama2c/stories260K.bin"), tok512, dir_.Join("hf_sp")));
  ASSERT_OK(env->RemoveFile(dir_.Join("hf_sp/tokenizer.bin")));
  ASSERT_OK(WriteFileAtomically(
      env, dir_.Join("hf_sp/tokenizer.model"),
      testing::SentencePieceModelFromLlama2c(testing::ReadTestFile(tok512), 512)));
  auto model = client_->UploadModel(dir_.Join("hf_sp"), "stories260K-sp", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  auto submitted = client_->Submit(Request(model->model_id()));
  ASSERT_OK(submitted);
  auto job = client_->Watch(submitted->job().job_id(), [](const v1::JobEvent&) {});
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_OK(client_->Fetch(job->job_id(), dir_.Join("fetched")));
  EXPECT_TRUE(env->FileExists(dir_.Join("fetched/tokenizer.model")));

  InProcessOptions options;
  options.calibration.text_path = testing::SharedPath("data/tinystories_197k.txt");
  options.calibration.text.max_documents = kCalibrationDocuments;
  ASSERT_OK(
      QuantizeModelInProcess(env, dir_.Join("hf"), dir_.Join("direct"), CatRecipe(), options));
  auto direct = EvaluateOutput(dir_.Join("hf"), dir_.Join("direct"),
                               testing::SharedPath("data/tinystories_sample.txt"), {});
  ASSERT_OK(direct);
  EXPECT_TRUE(testing::ReadTestFile(dir_.Join("direct/model.safetensors")) ==
              testing::ReadTestFile(dir_.Join("fetched/model.safetensors")))
      << "shards differ from the in-process output";
  const nlohmann::json report =
      nlohmann::json::parse(testing::ReadTestFile(dir_.Join("fetched/catq_report.json")));
  ASSERT_TRUE(report.contains("evaluation")) << report.dump(2);
  EXPECT_EQ(report["evaluation"]["perplexity"].get<double>(), direct->perplexity);
  EXPECT_EQ(report["evaluation"]["fp_perplexity"].get<double>(), direct->fp_perplexity);
  EXPECT_EQ(report["evaluation"]["tokens"].get<int64_t>(), direct->tokens);
}

// The sequential mode through the server: the job's shards equal the
// in-process sequential output's, its report says so, and a sequential
// request without a calibration to run is refused naming the field.
TEST_F(JobEvaluationTest, SequentialCalibrationAsInProcess) {
  CATQ_REQUIRE_SHARED();
  auto model = client_->UploadModel(dir_.Join("llama2c"), "stories260K", v1::MODEL_FORMAT_LLAMA2C);
  ASSERT_OK(model);
  v1::SubmitJobRequest request = Request(model->model_id());
  request.clear_eval_calibration_id();
  request.mutable_calibration_options()->set_sequential(true);
  auto submitted = client_->Submit(request);
  ASSERT_OK(submitted);
  auto job = client_->Watch(submitted->job().job_id(), nullptr);
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_OK(client_->Fetch(job->job_id(), dir_.Join("fetched")));
  const nlohmann::json report =
      nlohmann::json::parse(testing::ReadTestFile(dir_.Join("fetched/catq_report.json")));
  EXPECT_EQ(report["calibration"]["mode"], "sequential") << report["calibration"].dump();

  ASSERT_OK(ImportLlama2c(Env::Default(), dir_.Join("llama2c/stories260K.bin"),
                          dir_.Join("llama2c/tok512.bin"), dir_.Join("hf")));
  InProcessOptions options;
  options.calibration.text_path = testing::SharedPath("data/tinystories_197k.txt");
  options.calibration.text.max_documents = kCalibrationDocuments;
  options.calibration.sequential = true;
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_.Join("hf"), dir_.Join("direct"),
                                   CatRecipe(), options));
  EXPECT_TRUE(testing::ReadTestFile(dir_.Join("direct/model.safetensors")) ==
              testing::ReadTestFile(dir_.Join("fetched/model.safetensors")))
      << "shards differ from the in-process sequential output";

  request.clear_calibration_id();
  *request.mutable_recipe() = RecipeToProto(Recipe());  // rtn: no calibration needed
  auto refused = client_->Submit(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("calibration_options.sequential"));
}

TEST_F(JobEvaluationTest, EvaluationNeedsATokenizerAndAKnownText) {
  // A synthetic Hugging Face model has neither tokenizer.model nor
  // tokenizer.bin.
  SynthOptions synth;
  synth.preset = "tiny";
  ASSERT_OK(WriteSyntheticModel(Env::Default(), synth, dir_.Join("synth")));
  auto model = client_->UploadModel(dir_.Join("synth"), "tiny", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("eval.txt"), "Once upon a time.\n"));
  auto eval = client_->UploadCalibration(dir_.Join("eval.txt"), v1::CALIBRATION_KIND_TEXT, "eval");
  ASSERT_OK(eval);
  v1::SubmitJobRequest request;
  request.set_model_id(model->model_id());
  request.set_eval_calibration_id(eval->calibration_id());
  auto refused = client_->Submit(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("eval_calibration_id"));
  EXPECT_THAT(refused.status().message(), HasSubstr("tokenizer.bin"));
  EXPECT_THAT(refused.status().message(), HasSubstr("tokenizer.model"));
  request.set_eval_calibration_id("c-doesnotexist");
  EXPECT_EQ(client_->Submit(request).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace catq::server
