// The service end to end over real gRPC on loopback: a CatqServer with its
// in-process workers and data dir, driven by the public QuantizerClient.
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>

#include <functional>

#include "absl/strings/match.h"
#include "catq/v1/catq.grpc.pb.h"
#include "client/quantizer_client.h"
#include "core/io/staged_directory.h"
#include "core/output/gptq_export.h"
#include "core/output/in_process_quantizer.h"
#include "proto/recipe_conversion.h"
#include "server/catq_server.h"
#include "tests/util/output_comparison.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq::server {
namespace {

using ::testing::HasSubstr;

class QuantizerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::WriteSyntheticJobInputs(dir_.Join("model"), dir_.Join("stats.safetensors")));
    ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("tokens"),
                                  "tok-a tenant-a\ntok-b tenant-b  # second tenant\n"));
    StartServer();
  }

  // `edit` changes the options of this server (and of every restart).
  void StartServer(std::function<void(CatqServerOptions&)> edit = nullptr) {
    if (edit != nullptr) edit_options_ = std::move(edit);
    CatqServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.Join("data");
    options.workers = 2;
    options.tokens_file = dir_.Join("tokens");
    if (edit_options_ != nullptr) edit_options_(options);
    auto server = CatqServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
  }

  std::unique_ptr<client::QuantizerClient> Client(const std::string& token) {
    client::ClientOptions options;
    options.server = absl::StrCat("127.0.0.1:", server_->port());
    options.token = token;
    auto client = client::QuantizerClient::Connect(options);
    EXPECT_OK(client);
    return std::move(*client);
  }

  // Uploads the model and statistics as tenant A and submits `recipe`.
  v1::Job Submit(client::QuantizerClient& client, const Recipe& recipe) {
    auto model = client.UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
    EXPECT_OK(model);
    auto calibration = client.UploadCalibration(dir_.Join("stats.safetensors"),
                                                v1::CALIBRATION_KIND_STATISTICS, "stats");
    EXPECT_OK(calibration);
    v1::SubmitJobRequest request;
    request.set_model_id(model->model_id());
    request.set_calibration_id(calibration->calibration_id());
    *request.mutable_recipe() = RecipeToProto(recipe);
    auto submitted = client.Submit(request);
    EXPECT_OK(submitted);
    return submitted->job();
  }

  void ExpectSameAsInProcess(const std::string& fetched, const Recipe& recipe) {
    InProcessOptions options;
    options.calibration.statistics_path = dir_.Join("stats.safetensors");
    ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_.Join("model"), dir_.Join("direct"),
                                     recipe, options));
    testing::ExpectSameShardsAndConfig(dir_.Join("direct"), fetched);
  }

  testing::TempDir dir_;
  std::function<void(CatqServerOptions&)> edit_options_;
  std::unique_ptr<CatqServer> server_;
};

TEST_F(QuantizerServiceTest, JobThroughTheServerEqualsTheInProcessOutput) {
  auto client = Client("tok-a");
  const v1::Job submitted = Submit(*client, testing::CatW4A4Recipe());
  EXPECT_EQ(submitted.state(), v1::JOB_STATE_QUEUED);
  int tasks_finished = 0;
  int64_t done_at_first_event = -1;
  auto job = client->Watch(submitted.job_id(), [&](const v1::JobEvent& event) {
    if (done_at_first_event < 0) {
      EXPECT_EQ(event.job().job_id(), submitted.job_id());
      done_at_first_event = event.job().tasks_done();
    }
    if (event.has_task_finished()) ++tasks_finished;
  });
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  EXPECT_EQ(job->tasks_total(), 2);
  EXPECT_EQ(job->tasks_done(), 2);
  // A watcher sees every task that finished after its first event (the
  // current state); one published while it joined may come twice.
  EXPECT_GE(done_at_first_event + tasks_finished, 2);
  auto fetched = client->Fetch(job->job_id(), dir_.Join("fetched"));
  ASSERT_OK(fetched);
  ExpectSameAsInProcess(dir_.Join("fetched"), testing::CatW4A4Recipe());
  const nlohmann::json report =
      nlohmann::json::parse(testing::ReadTestFile(dir_.Join("fetched/catq_report.json")));
  EXPECT_EQ(report["model"]["name"], "tiny");
  EXPECT_EQ(report["linears"].size(), 14u);
}

// cat-auto: the server chooses the block sizes after its calibration stage,
// from the statistics it stored, and hands every layer task the resolved
// recipe; the output and the choice equal the in-process ones.
TEST_F(QuantizerServiceTest, CatAutoJobEqualsTheInProcessOutput) {
  auto client = Client("tok-a");
  Recipe recipe = testing::CatW4A4Recipe();
  recipe.online_cost_budget = 0.3;
  const v1::Job submitted = Submit(*client, recipe);
  auto job = client->Watch(submitted.job_id(), nullptr);
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_OK(client->Fetch(job->job_id(), dir_.Join("fetched")));
  ExpectSameAsInProcess(dir_.Join("fetched"), recipe);
  const nlohmann::json served =
      nlohmann::json::parse(testing::ReadTestFile(dir_.Join("fetched/catq_report.json")));
  const nlohmann::json direct =
      nlohmann::json::parse(testing::ReadTestFile(dir_.Join("direct/catq_report.json")));
  ASSERT_TRUE(served.contains("block_size_choice"));
  EXPECT_EQ(served["block_size_choice"], direct["block_size_choice"]);
  EXPECT_EQ(served["block_size_choice"]["sites"].size(), 8u);
}

// Mixed precision (with cat-auto's block sizes first): the server chooses
// the bits per site after its calibration stage and leases the resolved
// recipe; the output and the choice equal the in-process ones.
TEST_F(QuantizerServiceTest, MixedPrecisionJobEqualsTheInProcessOutput) {
  auto client = Client("tok-a");
  Recipe recipe = testing::CatW4A4Recipe();
  recipe.online_cost_budget = 0.3;
  recipe.average_weight_bits = 5.0;
  recipe.average_activation_bits = 6.0;
  const v1::Job submitted = Submit(*client, recipe);
  auto job = client->Watch(submitted.job_id(), nullptr);
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_OK(client->Fetch(job->job_id(), dir_.Join("fetched")));
  ExpectSameAsInProcess(dir_.Join("fetched"), recipe);
  const nlohmann::json served =
      nlohmann::json::parse(testing::ReadTestFile(dir_.Join("fetched/catq_report.json")));
  const nlohmann::json direct =
      nlohmann::json::parse(testing::ReadTestFile(dir_.Join("direct/catq_report.json")));
  ASSERT_TRUE(served.contains("bit_allocation"));
  EXPECT_EQ(served["bit_allocation"], direct["bit_allocation"]);
  EXPECT_EQ(served["bit_allocation"]["sites"].size(), 8u);
}

TEST(RecipeConversionTest, PerSiteBitsRoundTripAndBadOnesAreNamed) {
  Recipe recipe = testing::CatW4A4Recipe();
  recipe.site_settings = {
      {.layer = 1, .site = Site::kMlpOut, .block_size = 16, .weight_bits = 8, .activation_bits = 6},
      {.layer = 0,
       .site = Site::kAttnIn,
       .block_size = 16,
       .weight_bits = 6,
       .activation_bits = 16}};
  auto back = RecipeFromProto(RecipeToProto(recipe));
  ASSERT_OK(back);
  ASSERT_EQ(back->site_settings.size(), 2u);
  EXPECT_EQ(back->ForSite(1, Site::kMlpOut).weights.bits, 8);
  EXPECT_EQ(back->ForSite(1, Site::kMlpOut).activation_bits, 6);
  EXPECT_EQ(back->ForSite(0, Site::kAttnIn).weights.bits, 6);
  EXPECT_EQ(back->ForSite(0, Site::kAttnIn).activation_bits, 16);
  EXPECT_EQ(back->ForSite(0, Site::kMlpOut).weights.bits, 4);

  Recipe averaged = testing::CatW4A4Recipe();
  averaged.average_weight_bits = 5.5;
  averaged.average_activation_bits = 6.0;
  auto averaged_back = RecipeFromProto(RecipeToProto(averaged));
  ASSERT_OK(averaged_back);
  EXPECT_EQ(averaged_back->average_weight_bits, 5.5);
  EXPECT_EQ(averaged_back->average_activation_bits, 6.0);
  v1::Recipe bad_average = RecipeToProto(averaged);
  bad_average.set_average_weight_bits(2.0);
  EXPECT_STATUS(RecipeFromProto(bad_average), absl::StatusCode::kInvalidArgument,
                "recipe.average_weight_bits: 2");

  v1::Recipe wire = RecipeToProto(recipe);
  wire.mutable_site_settings(1)->set_weight_bits(5);
  EXPECT_STATUS(RecipeFromProto(wire), absl::StatusCode::kInvalidArgument,
                "recipe.site_settings[1].weight_bits: 5");
  wire.mutable_site_settings(1)->set_weight_bits(0);
  wire.mutable_site_settings(1)->set_activation_bits(7);
  EXPECT_STATUS(RecipeFromProto(wire), absl::StatusCode::kInvalidArgument,
                "recipe.site_settings[1].activation_bits: 7");
}

TEST(RecipeConversionTest, CatAutoRoundTripsAndBadFieldsAreNamed) {
  Recipe recipe = testing::CatW4A4Recipe();
  recipe.online_cost_budget = 0.25;
  recipe.site_settings = {{.layer = 1, .site = Site::kMlpOut, .block_size = 64},
                          {.layer = 0, .site = Site::kAttnIn, .block_size = 8}};
  auto back = RecipeFromProto(RecipeToProto(recipe));
  ASSERT_OK(back);
  EXPECT_EQ(back->online_cost_budget, 0.25);
  ASSERT_EQ(back->site_settings.size(), 2u);
  EXPECT_EQ(back->BlockSizeFor(1, Site::kMlpOut), 64);
  EXPECT_EQ(back->BlockSizeFor(0, Site::kAttnIn), 8);
  EXPECT_EQ(back->BlockSizeFor(0, Site::kMlpOut), 16);

  v1::Recipe wire;
  wire.set_method("cat-auto");
  EXPECT_STATUS(RecipeFromProto(wire), absl::StatusCode::kInvalidArgument,
                "recipe.online_cost_budget: method cat-auto needs a budget > 0");
  wire.set_online_cost_budget(0.1);
  auto cat_auto = RecipeFromProto(wire);
  ASSERT_OK(cat_auto);
  EXPECT_EQ(cat_auto->method, Method::kCat);
  EXPECT_TRUE(cat_auto->is_auto());
  v1::SiteSetting* setting = wire.add_site_settings();
  setting->set_site("mlp_middle");
  EXPECT_STATUS(RecipeFromProto(wire), absl::StatusCode::kInvalidArgument,
                "recipe.site_settings[0].site");
  setting->set_site("mlp_in");
  EXPECT_STATUS(RecipeFromProto(wire), absl::StatusCode::kInvalidArgument,
                "recipe.site_settings[0].block_size: 0");
  wire.set_method("hadamard");
  wire.clear_site_settings();
  EXPECT_STATUS(RecipeFromProto(wire), absl::StatusCode::kInvalidArgument,
                "recipe.online_cost_budget");
}

TEST_F(QuantizerServiceTest, SameIdempotencyKeyReturnsTheSameJob) {
  auto client = Client("tok-a");
  auto model = client->UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  v1::SubmitJobRequest request;
  request.set_model_id(model->model_id());
  request.set_idempotency_key("nightly-1");
  auto first = client->Submit(request);
  auto second = client->Submit(request);
  ASSERT_OK(first);
  ASSERT_OK(second);
  EXPECT_FALSE(first->deduplicated());
  EXPECT_TRUE(second->deduplicated());
  EXPECT_EQ(first->job().job_id(), second->job().job_id());
}

TEST_F(QuantizerServiceTest, AtTheJobLimitADuplicateSubmitStillGetsItsJob) {
  // No workers, so the first job stays queued and the tenant is at its limit.
  server_.reset();
  StartServer([](CatqServerOptions& options) {
    options.workers = 0;
    options.service_limits.max_unfinished_jobs_per_tenant = 1;
  });
  auto client = Client("tok-a");
  auto model = client->UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  v1::SubmitJobRequest request;
  request.set_model_id(model->model_id());
  request.set_idempotency_key("nightly-1");
  auto first = client->Submit(request);
  ASSERT_OK(first);

  auto again = client->Submit(request);
  ASSERT_OK(again);
  EXPECT_TRUE(again->deduplicated());
  EXPECT_EQ(again->job().job_id(), first->job().job_id());

  request.set_idempotency_key("nightly-2");
  EXPECT_STATUS(client->Submit(request), absl::StatusCode::kResourceExhausted,
                "1 unfinished jobs, the limit per tenant is 1");
  auto jobs = client->ListJobs();
  ASSERT_OK(jobs);
  EXPECT_EQ(jobs->size(), 1u);
}

TEST_F(QuantizerServiceTest, TenantsSeeOnlyTheirOwnIdsAndBadTokensAreRefused) {
  auto a = Client("tok-a");
  const v1::Job job = Submit(*a, testing::CatW4A4Recipe());
  auto b = Client("tok-b");
  EXPECT_EQ(b->GetJob(job.job_id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b->CancelJob(job.job_id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(b->Watch(job.job_id(), nullptr).status().code(), absl::StatusCode::kNotFound);
  v1::SubmitJobRequest request;
  request.set_model_id(job.model_id());
  EXPECT_EQ(b->Submit(request).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(b->ListJobs()->empty());
  EXPECT_TRUE(b->ListModels()->empty());

  auto stranger = Client("tok-unknown");
  auto refused = stranger->GetJob(job.job_id());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(refused.status().message(), Not(HasSubstr("tok-unknown")));
  EXPECT_EQ(Client("")->ListJobs().status().code(), absl::StatusCode::kUnauthenticated);
  // Tenant A still sees its job.
  EXPECT_OK(a->GetJob(job.job_id()));
}

TEST_F(QuantizerServiceTest, BadRequestsNameTheFieldAndTheServerKeepsServing) {
  auto client = Client("tok-a");
  auto model = client->UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  v1::SubmitJobRequest request;
  request.set_model_id(model->model_id());
  request.mutable_recipe()->set_weight_bits(9);
  auto bad_bits = client->Submit(request);
  EXPECT_EQ(bad_bits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_bits.status().message(), HasSubstr("recipe.weight_bits"));
  request.mutable_recipe()->clear_weight_bits();
  request.mutable_recipe()->set_method("cat");
  auto no_calibration = client->Submit(request);
  EXPECT_EQ(no_calibration.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_calibration.status().message(), HasSubstr("calibration_id"));
  request.set_model_id("m-doesnotexist");
  EXPECT_EQ(client->Submit(request).status().code(), absl::StatusCode::kNotFound);

  // A model whose config does not match its tensors is refused at upload.
  ASSERT_OK(Env::Default()->CreateDirs(dir_.Join("broken")));
  std::string config = testing::ReadTestFile(dir_.Join("model/config.json"));
  nlohmann::json json = nlohmann::json::parse(config);
  json["hidden_size"] = 96;
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("broken/config.json"), json.dump()));
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("broken/model.safetensors"),
                                testing::ReadTestFile(dir_.Join("model/model.safetensors"))));
  auto broken = client->UploadModel(dir_.Join("broken"), "broken", v1::MODEL_FORMAT_HF);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(broken.status().message()), HasSubstr("model.embed_tokens.weight"));
  EXPECT_THAT(broken.status().message(), Not(HasSubstr(dir_.Join("data"))));

  // Chunks must continue where the server's bytes end.
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Quantizer::NewStub(channel);
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer tok-a");
  v1::UploadModelResponse response;
  auto writer = stub->UploadModel(&context, &response);
  v1::UploadModelRequest header;
  header.mutable_header()->set_upload_id("out-of-order");
  header.mutable_header()->set_name("x");
  header.mutable_header()->set_format(v1::MODEL_FORMAT_HF);
  v1::FileEntry* file = header.mutable_header()->add_files();
  file->set_path("config.json");
  file->set_size(10);
  file->set_sha256(std::string(64, 'a'));
  ASSERT_TRUE(writer->Write(header));
  v1::UploadModelRequest chunk;
  chunk.mutable_chunk()->set_offset(4);
  chunk.mutable_chunk()->set_data("abc");
  writer->Write(chunk);
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("offset 4, expected 0"));

  // After all of it, a normal job still runs.
  v1::SubmitJobRequest rtn;
  rtn.set_model_id(model->model_id());
  auto job = client->Submit(rtn);
  ASSERT_OK(job);
  auto done = client->Watch(job->job().job_id(), nullptr);
  ASSERT_OK(done);
  EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();
}

TEST_F(QuantizerServiceTest, InterruptedFetchResumesToIdenticalFiles) {
  auto client = Client("tok-a");
  const v1::Job submitted = Submit(*client, testing::CatW4A4Recipe());
  auto job = client->Watch(submitted.job_id(), nullptr);
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_OK(client->Fetch(job->job_id(), dir_.Join("whole")));
  // Leave the shard as a half-received .part, as a killed fetch does.
  const std::string shard = testing::ReadTestFile(dir_.Join("whole/model.safetensors"));
  ASSERT_OK(Env::Default()->CreateDirs(dir_.Join("resumed")));
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("resumed/model.safetensors.part"),
                                shard.substr(0, shard.size() / 2)));
  auto resumed = client->Fetch(job->job_id(), dir_.Join("resumed"));
  ASSERT_OK(resumed);
  EXPECT_LT(resumed->bytes_received, shard.size() + 64 * 1024);
  EXPECT_TRUE(testing::ReadTestFile(dir_.Join("resumed/model.safetensors")) == shard);

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Quantizer::NewStub(channel);
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer tok-a");
  v1::FetchResultRequest past_end;
  past_end.set_job_id(job->job_id());
  past_end.set_path("model.safetensors");
  past_end.set_offset(shard.size() + 1);
  auto reader = stub->FetchResult(&context, past_end);
  v1::FetchResultChunk chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(status.error_message(), HasSubstr("past the end"));
}

TEST_F(QuantizerServiceTest, RestartedServerFinishesTheJobWithTheSameOutput) {
  auto client = Client("tok-a");
  const v1::Job submitted = Submit(*client, testing::CatW4A4Recipe());
  server_->Shutdown();
  server_.reset();
  StartServer();
  client = Client("tok-a");
  auto job = client->Watch(submitted.job_id(), nullptr);
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_OK(client->Fetch(job->job_id(), dir_.Join("fetched")));
  ExpectSameAsInProcess(dir_.Join("fetched"), testing::CatW4A4Recipe());
}

TEST_F(QuantizerServiceTest, CancelEndsTheJob) {
  auto client = Client("tok-a");
  // A job on this tiny model can finish before the cancel arrives; each try
  // submits a new one until a cancel lands first, which the first try almost
  // always does.
  std::string cancelled_id;
  for (int attempt = 0; attempt < 20 && cancelled_id.empty(); ++attempt) {
    const v1::Job submitted = Submit(*client, testing::CatW4A4Recipe());
    auto cancelled = client->CancelJob(submitted.job_id());
    if (cancelled.ok()) {
      EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
      cancelled_id = submitted.job_id();
    } else {
      // The job ended first: cancelling an ended job is refused.
      EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kFailedPrecondition);
    }
  }
  ASSERT_FALSE(cancelled_id.empty()) << "every job finished before its cancel";
  auto job = client->Watch(cancelled_id, nullptr);
  ASSERT_OK(job);
  EXPECT_EQ(job->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(job->result_files().empty());
  EXPECT_EQ(client->Fetch(cancelled_id, dir_.Join("none")).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Token ids (int32, -1 between documents) calibrate a model whose tokenizer
// catq lacks, with the output of the same ids in process; a malformed file
// is refused at upload and an id outside the model's vocabulary fails the
// job, both naming the byte offset.
TEST_F(QuantizerServiceTest, TokenIdCalibrationEqualsInProcess) {
  auto client = Client("tok-a");
  std::string ids;
  auto append = [&ids](int32_t id) { ids.append(reinterpret_cast<const char*>(&id), 4); };
  for (int document = 0; document < 3; ++document) {
    for (int32_t t = 0; t < 30; ++t) append(1 + (document * 37 + t * 11) % 200);
    append(-1);
  }
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("calib.ids"), ids));
  auto model = client->UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  auto calibration =
      client->UploadCalibration(dir_.Join("calib.ids"), v1::CALIBRATION_KIND_TOKEN_IDS, "ids");
  ASSERT_OK(calibration);
  v1::SubmitJobRequest request;
  request.set_model_id(model->model_id());
  request.set_calibration_id(calibration->calibration_id());
  *request.mutable_recipe() = RecipeToProto(testing::CatW4A4Recipe());
  auto submitted = client->Submit(request);
  ASSERT_OK(submitted);
  auto job = client->Watch(submitted->job().job_id(), nullptr);
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_OK(client->Fetch(job->job_id(), dir_.Join("fetched")));
  InProcessOptions options;
  options.calibration.token_ids_path = dir_.Join("calib.ids");
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_.Join("model"), dir_.Join("direct"),
                                   testing::CatW4A4Recipe(), options));
  testing::ExpectSameShardsAndConfig(dir_.Join("direct"), dir_.Join("fetched"));

  ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("odd.ids"), "12345"));
  auto odd = client->UploadCalibration(dir_.Join("odd.ids"), v1::CALIBRATION_KIND_TOKEN_IDS, "odd");
  EXPECT_EQ(odd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(odd.status().message(), HasSubstr("size 5 is not a multiple of 4"));

  append(100000);  // past the tiny model's vocabulary, at byte offset ids.size() - 4
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("far.ids"), ids));
  auto far = client->UploadCalibration(dir_.Join("far.ids"), v1::CALIBRATION_KIND_TOKEN_IDS, "far");
  ASSERT_OK(far);
  request.set_calibration_id(far->calibration_id());
  auto failing = client->Submit(request);
  ASSERT_OK(failing);
  auto failed = client->Watch(failing->job().job_id(), nullptr);
  ASSERT_OK(failed);
  EXPECT_EQ(failed->state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(
      failed->error(),
      HasSubstr(absl::StrCat("calibration 'far': id 100000 at byte offset ", ids.size() - 4)));
}

// export_gptq: the GPTQ layout comes with the job's result as gptq/<name>,
// byte-identical to ExportGptqLayout of the in-process output; a recipe with
// an online transform is refused at SubmitJob naming the field, and a
// diagonal recipe exports on a model whose query heads share KV heads.
TEST_F(QuantizerServiceTest, ExportGptqFetchesTheInProcessExport) {
  auto client = Client("tok-a");
  Recipe recipe;  // rtn W4A16
  recipe.weights.group_size = 32;
  auto model = client->UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  v1::SubmitJobRequest request;
  request.set_model_id(model->model_id());
  *request.mutable_recipe() = RecipeToProto(recipe);
  request.set_export_gptq(true);
  auto submitted = client->Submit(request);
  ASSERT_OK(submitted);
  auto job = client->Watch(submitted->job().job_id(), nullptr);
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  std::vector<std::string> listed;
  for (const v1::FileEntry& file : job->result_files()) {
    if (absl::StartsWith(file.path(), "gptq/")) listed.push_back(file.path().substr(5));
  }
  ASSERT_OK(client->Fetch(job->job_id(), dir_.Join("fetched")));

  ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_.Join("model"), dir_.Join("direct"), recipe,
                                   InProcessOptions()));
  testing::ExpectSameShardsAndConfig(dir_.Join("direct"), dir_.Join("fetched"));
  ASSERT_OK(ExportGptqLayout(Env::Default(), dir_.Join("direct"), dir_.Join("direct-gptq")));
  auto expected = ListFilesRecursively(Env::Default(), dir_.Join("direct-gptq"));
  ASSERT_OK(expected);
  EXPECT_EQ(listed, *expected);
  EXPECT_THAT(listed, ::testing::Contains("model.safetensors"));
  for (const std::string& name : *expected) {
    EXPECT_EQ(testing::ReadTestFile(dir_.Join("fetched/gptq/" + name)),
              testing::ReadTestFile(dir_.Join("direct-gptq/" + name)))
        << name;
  }

  v1::SubmitJobRequest online = request;
  online.mutable_recipe()->set_method("hadamard");
  auto refused = client->Submit(online);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("export_gptq: recipe.method: hadamard"));

  // SmoothQuant's diagonal folds at every site, attn_out included although
  // the tiny preset's query heads share KV heads (it is solved tied across
  // each KV head's group): the job exports too.
  auto calibration = client->UploadCalibration(dir_.Join("stats.safetensors"),
                                               v1::CALIBRATION_KIND_STATISTICS, "stats");
  ASSERT_OK(calibration);
  v1::SubmitJobRequest smooth = request;
  smooth.set_calibration_id(calibration->calibration_id());
  smooth.mutable_recipe()->set_method("smoothquant");
  auto smooth_job = client->Submit(smooth);
  ASSERT_OK(smooth_job);
  auto exported = client->Watch(smooth_job->job().job_id(), nullptr);
  ASSERT_OK(exported);
  ASSERT_EQ(exported->state(), v1::JOB_STATE_SUCCEEDED) << exported->error();
  std::vector<std::string> smooth_files;
  for (const v1::FileEntry& file : exported->result_files()) smooth_files.push_back(file.path());
  EXPECT_THAT(smooth_files, ::testing::Contains("gptq/model.safetensors"));
}

}  // namespace
}  // namespace catq::server
