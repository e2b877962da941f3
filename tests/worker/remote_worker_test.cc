// Remote workers (catq.v1.Worker) against a real CatqServer on loopback with
// no in-process workers, so every layer task goes through a lease.
#include "worker/remote_worker.h"

#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <prometheus/metric_family.h>

#include <algorithm>
#include <thread>

#include "absl/strings/match.h"
#include "catq/v1/worker.grpc.pb.h"
#include "client/quantizer_client.h"
#include "core/io/sha256.h"
#include "core/output/in_process_quantizer.h"
#include "proto/recipe_conversion.h"
#include "server/catq_server.h"
#include "tests/util/output_comparison.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq::worker {
namespace {

using ::testing::HasSubstr;

// A remote worker on its own thread, stopped and joined on destruction.
class WorkerThread {
 public:
  WorkerThread(const std::string& address, const std::string& token, const std::string& cache,
               const std::string& id, WorkerMetrics* metrics = nullptr) {
    RemoteWorkerOptions options;
    options.cache_dir = cache;
    options.worker_id = id;
    options.metrics = metrics;
    options.poll = absl::Milliseconds(200);
    auto worker = RemoteWorker::Create(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()), token, options);
    EXPECT_OK(worker);
    worker_ = std::move(*worker);
    thread_ = std::thread([this] { status_ = worker_->Run(); });
  }
  ~WorkerThread() {
    worker_->Stop();
    thread_.join();
    EXPECT_OK(status_);
  }

 private:
  std::unique_ptr<RemoteWorker> worker_;
  absl::Status status_;
  std::thread thread_;
};

// The value of `name` in `metrics` (a counter or gauge; a histogram's sample
// count) whose labels include `label` = `value` (any series when `label` is
// empty); -1 when there is none.
double WorkerMetric(const WorkerMetrics& metrics, const std::string& name,
                    const std::string& label = "", const std::string& value = "") {
  for (const prometheus::MetricFamily& family : metrics.registry()->Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      const bool match =
          label.empty() || std::any_of(metric.label.begin(), metric.label.end(),
                                       [&](const prometheus::ClientMetric::Label& l) {
                                         return l.name == label && l.value == value;
                                       });
      if (!match) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return metric.counter.value;
        case prometheus::MetricType::Gauge:
          return metric.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(metric.histogram.sample_count);
        default:
          return -1;
      }
    }
  }
  return -1;
}

class RemoteWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::WriteSyntheticJobInputs(dir_.Join("model"), dir_.Join("stats.safetensors"),
                                               /*num_layers=*/4));
    ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("tokens"), "tok-a tenant-a\n"));
    ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("worker-tokens"), "tok-w pool-1\n"));
  }

  void StartServer(absl::Duration lease, bool worker_tokens = true) {
    server::CatqServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.Join("data");
    options.workers = 0;  // every layer task goes to a remote worker
    options.tokens_file = dir_.Join("tokens");
    if (worker_tokens) options.worker_tokens_file = dir_.Join("worker-tokens");
    options.lease = lease;
    auto server = server::CatqServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
  }

  std::string Address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

  std::unique_ptr<client::QuantizerClient> Client() {
    client::ClientOptions options;
    options.server = Address();
    options.token = "tok-a";
    auto client = client::QuantizerClient::Connect(options);
    EXPECT_OK(client);
    return std::move(*client);
  }

  std::unique_ptr<v1::Worker::Stub> WorkerStub() {
    return v1::Worker::NewStub(grpc::CreateChannel(Address(), grpc::InsecureChannelCredentials()));
  }

  static std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "tok-w") {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }

  // A lease taken by hand (a worker that then stalls); none when no task
  // came within 10 s.
  std::optional<v1::TaskLease> LeaseByHand(v1::Worker::Stub& stub) {
    v1::LeaseTaskRequest request;
    request.set_worker_id("stalled");
    request.set_wait_ms(10000);
    v1::LeaseTaskResponse response;
    auto context = Context();
    EXPECT_TRUE(stub.LeaseTask(context.get(), request, &response).ok());
    if (!response.has_lease()) return std::nullopt;
    return response.lease();
  }

  v1::Job Submit(client::QuantizerClient& client, const Recipe& recipe = testing::CatW4A4Recipe()) {
    auto model = client.UploadModel(dir_.Join("model"), "tiny4", v1::MODEL_FORMAT_HF);
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

  void ExpectSameAsInProcess(const std::string& fetched,
                             const Recipe& recipe = testing::CatW4A4Recipe()) {
    InProcessOptions options;
    options.calibration.statistics_path = dir_.Join("stats.safetensors");
    ASSERT_OK(QuantizeModelInProcess(Env::Default(), dir_.Join("model"), dir_.Join("direct"),
                                     recipe, options));
    testing::ExpectSameShardsAndConfig(dir_.Join("direct"), fetched);
  }

  testing::TempDir dir_;
  std::unique_ptr<server::CatqServer> server_;
};

TEST_F(RemoteWorkerTest, TwoRemoteWorkersRunEveryLayerAndTheOutputEqualsInProcess) {
  StartServer(absl::Seconds(30));
  auto client = Client();
  const v1::Job submitted = Submit(*client);
  absl::StatusOr<v1::Job> job;
  WorkerMetrics metrics[2];
  {
    WorkerThread a(Address(), "tok-w", dir_.Join("cache-a"), "a", &metrics[0]);
    WorkerThread b(Address(), "tok-w", dir_.Join("cache-b"), "b", &metrics[1]);
    job = client->Watch(submitted.job_id(), nullptr);
  }
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  EXPECT_EQ(job->tasks_done(), 4);
  ASSERT_OK(client->Fetch(job->job_id(), dir_.Join("fetched")));
  ExpectSameAsInProcess(dir_.Join("fetched"));

  // Each worker's own metrics: together they did the 4 layers, each task
  // timed; one that did any read its inputs from the server; none is busy.
  double done = 0;
  for (const WorkerMetrics& m : metrics) {
    const double tasks = WorkerMetric(m, "catq_worker_tasks_total", "outcome", "done");
    done += tasks;
    EXPECT_EQ(WorkerMetric(m, "catq_worker_task_duration_seconds"), tasks);
    EXPECT_EQ(WorkerMetric(m, "catq_worker_tasks_total", "outcome", "failed"), 0);
    EXPECT_EQ(WorkerMetric(m, "catq_worker_tasks_total", "outcome", "lost"), 0);
    EXPECT_EQ(WorkerMetric(m, "catq_worker_busy"), 0);
    if (tasks > 0) {
      EXPECT_GT(WorkerMetric(m, "catq_worker_read_bytes_total"), 0);
    }
  }
  EXPECT_EQ(done, 4);
}

// cat-auto: a lease carries the recipe resolved by the server, so a remote
// worker quantizes with the chosen block sizes and never chooses itself.
TEST_F(RemoteWorkerTest, ARemoteWorkerRunsCatAutoWithTheServersChoice) {
  StartServer(absl::Seconds(30));
  auto client = Client();
  Recipe recipe = testing::CatW4A4Recipe();
  recipe.online_cost_budget = 0.3;
  const v1::Job submitted = Submit(*client, recipe);
  absl::StatusOr<v1::Job> job;
  {
    WorkerThread worker(Address(), "tok-w", dir_.Join("cache"), "w", nullptr);
    job = client->Watch(submitted.job_id(), nullptr);
  }
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_OK(client->Fetch(job->job_id(), dir_.Join("fetched")));
  ExpectSameAsInProcess(dir_.Join("fetched"), recipe);
}

TEST_F(RemoteWorkerTest, AnExpiredLeaseGoesToAnotherWorkerAndTheOutputIsUnchanged) {
  StartServer(absl::Milliseconds(300));
  auto client = Client();
  const v1::Job submitted = Submit(*client);
  auto stub = WorkerStub();
  const std::optional<v1::TaskLease> stalled = LeaseByHand(*stub);
  ASSERT_TRUE(stalled.has_value());
  EXPECT_EQ(stalled->job_id(), submitted.job_id());
  EXPECT_FALSE(stalled->statistics_sha256().empty());

  bool saw_expiry = false;
  absl::StatusOr<v1::Job> job;
  {
    WorkerThread worker(Address(), "tok-w", dir_.Join("cache"), "healthy");
    job = client->Watch(submitted.job_id(), [&](const v1::JobEvent& event) {
      if (absl::StrContains(event.message(), "lease of worker 'stalled' expired")) {
        saw_expiry = true;
      }
    });
  }
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  EXPECT_TRUE(saw_expiry);

  // The stalled worker comes back: its lease is gone, and so is the task.
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_lease_id(stalled->lease_id());
  v1::HeartbeatResponse renewed;
  auto context = Context();
  ASSERT_TRUE(stub->Heartbeat(context.get(), heartbeat, &renewed).ok());
  EXPECT_FALSE(renewed.keep_going());
  v1::CompleteTaskResponse completed;
  auto complete_context = Context();
  auto writer = stub->CompleteTask(complete_context.get(), &completed);
  v1::CompleteTaskRequest header;
  header.mutable_header()->set_lease_id(stalled->lease_id());
  header.mutable_header()->set_sha256(std::string(64, 'a'));
  writer->Write(header);
  writer->WritesDone();
  const grpc::Status late = writer->Finish();
  EXPECT_EQ(late.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(late.error_message(), HasSubstr(stalled->lease_id()));

  ASSERT_OK(client->Fetch(job->job_id(), dir_.Join("fetched")));
  ExpectSameAsInProcess(dir_.Join("fetched"));
}

TEST_F(RemoteWorkerTest, ALeaseReadsOnlyItsOwnInputs) {
  StartServer(absl::Seconds(30));
  auto client = Client();
  Submit(*client);
  auto stub = WorkerStub();
  const std::optional<v1::TaskLease> lease = LeaseByHand(*stub);
  ASSERT_TRUE(lease.has_value());
  ASSERT_GT(lease->model_files_size(), 0);

  auto read = [&](const std::string& lease_id, const std::string& sha256, std::string* bytes) {
    v1::ReadBlobRequest request;
    request.set_lease_id(lease_id);
    request.set_sha256(sha256);
    auto context = Context();
    auto reader = stub->ReadBlob(context.get(), request);
    v1::BlobChunk chunk;
    while (reader->Read(&chunk)) bytes->append(chunk.data());
    return reader->Finish();
  };
  const v1::FileEntry& config = lease->model_files(0);
  std::string bytes;
  ASSERT_TRUE(read(lease->lease_id(), config.sha256(), &bytes).ok());
  EXPECT_EQ(Sha256Hex(bytes), config.sha256());
  EXPECT_EQ(bytes.size(), config.size());

  // Any other blob, stored or not, is out of the lease's reach.
  const grpc::Status other = read(lease->lease_id(), Sha256Hex("not an input"), &bytes);
  EXPECT_EQ(other.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(other.error_message(), HasSubstr("not an input of lease"));
  const grpc::Status unknown = read("l-nosuchlease", config.sha256(), &bytes);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("lease_id 'l-nosuchlease'"));
}

TEST_F(RemoteWorkerTest, WorkerCallsNeedAWorkerToken) {
  StartServer(absl::Seconds(30));
  auto stub = WorkerStub();
  v1::LeaseTaskRequest request;
  request.set_wait_ms(1);
  v1::LeaseTaskResponse response;
  auto tenant = Context("tok-a");  // a tenant's token is not a worker's
  EXPECT_EQ(stub->LeaseTask(tenant.get(), request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auto none = Context("");
  EXPECT_EQ(stub->LeaseTask(none.get(), request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auto worker = Context("tok-w");
  EXPECT_TRUE(stub->LeaseTask(worker.get(), request, &response).ok());
  EXPECT_FALSE(response.has_lease());
  request.set_wait_ms(600000);
  auto too_long = Context("tok-w");
  const grpc::Status refused = stub->LeaseTask(too_long.get(), request, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("wait_ms"));
}

TEST_F(RemoteWorkerTest, WithTenantTokensButNoWorkerTokensRemoteWorkersAreRefused) {
  StartServer(absl::Seconds(30), /*worker_tokens=*/false);
  auto stub = WorkerStub();
  v1::LeaseTaskRequest request;
  v1::LeaseTaskResponse response;
  auto context = Context("tok-a");
  const grpc::Status refused = stub->LeaseTask(context.get(), request, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(refused.error_message(), HasSubstr("--worker-tokens"));
}

TEST_F(RemoteWorkerTest, CancellingTheJobEndsItsLeasesAndBadResultsAreRefused) {
  StartServer(absl::Seconds(30));
  auto client = Client();
  const v1::Job job = Submit(*client);
  auto stub = WorkerStub();
  const std::optional<v1::TaskLease> lease = LeaseByHand(*stub);
  ASSERT_TRUE(lease.has_value());

  // Sends "bytes" as the lease's result, announced with `sha256`.
  auto send_result = [&](const std::string& sha256) {
    v1::CompleteTaskResponse completed;
    auto context = Context();
    auto writer = stub->CompleteTask(context.get(), &completed);
    v1::CompleteTaskRequest header;
    header.mutable_header()->set_lease_id(lease->lease_id());
    header.mutable_header()->set_size(5);
    header.mutable_header()->set_sha256(sha256);
    writer->Write(header);
    v1::CompleteTaskRequest data;
    data.set_data("bytes");
    writer->Write(data);
    writer->WritesDone();
    return writer->Finish();
  };
  // A result whose bytes do not hash to the header's sha256 never enters
  // the store.
  const grpc::Status mismatch = send_result(Sha256Hex("other"));
  EXPECT_EQ(mismatch.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(mismatch.error_message(), HasSubstr(Sha256Hex("bytes")));

  // Well-formed bytes that are not a layer result are refused too, and the
  // task goes back to the queue.
  const grpc::Status not_a_result = send_result(Sha256Hex("bytes"));
  EXPECT_EQ(not_a_result.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(not_a_result.error_message(), HasSubstr("result of lease"));

  const std::optional<v1::TaskLease> again = LeaseByHand(*stub);
  ASSERT_TRUE(again.has_value());
  ASSERT_OK(client->CancelJob(job.job_id()));
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_lease_id(again->lease_id());
  v1::HeartbeatResponse renewed;
  auto beat = Context();
  ASSERT_TRUE(stub->Heartbeat(beat.get(), heartbeat, &renewed).ok());
  EXPECT_FALSE(renewed.keep_going());
}

}  // namespace
}  // namespace catq::worker
