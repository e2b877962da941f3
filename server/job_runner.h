// File: server/job_runner.h
//
// Runs jobs (architecture.md section 2, steps 4 and 5) on a pool of
// in-process worker threads. A job moves through stages, each recorded in
// the MetadataStore before it starts, so a restarted server resumes it:
//
//   queued -> calibrating   the calibration forward pass (or the uploaded
//                           statistics), stored as blobs once
//          -> quantizing    one task per layer (layer_quantizer.h: its four
//                           sites), results stored as blobs, first result wins
//          -> assembling    the output directory written from the stored
//                           task results (output_assembler.h)
//          -> evaluating    optional: perplexity of the stored output
//          -> succeeded | failed | cancelled
//
// The layer is the task because a layer's sites depend on each other when
// diagonal transforms fold (attn_out's into v_proj, read by attn_in). Every
// stage is deterministic, and the output is assembled in plan order from
// stored results, so it is byte-identical whatever the worker count, the
// task order, or restarts in between.
//
// Layer tasks run on the in-process workers or, leased, on remote workers
// (catq.v1.Worker, server/worker_service.h). A lease lasts options.lease and
// is renewed by heartbeats; one that expires puts its task back in the queue
// for any worker. The planning, calibration and assembly stages always run
// in this process (with no in-process workers, on one coordinating thread).
//
//   JobRunner runner(options, &store, &blobs, &models, &events);
//   runner.Start();            // resumes unfinished jobs
//   runner.Enqueue(job);       // after SubmitJob stored it
//
// Thread-safety: thread-safe.
#ifndef CATQ_SERVER_JOB_RUNNER_H_
#define CATQ_SERVER_JOB_RUNNER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "catq/v1/catq.pb.h"
#include "catq/v1/worker.pb.h"
#include "core/io/env.h"
#include "core/output/auto_block_size.h"
#include "core/output/layer_quantizer.h"
#include "server/blob_store.h"
#include "server/job_events.h"
#include "server/metadata_store.h"
#include "server/model_repository.h"
#include "server/server_metrics.h"

namespace catq::server {

struct JobRunnerOptions {
  // In-process threads running layer tasks; 0: none (remote workers only).
  int workers = 1;
  // Threads of the calibration forward pass.
  int calibration_threads = 1;
  // How long a remote worker's lease lasts without a heartbeat.
  absl::Duration lease = absl::Seconds(30);
  // Where task, job and SQNR figures go; null: nowhere. Not owned.
  ServerMetrics* metrics = nullptr;
  // Where finished outputs live: <jobs_dir>/<job_id>/output.
  std::string jobs_dir;
};

class JobRunner {
 public:
  JobRunner(Env* env, JobRunnerOptions options, MetadataStore* store, BlobStore* blobs,
            ModelRepository* models, JobEventHub* events);
  ~JobRunner();  // Stop()
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Start: resets tasks left running by a previous process, queues every
  // unfinished job and starts the workers.
  absl::Status Start();
  // Stop: lets running tasks finish, then joins the workers. Queued work
  // stays recorded for the next Start.
  void Stop();

  // Enqueue: plans `job` (stored, queued) on the pool.
  void Enqueue(const JobRecord& job);
  // Cancel: records the job cancelled (FailedPrecondition when it already
  // ended) and drops its queued tasks; a running task finishes, unused.
  absl::Status Cancel(const JobRecord& job);

  // OutputDir: where a job's output is (once it succeeded).
  std::string OutputDir(const std::string& job_id) const;

  // JobToProto: the wire view of a stored job, with its ETA.
  v1::Job JobToProto(const JobRecord& job) const;

  // Snapshot: queue and workers now, for the metrics scrape.
  RunnerSnapshot Snapshot() const;

  // Publish: an event with the job's current stored state.
  void PublishJob(const std::string& job_id, const v1::JobEvent& detail);

  // Remote workers (catq.v1.Worker).
  //
  // LeaseTask: waits up to `wait` for a layer task and leases it to
  // `worker_id`; nullopt when none came (or the runner is stopping).
  absl::StatusOr<std::optional<v1::TaskLease>> LeaseTask(const std::string& worker_id,
                                                         absl::Duration wait);
  // RenewLease: extends the lease; false when it is gone (expired, or its job
  // ended), and the worker should drop the task.
  bool RenewLease(const std::string& lease_id);
  // CheckLeaseInput: OK when blob `sha256` is an input of the lease; NotFound
  // for an unknown lease, PermissionDenied for any other blob.
  absl::Status CheckLeaseInput(const std::string& lease_id, const std::string& sha256);
  // CompleteLease: the lease's result, already stored as blob `sha256`. It
  // must read as the result of the leased layer (InvalidArgument otherwise,
  // and the task goes back to the queue). Returns whether it was stored
  // (false: the task was already done). NotFound when the lease is gone.
  absl::StatusOr<bool> CompleteLease(const std::string& lease_id, const std::string& sha256);
  // FailLease: `retry`: the task goes back to the queue; otherwise the job
  // fails with `error`. NotFound when the lease is gone.
  absl::Status FailLease(const std::string& lease_id, const std::string& error, bool retry);

 private:
  struct WorkItem {
    enum Kind { kPlan, kLayer, kAssemble } kind = kPlan;
    std::string job_id;
    int64_t task_index = 0;
  };
  struct JobContext;
  struct Lease {
    std::string job_id;
    int64_t task_index = 0;
    int64_t layer = 0;
    std::string worker_id;
    absl::Time start;
    absl::Time deadline;
    std::set<std::string> inputs;  // blobs the worker may read
  };

  // runs_layers false: the coordinating thread (plan and assembly only).
  void WorkerLoop(bool runs_layers);
  void LeaseExpiryLoop();
  bool HasWorkLocked(bool runs_layers) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  WorkItem TakeWorkLocked(bool runs_layers) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::TaskLease> NewLease(const std::string& worker_id, const WorkItem& item);
  absl::StatusOr<Lease> TakeLease(const std::string& lease_id);
  void ReleaseTask(const std::string& job_id, int64_t task_index);
  void DropLeasesLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Run(const WorkItem& item);
  absl::Status Plan(const std::string& job_id);
  absl::Status RunLayer(const std::string& job_id, int64_t task_index);
  // FinishLayer: records the stored result of a task (first wins) and queues
  // the assembly after the last one.
  absl::StatusOr<bool> FinishLayer(const std::string& job_id, int64_t task_index,
                                   const std::string& result_sha256, const LayerResult& result);
  absl::Status Assemble(const std::string& job_id);
  absl::Status Evaluate(const JobContext& context, const std::string& output_dir);
  absl::StatusOr<std::shared_ptr<JobContext>> Context(const std::string& job_id);
  absl::Status Calibrate(JobContext& context);
  absl::Status LoadStoredCalibration(JobContext& context);
  LayerStatisticsSource StoredLayerStatistics(const JobContext& context) const;
  // cat-auto: resolves context.recipe's block sizes from the calibration.
  absl::Status ResolveBlockSizes(JobContext& context);
  // Mixed precision: resolves context.recipe's bits per site likewise.
  absl::Status ResolveBits(JobContext& context);
  absl::StatusOr<JobRecord> GetJob(const std::string& job_id);
  void FailJob(const std::string& job_id, const absl::Status& status);
  // Counts a job that reached `state` in the metrics.
  void RecordJobEnd(const std::string& job_id, JobState state);
  void SetState(const std::string& job_id, JobState state);
  void Push(WorkItem item);
  void PushAssembleOnce(const std::string& job_id);
  bool Cancelled(const std::string& job_id);
  void DropContext(const std::string& job_id);

  Env* const env_;
  const JobRunnerOptions options_;
  MetadataStore* const store_;
  BlobStore* const blobs_;
  ModelRepository* const models_;
  JobEventHub* const events_;

  mutable absl::Mutex mu_;
  std::deque<WorkItem> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t busy_ ABSL_GUARDED_BY(mu_) = 0;  // in-process workers running a layer task
  std::set<std::string> cancelled_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> assembling_ ABSL_GUARDED_BY(mu_);            // assembly queued or done
  std::map<std::string, std::string> tenants_ ABSL_GUARDED_BY(mu_);  // job id -> tenant
  std::map<std::string, std::shared_ptr<JobContext>> contexts_ ABSL_GUARDED_BY(mu_);
  // When each job's quantizing stage started (this process), for the ETA.
  std::map<std::string, int64_t> quantize_start_ms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);  // by lease id
  int64_t lease_generation_ ABSL_GUARDED_BY(mu_) = 0;         // bumped on each new lease
  std::vector<std::thread> workers_;
  std::thread lease_expiry_;
};

}  // namespace catq::server

#endif  // CATQ_SERVER_JOB_RUNNER_H_
