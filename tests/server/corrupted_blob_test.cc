// Files corrupted on the server's disk (issue 7, faults): a stored model
// file whose bytes no longer hash to its sha256 fails the jobs that use it,
// naming the file, and is never quantized; an output shard corrupted after
// its job succeeded is refused by the client's fetch (DataLoss), which
// leaves no file of that name behind. The server keeps serving.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/quantizer_client.h"
#include "core/io/env.h"
#include "core/io/sha256.h"
#include "server/catq_server.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq::server {
namespace {

using ::testing::HasSubstr;

// Flips the bits of the byte in the middle of the file at `path`.
void FlipMiddleByte(const std::string& path) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file.is_open()) << path;
  file.seekg(0, std::ios::end);
  const std::streamoff middle = file.tellg() / 2;
  char byte = 0;
  file.seekg(middle);
  file.read(&byte, 1);
  byte = static_cast<char>(~byte);
  file.seekp(middle);
  file.write(&byte, 1);
  ASSERT_TRUE(file.good()) << path;
}

class CorruptedBlobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::WriteSyntheticJobInputs(dir_.Join("model"), dir_.Join("stats.safetensors")));
    CatqServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.Join("data");
    options.workers = 1;
    auto server = CatqServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
    client::ClientOptions client_options;
    client_options.server = absl::StrCat("127.0.0.1:", server_->port());
    auto client = client::QuantizerClient::Connect(client_options);
    ASSERT_OK(client);
    client_ = std::move(*client);
    auto model = client_->UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
    ASSERT_OK(model);
    model_id_ = model->model_id();
  }

  // Runs an rtn job on the uploaded model to its end.
  v1::Job RunJob() {
    v1::SubmitJobRequest request;
    request.set_model_id(model_id_);
    auto submitted = client_->Submit(request);
    EXPECT_OK(submitted);
    auto job = client_->Watch(submitted->job().job_id(), nullptr);
    EXPECT_OK(job);
    return *job;
  }

  testing::TempDir dir_;
  std::unique_ptr<CatqServer> server_;
  std::unique_ptr<client::QuantizerClient> client_;
  std::string model_id_;
};

TEST_F(CorruptedBlobTest, ACorruptedModelFileFailsTheJobNamingTheFile) {
  absl::StatusOr<std::string> sha =
      Sha256OfFile(Env::Default(), dir_.Join("model/model.safetensors"));
  ASSERT_OK(sha);
  FlipMiddleByte(dir_.Join(absl::StrCat("data/blobs/", sha->substr(0, 2), "/", *sha)));

  const v1::Job job = RunJob();
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.error(), HasSubstr("model.safetensors"));
  EXPECT_THAT(job.error(), HasSubstr(*sha));
  EXPECT_FALSE(client_->Fetch(job.job_id(), dir_.Join("fetched")).ok());

  // The server still serves: its other records are intact.
  auto jobs = client_->ListJobs(10);
  ASSERT_OK(jobs);
  EXPECT_EQ(jobs->size(), 1u);
}

TEST_F(CorruptedBlobTest, ACorruptedOutputShardIsRefusedByTheFetch) {
  const v1::Job job = RunJob();
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.error();
  const std::string shard =
      dir_.Join(absl::StrCat("data/jobs/", job.job_id(), "/output/model.safetensors"));
  ASSERT_TRUE(Env::Default()->FileExists(shard));
  FlipMiddleByte(shard);

  auto fetched = client_->Fetch(job.job_id(), dir_.Join("fetched"));
  EXPECT_EQ(fetched.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(fetched.status().message(), HasSubstr("model.safetensors"));
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("fetched/model.safetensors")));

  // A new job on the same model still succeeds and fetches whole.
  const v1::Job again = RunJob();
  ASSERT_EQ(again.state(), v1::JOB_STATE_SUCCEEDED) << again.error();
  EXPECT_OK(client_->Fetch(again.job_id(), dir_.Join("fetched-again")).status());
}

}  // namespace
}  // namespace catq::server
