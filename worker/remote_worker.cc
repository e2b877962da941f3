#include "worker/remote_worker.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/cat/site_statistics.h"
#include "core/io/sha256.h"
#include "core/model/llama_model.h"
#include "core/output/calibration_data.h"
#include "core/output/layer_quantizer.h"
#include "core/output/layer_result_io.h"
#include "core/util/release_free_memory.h"
#include "core/util/status_macros.h"
#include "proto/grpc_status.h"
#include "proto/recipe_conversion.h"
#include "proto/wire_limits.h"

namespace catq::worker {

// What every task of one job reads, opened once per job.
struct RemoteWorker::JobInputs {
  std::string job_id;
  Recipe recipe;
  std::unique_ptr<LlamaModel> model;
  // The fetched statistics and samples; each task reads its layer's sites.
  CalibrationFiles calibration_files;
};

namespace {

absl::StatusOr<LayerResult> QuantizeLayerFromFiles(Env* env, const LlamaModel& model,
                                                   const Recipe& recipe, int64_t layer,
                                                   const CalibrationFiles& files) {
  CATQ_ASSIGN_OR_RETURN(CalibrationData calibration, ReadLayerCalibration(env, files, layer));
  return QuantizeLayer(model, recipe, layer, calibration);
}

}  // namespace

// Renews a lease from its own thread while the task runs, every third of the
// lease time, and remembers when the server says the lease is gone.
class RemoteWorker::LeaseKeeper {
 public:
  LeaseKeeper(const RemoteWorker* worker, const v1::TaskLease& lease)
      : thread_([this, worker, lease] { Loop(worker, lease); }) {}
  ~LeaseKeeper() {
    done_.Notify();
    thread_.join();
  }
  bool lost() const { return lost_.load(); }

 private:
  void Loop(const RemoteWorker* worker, const v1::TaskLease& lease) {
    const absl::Duration every = absl::Milliseconds(std::max<uint32_t>(lease.lease_ms() / 3, 10));
    v1::HeartbeatRequest request;
    request.set_lease_id(lease.lease_id());
    while (!done_.WaitForNotificationWithTimeout(every)) {
      std::unique_ptr<grpc::ClientContext> context = worker->NewContext();
      context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(every) +
                            std::chrono::seconds(1));
      v1::HeartbeatResponse response;
      // A failed call leaves the lease to the next beat: the server may
      // still hold it.
      if (worker->stub_->Heartbeat(context.get(), request, &response).ok() &&
          !response.keep_going()) {
        lost_.store(true);
        return;
      }
    }
  }

  absl::Notification done_;
  std::atomic<bool> lost_{false};
  std::thread thread_;
};

namespace {

std::string DefaultWorkerId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(host[0] != '\0' ? host : "worker", "-", getpid());
}

// A model file path from the server becomes a link under the cache: it must
// stay inside the model's directory.
absl::Status CheckModelPath(const std::string& path) {
  const std::filesystem::path p(path);
  bool ok = !path.empty() && p.is_relative();
  for (const auto& part : p) ok = ok && part != ".." && part != "." && !part.empty();
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("model_files: path '", path, "' is not safe"));
}

absl::Status CheckModelId(const std::string& id) {
  const bool ok =
      !id.empty() && id.size() <= 64 && id != "." && id != ".." &&
      std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
      });
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("model_id: '", id, "' is not a valid id"));
}

}  // namespace

RemoteWorker::RemoteWorker(std::shared_ptr<grpc::Channel> channel, std::string token,
                           RemoteWorkerOptions options)
    : stub_(v1::Worker::NewStub(std::move(channel))),
      token_(std::move(token)),
      options_(std::move(options)) {}

RemoteWorker::~RemoteWorker() = default;

absl::StatusOr<std::unique_ptr<RemoteWorker>> RemoteWorker::Create(
    std::shared_ptr<grpc::Channel> channel, std::string token, RemoteWorkerOptions options) {
  if (options.cache_dir.empty()) return absl::InvalidArgumentError("--cache-dir: required");
  if (options.worker_id.empty()) options.worker_id = DefaultWorkerId();
  auto worker = std::unique_ptr<RemoteWorker>(
      new RemoteWorker(std::move(channel), std::move(token), std::move(options)));
  Env* env = worker->options_.env;
  CATQ_ASSIGN_OR_RETURN(worker->blobs_,
                        server::BlobStore::Open(env, worker->options_.cache_dir + "/blobs"));
  worker->models_ = std::make_unique<server::ModelRepository>(
      env, worker->blobs_.get(), worker->options_.cache_dir + "/models");
  return worker;
}

std::unique_ptr<grpc::ClientContext> RemoteWorker::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token_.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  return context;
}

void RemoteWorker::Log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

void RemoteWorker::Stop() {
  absl::MutexLock lock(&mu_);
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (polling_ != nullptr) polling_->TryCancel();
}

absl::StatusOr<bool> RemoteWorker::RunOnce() {
  v1::LeaseTaskRequest request;
  request.set_worker_id(options_.worker_id);
  request.set_wait_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.poll)));
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options_.poll) + std::chrono::seconds(30));
  {
    absl::MutexLock lock(&mu_);
    if (stop_.HasBeenNotified()) return false;
    polling_ = context.get();
  }
  v1::LeaseTaskResponse response;
  const grpc::Status status = stub_->LeaseTask(context.get(), request, &response);
  {
    absl::MutexLock lock(&mu_);
    polling_ = nullptr;
  }
  if (stop_.HasBeenNotified() && status.error_code() == grpc::StatusCode::CANCELLED) return false;
  CATQ_RETURN_IF_ERROR(Prefix("LeaseTask", FromGrpcStatus(status)));
  if (!response.has_lease()) return false;
  CATQ_RETURN_IF_ERROR(RunTask(response.lease()));
  return true;
}

absl::Status RemoteWorker::Run() {
  constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
  absl::Duration backoff = kFirstBackoff;
  int done = 0;
  while (!stop_.HasBeenNotified()) {
    absl::StatusOr<bool> ran = RunOnce();
    if (!ran.ok()) {
      if (!absl::IsUnavailable(ran.status()) && !absl::IsDeadlineExceeded(ran.status())) {
        return ran.status();  // e.g. UNAUTHENTICATED: retrying will not help
      }
      Log(absl::StrCat("server unreachable (", ran.status().message(), "); retrying in ",
                       absl::FormatDuration(backoff)));
      stop_.WaitForNotificationWithTimeout(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(10));
      continue;
    }
    backoff = kFirstBackoff;
    if (*ran && options_.max_tasks > 0 && ++done >= options_.max_tasks) break;
  }
  return absl::OkStatus();
}

absl::Status RemoteWorker::RunTask(const v1::TaskLease& lease) {
  const absl::Time start = absl::Now();
  if (options_.metrics != nullptr) options_.metrics->TaskStarted();
  // A failed call to the server leaves the task to the lease's expiry: it
  // goes back to the queue.
  TaskOutcome outcome = TaskOutcome::kReturned;
  const absl::Status status = RunLeasedTask(lease, outcome);
  ReleaseFreeMemory();  // the layer's weights and results are freed: return their pages
  if (options_.metrics != nullptr) {
    options_.metrics->TaskEnded(outcome, absl::ToDoubleSeconds(absl::Now() - start));
  }
  return status;
}

// Runs one leased task and says how it ended in `outcome`. Only a failed call
// to the server is an error here; what goes wrong with the task itself is
// reported to the server.
absl::Status RemoteWorker::RunLeasedTask(const v1::TaskLease& lease, TaskOutcome& outcome) {
  const std::string what = absl::StrCat("job ", lease.job_id(), " layer ", lease.layer());
  Log(absl::StrCat("leased ", what, " (lease ", lease.lease_id(), ")"));
  const absl::Time start = absl::Now();
  LeaseKeeper keeper(this, lease);
  auto fail = [&](const absl::Status& error, bool retry) {
    outcome = retry ? TaskOutcome::kReturned : TaskOutcome::kFailed;
    return SendFailure(lease.lease_id(), error, retry);
  };
  absl::StatusOr<std::shared_ptr<JobInputs>> inputs = Inputs(lease);
  if (!inputs.ok()) {
    // A recipe this worker cannot read is the task's own error; anything
    // else (a blob that did not arrive) is this worker's.
    return fail(inputs.status(), /*retry=*/!absl::IsInvalidArgument(inputs.status()));
  }
  absl::StatusOr<LayerResult> result =
      keeper.lost() ? absl::StatusOr<LayerResult>(absl::AbortedError("lease lost"))
                    : QuantizeLayerFromFiles(options_.env, *(*inputs)->model, (*inputs)->recipe,
                                             lease.layer(), (*inputs)->calibration_files);
  if (keeper.lost()) {
    outcome = TaskOutcome::kLost;
    Log(absl::StrCat("lease lost for ", what, " (expired or the job ended); result dropped"));
    return absl::OkStatus();
  }
  if (!result.ok()) {
    return fail(Prefix(absl::StrCat("layer ", lease.layer()), result.status()), /*retry=*/false);
  }
  const std::string path = blobs_->NewTempPath();
  absl::Status written = WriteLayerResult(options_.env, path, *result);
  if (!written.ok()) {
    options_.env->RemoveFile(path).IgnoreError();
    return fail(written, /*retry=*/true);
  }
  absl::StatusOr<bool> stored = SendResult(lease.lease_id(), path);
  options_.env->RemoveFile(path).IgnoreError();
  if (absl::IsNotFound(stored.status())) {
    outcome = TaskOutcome::kLost;
    Log(absl::StrCat("lease lost for ", what, " before its result arrived; result dropped"));
    return absl::OkStatus();
  }
  CATQ_RETURN_IF_ERROR(stored.status());
  outcome = TaskOutcome::kDone;
  Log(absl::StrCat("done ", what, " in ", absl::FormatDuration(absl::Now() - start),
                   *stored ? "" : " (another worker's result was stored first)"));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RemoteWorker::JobInputs>> RemoteWorker::Inputs(
    const v1::TaskLease& lease) {
  if (inputs_ != nullptr && inputs_->job_id == lease.job_id()) return inputs_;
  inputs_.reset();  // the previous job's model and statistics go first
  auto inputs = std::make_shared<JobInputs>();
  inputs->job_id = lease.job_id();
  CATQ_ASSIGN_OR_RETURN(inputs->recipe, RecipeFromProto(lease.recipe()));
  CATQ_RETURN_IF_ERROR(CheckModelId(lease.model_id()));
  server::ModelRecord model;
  model.id = lease.model_id();
  for (const v1::FileEntry& entry : lease.model_files()) {
    CATQ_RETURN_IF_ERROR(CheckModelPath(entry.path()));
    CATQ_RETURN_IF_ERROR(FetchBlob(lease.lease_id(), entry.sha256()).status());
    model.files.push_back({entry.path(), entry.size(), entry.sha256()});
  }
  CATQ_ASSIGN_OR_RETURN(std::string dir, models_->Directory(model));
  CATQ_ASSIGN_OR_RETURN(LlamaModel opened, LlamaModel::Open(dir, options_.env));
  inputs->model = std::make_unique<LlamaModel>(std::move(opened));
  if (!lease.statistics_sha256().empty()) {
    CATQ_ASSIGN_OR_RETURN(inputs->calibration_files.statistics_path,
                          FetchBlob(lease.lease_id(), lease.statistics_sha256()));
    CATQ_ASSIGN_OR_RETURN(inputs->calibration_files.samples_path,
                          FetchBlob(lease.lease_id(), lease.samples_sha256()));
  }
  inputs_ = std::move(inputs);
  return inputs_;
}

// The blob's path in the cache, read from the server when absent. It enters
// the cache only when its sha256 checks.
absl::StatusOr<std::string> RemoteWorker::FetchBlob(const std::string& lease_id,
                                                    const std::string& sha256) {
  if (blobs_->Contains(sha256)) return blobs_->Path(sha256);
  Env* env = options_.env;
  const std::string temp = blobs_->NewTempPath();
  absl::Status fetched = [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env->NewWritableFile(temp));
    std::unique_ptr<grpc::ClientContext> context = NewContext();
    v1::ReadBlobRequest request;
    request.set_lease_id(lease_id);
    request.set_sha256(sha256);
    std::unique_ptr<grpc::ClientReader<v1::BlobChunk>> reader =
        stub_->ReadBlob(context.get(), request);
    v1::BlobChunk chunk;
    uint64_t received = 0;
    while (reader->Read(&chunk)) {
      if (chunk.offset() != received) {
        context->TryCancel();
        reader->Finish().IgnoreError();
        return absl::DataLossError(absl::StrCat("blob ", sha256, ": chunk at offset ",
                                                chunk.offset(), ", expected ", received));
      }
      CATQ_RETURN_IF_ERROR(file->Append(chunk.data()));
      received += chunk.data().size();
      if (options_.metrics != nullptr) options_.metrics->RecordReadBytes(chunk.data().size());
    }
    CATQ_RETURN_IF_ERROR(Prefix("ReadBlob", FromGrpcStatus(reader->Finish())));
    CATQ_RETURN_IF_ERROR(file->Close());
    return blobs_->PutFile(temp, sha256);
  }();
  if (!fetched.ok()) {
    env->RemoveFile(temp).IgnoreError();
    return fetched;
  }
  return blobs_->Path(sha256);
}

absl::StatusOr<bool> RemoteWorker::SendResult(const std::string& lease_id,
                                              const std::string& path) {
  Env* env = options_.env;
  CATQ_ASSIGN_OR_RETURN(std::string sha256, Sha256OfFile(env, path));
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, env->MapFile(path));
  const absl::string_view bytes = mapped->bytes();
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  v1::CompleteTaskResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::CompleteTaskRequest>> writer =
      stub_->CompleteTask(context.get(), &response);
  v1::CompleteTaskRequest message;
  v1::CompleteTaskHeader* header = message.mutable_header();
  header->set_lease_id(lease_id);
  header->set_size(bytes.size());
  header->set_sha256(sha256);
  bool open = writer->Write(message);
  for (size_t offset = 0; open && offset < bytes.size(); offset += kMaxChunkBytes) {
    message.set_data(std::string(bytes.substr(offset, kMaxChunkBytes)));
    open = writer->Write(message);
  }
  if (open) writer->WritesDone();
  CATQ_RETURN_IF_ERROR(Prefix("CompleteTask", FromGrpcStatus(writer->Finish())));
  return response.stored();
}

absl::Status RemoteWorker::SendFailure(const std::string& lease_id, const absl::Status& error,
                                       bool retry) {
  Log(absl::StrCat(retry ? "giving back" : "failed", " lease ", lease_id, ": ", error.ToString()));
  v1::FailTaskRequest request;
  request.set_lease_id(lease_id);
  request.set_error(error.ToString());
  request.set_retry(retry);
  v1::FailTaskResponse response;
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  const absl::Status sent = FromGrpcStatus(stub_->FailTask(context.get(), request, &response));
  if (absl::IsNotFound(sent)) return absl::OkStatus();  // the lease is gone anyway
  return Prefix("FailTask", sent);
}

}  // namespace catq::worker
