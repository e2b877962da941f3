// Remote workers as real processes: `catq serve --workers 0` and `catq worker`
// children. One worker is killed with SIGKILL while it holds a lease; after
// the lease expires another worker takes the task, the job completes, and its
// shards are byte-identical to the same job run by one worker alone and to
// the in-process pipeline.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "absl/strings/match.h"
#include "client/quantizer_client.h"
#include "core/output/in_process_quantizer.h"
#include "proto/recipe_conversion.h"
#include "tests/util/child_process.h"
#include "tests/util/output_comparison.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using testing::ChildProcess;

constexpr absl::Duration kTimeout = absl::Seconds(120);

class WorkerKillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::WriteSyntheticJobInputs(dir_.Join("model"), dir_.Join("stats.safetensors"),
                                               /*num_layers=*/6));
    auto server =
        ChildProcess::Start({CATQ_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                             dir_.Join("data"), "--workers", "0", "--lease-seconds", "1"});
    ASSERT_OK(server);
    server_ = std::move(*server);
    auto line = server_->WaitForLine("catq serve: listening on", kTimeout);
    ASSERT_OK(line);
    // "catq serve: listening on HOST:PORT, data dir D"
    const std::string rest = line->substr(line->find("listening on ") + 13);
    address_ = rest.substr(0, rest.find(','));
    client::ClientOptions options;
    options.server = address_;
    auto client = client::QuantizerClient::Connect(options);
    ASSERT_OK(client);
    client_ = std::move(*client);
  }

  std::unique_ptr<ChildProcess> StartWorker(const std::string& id) {
    auto worker =
        ChildProcess::Start({CATQ_BINARY, "worker", "--server", address_, "--cache-dir",
                             dir_.Join("cache-" + id), "--id", id, "--poll-seconds", "0.2"});
    EXPECT_OK(worker);
    return worker.ok() ? std::move(*worker) : nullptr;
  }

  v1::SubmitJobRequest Request() {
    auto model = client_->UploadModel(dir_.Join("model"), "tiny6", v1::MODEL_FORMAT_HF);
    EXPECT_OK(model);
    auto calibration = client_->UploadCalibration(dir_.Join("stats.safetensors"),
                                                  v1::CALIBRATION_KIND_STATISTICS, "stats");
    EXPECT_OK(calibration);
    v1::SubmitJobRequest request;
    request.set_model_id(model->model_id());
    request.set_calibration_id(calibration->calibration_id());
    *request.mutable_recipe() = RecipeToProto(testing::CatW4A4Recipe());
    return request;
  }

  testing::TempDir dir_;
  std::unique_ptr<ChildProcess> server_;
  std::string address_;
  std::unique_ptr<client::QuantizerClient> client_;
};

TEST_F(WorkerKillTest, AWorkerKilledMidTaskLosesItsTaskAndTheOutputDoesNotChange) {
  v1::SubmitJobRequest request = Request();
  request.set_idempotency_key("with-a-crash");
  auto submitted = client_->Submit(request);
  ASSERT_OK(submitted);

  std::unique_ptr<ChildProcess> doomed = StartWorker("doomed");
  ASSERT_NE(doomed, nullptr);
  ASSERT_OK(doomed->WaitForLine("catq worker: leased job", kTimeout));
  const int status = doomed->Kill();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << doomed->output();

  std::unique_ptr<ChildProcess> survivor = StartWorker("survivor");
  ASSERT_NE(survivor, nullptr);
  bool doomed_lease_expired = false;
  auto job = client_->Watch(submitted->job().job_id(), [&](const v1::JobEvent& event) {
    if (absl::StrContains(event.message(), "lease of worker 'doomed' expired")) {
      doomed_lease_expired = true;
    }
  });
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  EXPECT_TRUE(doomed_lease_expired) << "the killed worker held no lease: " << doomed->output();
  ASSERT_OK(client_->Fetch(job->job_id(), dir_.Join("crashed")));

  // The same job again, with the survivor alone from the start.
  request.set_idempotency_key("one-worker");
  auto again = client_->Submit(request);
  ASSERT_OK(again);
  auto alone = client_->Watch(again->job().job_id(), nullptr);
  ASSERT_OK(alone);
  ASSERT_EQ(alone->state(), v1::JOB_STATE_SUCCEEDED) << alone->error();
  ASSERT_OK(client_->Fetch(alone->job_id(), dir_.Join("alone")));

  InProcessOptions options;
  options.calibration.statistics_path = dir_.Join("stats.safetensors");
  ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_.Join("model"), dir_.Join("direct"),
                                   testing::CatW4A4Recipe(), options));
  testing::ExpectSameShardsAndConfig(dir_.Join("alone"), dir_.Join("crashed"));
  testing::ExpectSameShardsAndConfig(dir_.Join("direct"), dir_.Join("crashed"));

  // Both stop cleanly on SIGTERM.
  ASSERT_OK(survivor->Signal(SIGTERM));
  const int survivor_status = survivor->Wait();
  EXPECT_TRUE(WIFEXITED(survivor_status) && WEXITSTATUS(survivor_status) == 0)
      << survivor->output();
  EXPECT_TRUE(absl::StrContains(survivor->output(), "catq worker: done job"));
  ASSERT_OK(server_->Signal(SIGTERM));
  const int server_status = server_->Wait();
  EXPECT_TRUE(WIFEXITED(server_status) && WEXITSTATUS(server_status) == 0) << server_->output();
}

}  // namespace
}  // namespace catq
