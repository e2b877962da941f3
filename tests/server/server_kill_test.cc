// Crash tests of the server (issue 5): the real `catq serve` binary
// (CATQ_BINARY) runs as a child process, is killed with SIGKILL in the middle
// of an upload and in the middle of a job, and is restarted on the same data
// dir. The upload must resume from what GetUpload reports, and the job must
// finish with shards and config byte-identical to the in-process output of
// the same recipe, without re-running the tasks that finished before the
// kill.
//
// The model is synthetic and the calibration is precomputed statistics, so
// nothing here needs ../shared.
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <functional>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "catq/v1/catq.grpc.pb.h"
#include "client/file_manifest.h"
#include "client/quantizer_client.h"
#include "core/model/llama_model.h"
#include "core/output/in_process_quantizer.h"
#include "proto/recipe_conversion.h"
#include "server/metadata_store.h"
#include "server/tenant_auth.h"
#include "tests/util/child_process.h"
#include "tests/util/output_comparison.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::catq::testing::ChildProcess;

// Generous: a sanitizer build starts (and quantizes) several times slower.
constexpr absl::Duration kStartTimeout = absl::Seconds(120);
constexpr absl::Duration kUploadTimeout = absl::Seconds(60);
// How long a job may take before its watch gives up: a server that does not
// resume a job fails the test in this time instead of hanging it.
constexpr absl::Duration kJobTimeout = absl::Seconds(300);

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

bool KilledBySigkill(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }

// The port of "catq serve: listening on HOST:PORT, data dir DIR".
absl::StatusOr<int> ListeningPort(absl::string_view line) {
  constexpr absl::string_view kPrefix = "catq serve: listening on ";
  const size_t start = line.find(kPrefix);
  if (start == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("not a listening line: ", line));
  }
  absl::string_view address = line.substr(start + kPrefix.size());
  address = address.substr(0, address.find(','));
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port) || port <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("no port in: ", line));
  }
  return port;
}

class ServerKillTest : public ::testing::Test {
 protected:
  // A synthetic model of `layers` layers of the tiny shape, and statistics
  // from random tokens through it (the precomputed calibration a client of
  // an architecture catq cannot run would send).
  void WriteModelAndStatistics(int64_t layers) {
    ASSERT_OK(testing::WriteSyntheticJobInputs(model_dir(), stats_path(), layers));
  }

  // Starts `catq serve` on data_dir() (a restart when it ran before) and
  // waits until it listens; a previous server still running is killed.
  void StartServer() {
    auto started = ChildProcess::Start({CATQ_BINARY, "serve", "--listen", "127.0.0.1:0",
                                        "--data-dir", data_dir(), "--workers", "2"});
    ASSERT_OK(started);
    server_ = std::move(*started);
    absl::StatusOr<std::string> line =
        server_->WaitForLine("catq serve: listening on", kStartTimeout);
    ASSERT_OK(line);
    absl::StatusOr<int> port = ListeningPort(*line);
    ASSERT_OK(port);
    address_ = absl::StrCat("127.0.0.1:", *port);
  }

  // SIGKILL, as a crash: no shutdown code runs.
  void KillServer() {
    const int status = server_->Kill();
    ASSERT_TRUE(KilledBySigkill(status))
        << "the server " << DescribeWaitStatus(status) << " before the kill; output:\n"
        << server_->output();
  }

  // SIGTERM: the server shuts down cleanly and exits 0.
  void StopServer() {
    ASSERT_OK(server_->Signal(SIGTERM));
    const int status = server_->Wait();
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "catq serve " << DescribeWaitStatus(status) << " after SIGTERM; output:\n"
        << server_->output();
  }

  std::unique_ptr<client::QuantizerClient> Client() {
    client::ClientOptions options;
    options.server = address_;
    auto client = client::QuantizerClient::Connect(options);
    EXPECT_OK(client);
    return client.ok() ? std::move(*client) : nullptr;
  }

  std::unique_ptr<v1::Quantizer::Stub> Stub() {
    return v1::Quantizer::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  // The job's output directory as the in-process path writes it.
  void QuantizeInProcess(const Recipe& recipe, const std::string& out_dir) {
    InProcessOptions options;
    if (recipe.method != Method::kRtn) options.calibration.statistics_path = stats_path();
    ASSERT_OK(QuantizeModelInProcess(Env::Default(), model_dir(), out_dir, recipe, options));
  }

  // Every shard (*.safetensors) and config.json of `fetched` equals the
  // in-process output of `recipe`, and both hold the same shards.
  void ExpectSameAsInProcess(const std::string& fetched, const Recipe& recipe) {
    const std::string direct = dir_.Join("direct");
    ASSERT_NO_FATAL_FAILURE(QuantizeInProcess(recipe, direct));
    testing::ExpectSameShardsAndConfig(direct, fetched);
  }

  std::string model_dir() const { return dir_.Join("model"); }
  std::string stats_path() const { return dir_.Join("stats.safetensors"); }
  std::string data_dir() const { return dir_.Join("data"); }
  // The server's metadata database inside its data dir (server/catq_server.cc).
  std::string database_path() const { return dir_.Join("data/catq.db"); }

  testing::TempDir dir_;
  std::unique_ptr<ChildProcess> server_;
  std::string address_;  // HOST:PORT of the running server
};

// Calls GetUpload until the server reports `want` bytes received of every
// file, so the test knows what a kill now leaves on disk. Each call is a
// round trip to the server: no sleeping.
absl::StatusOr<v1::Upload> WaitForReceivedBytes(v1::Quantizer::Stub& stub,
                                                const std::string& upload_id,
                                                const std::vector<uint64_t>& want) {
  const absl::Time deadline = absl::Now() + kUploadTimeout;
  v1::Upload upload;
  grpc::Status status;
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    v1::GetUploadRequest request;
    request.set_upload_id(upload_id);
    status = stub.GetUpload(&context, request, &upload);
    if (status.ok() && std::vector<uint64_t>(upload.received_bytes().begin(),
                                             upload.received_bytes().end()) == want) {
      return upload;
    }
    // NOT_FOUND until the server has stored the header.
    if (!status.ok() && status.error_code() != grpc::StatusCode::NOT_FOUND) break;
  }
  return absl::DeadlineExceededError(absl::StrCat("GetUpload('", upload_id,
                                                  "') never reported the bytes sent; last status ",
                                                  status.error_code(), " ", status.error_message(),
                                                  ", last upload ", upload.ShortDebugString()));
}

// What a watch saw: the stream's status and the job of its last event.
struct WatchResult {
  grpc::Status status;
  v1::Job job;  // Unset when no event came.
  int events = 0;
};

// Follows WatchJob until the server ends the stream, the server dies or
// kJobTimeout passes (DEADLINE_EXCEEDED), calling `on_event` with each
// event; `on_event` may kill the server.
WatchResult WatchJob(v1::Quantizer::Stub& stub, const std::string& job_id,
                     const std::function<void(const v1::JobEvent&)>& on_event) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kJobTimeout));
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  auto reader = stub.WatchJob(&context, request);
  WatchResult result;
  v1::JobEvent event;
  while (reader->Read(&event)) {
    result.job = event.job();
    ++result.events;
    if (on_event) on_event(event);
  }
  result.status = reader->Finish();
  return result;
}

std::string Describe(const WatchResult& watched) {
  return absl::StrCat("watch ended with ", static_cast<int>(watched.status.error_code()), " '",
                      watched.status.error_message(), "' after ", watched.events,
                      " events; last job: ", watched.job.ShortDebugString());
}

TEST_F(ServerKillTest, UploadKilledMidwayResumesFromGetUploadAfterRestart) {
  ASSERT_NO_FATAL_FAILURE(WriteModelAndStatistics(/*layers=*/2));
  ASSERT_NO_FATAL_FAILURE(StartServer());

  // The header QuantizerClient::UploadModel sends for this directory, so its
  // default upload id is the one resumed below.
  auto manifest = client::BuildDirectoryManifest(Env::Default(), model_dir());
  ASSERT_OK(manifest);
  ASSERT_EQ(manifest->size(), 2u);  // config.json, model.safetensors
  ASSERT_EQ((*manifest)[1].entry.path(), "model.safetensors");
  v1::UploadHeader header;
  header.set_name("synth");
  header.set_format(v1::MODEL_FORMAT_HF);
  for (const client::ManifestFile& file : *manifest) *header.add_files() = file.entry;
  header.set_upload_id(client::DefaultUploadId(header));

  // All of config.json and the first third of the weights, in two chunks,
  // on a stream that is never finished.
  const std::string config = testing::ReadTestFile((*manifest)[0].local_path);
  const std::string weights = testing::ReadTestFile((*manifest)[1].local_path);
  const uint64_t sent = weights.size() / 3;
  ASSERT_GT(sent, 0u);
  const std::vector<uint64_t> received_before_kill = {config.size(), sent};
  {
    auto stub = Stub();
    grpc::ClientContext context;
    v1::UploadModelResponse response;
    auto writer = stub->UploadModel(&context, &response);
    v1::UploadModelRequest request;
    *request.mutable_header() = header;
    ASSERT_TRUE(writer->Write(request));
    request.mutable_chunk()->set_file_index(0);
    request.mutable_chunk()->set_offset(0);
    request.mutable_chunk()->set_data(config);
    ASSERT_TRUE(writer->Write(request));
    request.mutable_chunk()->set_file_index(1);
    request.mutable_chunk()->set_data(weights.substr(0, sent));
    ASSERT_TRUE(writer->Write(request));
    auto upload = WaitForReceivedBytes(*stub, header.upload_id(), received_before_kill);
    ASSERT_OK(upload);
    EXPECT_FALSE(upload->complete());

    ASSERT_NO_FATAL_FAILURE(KillServer());
    context.TryCancel();
    EXPECT_FALSE(writer->Finish().ok());
  }

  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto after_restart = client->GetUpload(header.upload_id());
  ASSERT_OK(after_restart);
  EXPECT_FALSE(after_restart->complete());
  EXPECT_EQ(std::vector<uint64_t>(after_restart->received_bytes().begin(),
                                  after_restart->received_bytes().end()),
            received_before_kill)
      << "the restarted server lost received bytes";

  // Running the same upload again sends only what the server lacks: the
  // first progress report already counts the bytes received before the kill.
  uint64_t resumed_from = UINT64_MAX;
  auto model = client->UploadModel(model_dir(), "synth", v1::MODEL_FORMAT_HF, "",
                                   [&](uint64_t done, uint64_t /*total*/) {
                                     if (resumed_from == UINT64_MAX) resumed_from = done;
                                   });
  ASSERT_OK(model);
  EXPECT_EQ(resumed_from, config.size() + sent);
  ASSERT_EQ(model->files_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(model->files(i).path(), (*manifest)[i].entry.path());
    EXPECT_EQ(model->files(i).size(), (*manifest)[i].entry.size());
    EXPECT_EQ(model->files(i).sha256(), (*manifest)[i].entry.sha256());
  }
  auto completed = client->GetUpload(header.upload_id());
  ASSERT_OK(completed);
  EXPECT_TRUE(completed->complete());
  EXPECT_EQ(completed->model_id(), model->model_id());

  // A job on the model succeeds, with the in-process output.
  v1::SubmitJobRequest request;
  request.set_model_id(model->model_id());
  auto submitted = client->Submit(request);  // rtn: no calibration
  ASSERT_OK(submitted);
  const WatchResult watched = WatchJob(*Stub(), submitted->job().job_id(), nullptr);
  ASSERT_TRUE(watched.status.ok()) << Describe(watched);
  ASSERT_EQ(watched.job.state(), v1::JOB_STATE_SUCCEEDED) << Describe(watched);
  ASSERT_OK(client->Fetch(watched.job.job_id(), dir_.Join("fetched")));
  ExpectSameAsInProcess(dir_.Join("fetched"), Recipe{});
  ASSERT_NO_FATAL_FAILURE(StopServer());
}

TEST_F(ServerKillTest, JobKilledMidwayFinishesAfterRestartWithTheInProcessOutput) {
  constexpr int64_t kLayers = 8;
  ASSERT_NO_FATAL_FAILURE(WriteModelAndStatistics(kLayers));
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto model = client->UploadModel(model_dir(), "synth", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  auto calibration =
      client->UploadCalibration(stats_path(), v1::CALIBRATION_KIND_STATISTICS, "stats");
  ASSERT_OK(calibration);
  v1::SubmitJobRequest request;
  request.set_model_id(model->model_id());
  request.set_calibration_id(calibration->calibration_id());
  *request.mutable_recipe() = RecipeToProto(testing::CatW4A4Recipe());
  auto submitted = client->Submit(request);
  ASSERT_OK(submitted);
  const std::string job_id = submitted->job().job_id();

  // Killed as soon as the first task has finished.
  bool killed = false;
  const WatchResult watched = WatchJob(*Stub(), job_id, [&](const v1::JobEvent& event) {
    if (killed || !event.has_task_finished()) return;
    killed = true;
    KillServer();
  });
  ASSERT_TRUE(killed) << "no task finished: " << Describe(watched);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(watched.status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(watched);

  // What the kill left: read from the database while no server runs.
  std::map<int64_t, server::TaskRecord> done_at_kill;
  {
    auto store = server::MetadataStore::Open(database_path());
    ASSERT_OK(store);
    auto job = (*store)->GetJob(server::kDefaultTenant, job_id);
    ASSERT_OK(job);
    ASSERT_EQ(job->state, server::JobState::kQuantizing)
        << "the kill did not land while the job's tasks ran";
    auto tasks = (*store)->ListTasks(job_id);
    ASSERT_OK(tasks);
    ASSERT_EQ(tasks->size(), static_cast<size_t>(kLayers));
    for (const server::TaskRecord& task : *tasks) {
      if (task.state == server::TaskState::kDone) done_at_kill[task.index] = task;
    }
    ASSERT_GE(done_at_kill.size(), 1u);
    ASSERT_LT(done_at_kill.size(), static_cast<size_t>(kLayers))
        << "every task had finished before the kill";
  }

  ASSERT_NO_FATAL_FAILURE(StartServer());
  client = Client();
  ASSERT_NE(client, nullptr);
  std::set<int64_t> finished_after_restart;
  const WatchResult resumed = WatchJob(*Stub(), job_id, [&](const v1::JobEvent& event) {
    if (event.has_task_finished()) finished_after_restart.insert(event.task_finished().layer());
  });
  ASSERT_TRUE(resumed.status.ok()) << Describe(resumed);
  ASSERT_EQ(resumed.job.state(), v1::JOB_STATE_SUCCEEDED) << Describe(resumed);
  EXPECT_EQ(resumed.job.tasks_total(), kLayers);
  EXPECT_EQ(resumed.job.tasks_done(), kLayers);
  for (const auto& [index, task] : done_at_kill) {
    EXPECT_EQ(finished_after_restart.count(task.layer), 0u)
        << "layer " << task.layer << " finished before the kill and ran again";
  }
  ASSERT_OK(client->Fetch(job_id, dir_.Join("fetched")));
  ExpectSameAsInProcess(dir_.Join("fetched"), testing::CatW4A4Recipe());
  ASSERT_NO_FATAL_FAILURE(StopServer());

  // The tasks finished before the kill kept their results and were not run
  // again (a watcher can miss events published before it joined; the
  // database cannot).
  auto store = server::MetadataStore::Open(database_path());
  ASSERT_OK(store);
  auto tasks = (*store)->ListTasks(job_id);
  ASSERT_OK(tasks);
  for (const server::TaskRecord& task : *tasks) {
    EXPECT_EQ(task.state, server::TaskState::kDone) << "task " << task.index;
    auto before = done_at_kill.find(task.index);
    if (before == done_at_kill.end()) continue;
    EXPECT_EQ(task.attempts, before->second.attempts) << "task " << task.index << " ran again";
    EXPECT_EQ(task.result_sha256, before->second.result_sha256) << "task " << task.index;
  }
}

}  // namespace
}  // namespace catq
