// File: server/metadata_store.h
//
// The server's durable records (architecture.md section 5, "Data dir"):
// uploads, models, calibration sets, jobs and their tasks, in one SQLite
// database in WAL mode. File bytes live in the BlobStore beside it; these
// records name blobs by sha256.
//
// Every write is one transaction, so a server killed at any moment reopens
// into a state some sequence of completed calls produced. Records are scoped
// by tenant: a lookup with another tenant's id is NotFound, exactly as an id
// that never existed, so ids do not leak across tenants.
//
//   CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MetadataStore> store,
//                         MetadataStore::Open(data_dir + "/catq.db"));
//   CATQ_ASSIGN_OR_RETURN(JobRecord job, store->GetJob("tenant-a", job_id));
//
// Errors: NotFound names the kind and id ("job 'j-12': not found"); SQLite
// failures are Internal with SQLite's message; a full disk is
// ResourceExhausted.
//
// Thread-safety: all methods are thread-safe (one connection behind a mutex).
#ifndef CATQ_SERVER_METADATA_STORE_H_
#define CATQ_SERVER_METADATA_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace catq::server {

// A file held in the blob store under a relative path.
struct StoredFile {
  std::string path;
  uint64_t size = 0;
  std::string sha256;  // lowercase hex
  bool operator==(const StoredFile&) const = default;
};

enum class UploadKind { kModel = 0, kCalibration = 1 };

struct UploadRecord {
  std::string tenant;
  std::string id;  // chosen by the client
  UploadKind kind = UploadKind::kModel;
  std::string name;
  int format = 0;  // catq.v1.ModelFormat or catq.v1.CalibrationKind value
  std::vector<StoredFile> files;
  bool complete = false;
  std::string result_id;  // model or calibration id once complete
  int64_t create_time_ms = 0;
};

struct ModelRecord {
  std::string id;
  std::string tenant;
  std::string name;
  int format = 0;  // catq.v1.ModelFormat value
  // The stored Hugging Face layout.
  std::vector<StoredFile> files;
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t create_time_ms = 0;
};

struct CalibrationRecord {
  std::string id;
  std::string tenant;
  std::string name;
  int kind = 0;  // catq.v1.CalibrationKind value
  StoredFile file;
  int64_t create_time_ms = 0;
};

// Values equal catq.v1.JobState's.
enum class JobState {
  kQueued = 1,
  kCalibrating = 2,
  kQuantizing = 3,
  kAssembling = 4,
  kEvaluating = 5,
  kSucceeded = 6,
  kFailed = 7,
  kCancelled = 8,
};
bool IsTerminal(JobState state);  // succeeded, failed, cancelled
// JobStateName: "queued", "calibrating", ... "cancelled" (metric labels).
const char* JobStateName(JobState state);
// MethodOfJobRequest: the recipe method of a serialized catq.v1.SubmitJobRequest
// ("rtn" when it names none, "" when it does not parse).
std::string MethodOfJobRequest(const std::string& serialized_request);

struct JobRecord {
  std::string id;
  std::string tenant;
  std::string model_id;
  std::string calibration_id;
  std::string eval_calibration_id;
  std::string idempotency_key;  // empty: none
  // The serialized catq.v1.SubmitJobRequest the job was created from.
  std::string request;
  JobState state = JobState::kQueued;
  std::string error;
  int64_t tasks_total = 0;
  int64_t tasks_done = 0;
  int64_t create_time_ms = 0;
  int64_t update_time_ms = 0;
  // Set when the calibration stage has stored its statistics (a blob).
  std::string calibration_sha256;
  // The recipe's method (rtn, smoothquant, hadamard, cat), for counting jobs
  // by recipe; MethodOfJobRequest(request).
  std::string method;
  // SUCCEEDED: the output files, in the job's output directory.
  std::vector<StoredFile> result_files;
};

enum class TaskState { kPending = 0, kRunning = 1, kDone = 2 };

struct TaskRecord {
  std::string job_id;
  int64_t index = 0;  // 0..tasks_total-1
  int64_t layer = 0;
  TaskState state = TaskState::kPending;
  int attempts = 0;
  // Done: the blob holding the task's result and its summary (a serialized
  // catq.v1.TaskSummary).
  std::string result_sha256;
  std::string summary;
};

class MetadataStore {
 public:
  // Open: creates the database and its tables when absent (parent directory
  // must exist), sets WAL mode and a busy timeout. Errors: Internal naming
  // the path.
  static absl::StatusOr<std::unique_ptr<MetadataStore>> Open(const std::string& path);
  virtual ~MetadataStore() = default;

  // Uploads. BeginUpload inserts `upload`, or returns the stored record when
  // (tenant, id) exists with the same kind, name, format and files (a
  // resume); a different header for an existing id is FailedPrecondition
  // ("upload 'u1': exists with a different header: files[0].sha256 ...").
  virtual absl::StatusOr<UploadRecord> BeginUpload(const UploadRecord& upload) = 0;
  virtual absl::StatusOr<UploadRecord> GetUpload(const std::string& tenant,
                                                 const std::string& id) = 0;
  virtual absl::Status CompleteUpload(const std::string& tenant, const std::string& id,
                                      const std::string& result_id) = 0;

  // Models. Ids are unique across tenants (the caller makes them).
  virtual absl::Status InsertModel(const ModelRecord& model) = 0;
  virtual absl::StatusOr<ModelRecord> GetModel(const std::string& tenant,
                                               const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<ModelRecord>> ListModels(const std::string& tenant) = 0;
  // DeleteModel: NotFound as GetModel; FailedPrecondition when a job that is
  // not terminal uses it.
  virtual absl::Status DeleteModel(const std::string& tenant, const std::string& id) = 0;

  virtual absl::Status InsertCalibration(const CalibrationRecord& calibration) = 0;
  virtual absl::StatusOr<CalibrationRecord> GetCalibration(const std::string& tenant,
                                                           const std::string& id) = 0;

  // Jobs. InsertJob stores `job` and returns it with `false`; when the
  // tenant already has a job with the same non-empty idempotency key it
  // stores nothing and returns that job with `true`.
  virtual absl::StatusOr<std::pair<JobRecord, bool>> InsertJob(const JobRecord& job) = 0;
  virtual absl::StatusOr<JobRecord> GetJob(const std::string& tenant, const std::string& id) = 0;
  // The tenant's job with this non-empty idempotency key, if any (the unique
  // index InsertJob deduplicates with).
  virtual absl::StatusOr<std::optional<JobRecord>> FindJobByIdempotencyKey(
      const std::string& tenant, const std::string& key) = 0;
  // ListJobs: newest first (create_time_ms, then id), at most `limit`.
  virtual absl::StatusOr<std::vector<JobRecord>> ListJobs(const std::string& tenant, int limit) = 0;
  // Jobs of every tenant not in a terminal state, oldest first (the
  // scheduler's work on restart).
  virtual absl::StatusOr<std::vector<JobRecord>> ListUnfinishedJobs() = 0;
  // Jobs of `tenant` not in a terminal state.
  virtual absl::StatusOr<int64_t> CountUnfinishedJobs(const std::string& tenant) = 0;
  // Jobs of every tenant by state and method, for each pair that has any
  // (for metrics).
  virtual absl::StatusOr<std::map<std::pair<JobState, std::string>, int64_t>>
  CountJobsByStateAndMethod() = 0;
  // SetJobState: also sets error and update_time_ms. A job already terminal
  // keeps its state: FailedPrecondition ("job 'j': already cancelled").
  virtual absl::Status SetJobState(const std::string& id, JobState state, const std::string& error,
                                   int64_t now_ms) = 0;
  virtual absl::Status SetJobCalibration(const std::string& id, const std::string& sha256) = 0;
  // SetJobResult: result_files and state SUCCEEDED in one transaction.
  virtual absl::Status SetJobResult(const std::string& id, const std::vector<StoredFile>& files,
                                    int64_t now_ms) = 0;

  // Tasks. CreateTasks inserts tasks 0..n-1 for the job (pending) and sets
  // tasks_total, unless the job already has tasks (then it does nothing: a
  // restart re-plans the same tasks).
  virtual absl::Status CreateTasks(const std::string& job_id,
                                   const std::vector<TaskRecord>& tasks) = 0;
  virtual absl::StatusOr<std::vector<TaskRecord>> ListTasks(const std::string& job_id) = 0;
  // StartTask: pending -> running, attempts + 1. FailedPrecondition when the
  // task is not pending.
  virtual absl::Status StartTask(const std::string& job_id, int64_t index) = 0;
  // CompleteTask: stores the result once and counts it in tasks_done.
  // Returns false (and changes nothing) when the task was already done: the
  // first result wins, so a re-run task never changes the output.
  virtual absl::StatusOr<bool> CompleteTask(const std::string& job_id, int64_t index,
                                            const std::string& result_sha256,
                                            const std::string& summary) = 0;
  // ResetTask: running -> pending (its worker died or gave up).
  virtual absl::Status ResetTask(const std::string& job_id, int64_t index) = 0;
  // ResetRunningTasks: every running task of every job back to pending
  // (server start: nothing is running yet).
  virtual absl::Status ResetRunningTasks() = 0;

  // Every sha256 a record refers to (uploads, models, calibrations, jobs,
  // tasks), for blob garbage collection.
  virtual absl::StatusOr<std::vector<std::string>> ReferencedBlobs() = 0;
};

}  // namespace catq::server

#endif  // CATQ_SERVER_METADATA_STORE_H_
