// File: worker/remote_worker.h
//
// A remote worker (`catq worker --server ADDR`): leases layer tasks from a
// catq server over catq.v1.Worker, runs them with the same code as the
// server's in-process workers (core/output/layer_quantizer.h), and returns
// the results. Inputs are read by content id into a local cache (a blob
// store under options.cache_dir), so a model's files cross the network once
// per worker, not once per task; a job's model and calibration stay open
// across its tasks.
//
// While a task runs, a heartbeat renews its lease every third of the lease
// time. When the server says the lease is gone (it expired, or the job was
// cancelled or failed), the worker drops the task's result. A task's own
// error (the same on any worker) fails the job; the worker's own trouble
// (a blob that cannot be read) returns the task to the queue.
//
//   RemoteWorkerOptions options;
//   options.cache_dir = "/var/cache/catq-worker";
//   CATQ_ASSIGN_OR_RETURN(auto worker, RemoteWorker::Create(channel, token, options));
//   worker->Run();          // until Stop(), from another thread or a signal
//
// Thread-safety: Stop may be called from any thread; the rest from one.
#ifndef CATQ_WORKER_REMOTE_WORKER_H_
#define CATQ_WORKER_REMOTE_WORKER_H_

#include <grpcpp/channel.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "catq/v1/worker.grpc.pb.h"
#include "core/io/env.h"
#include "server/blob_store.h"
#include "server/model_repository.h"
#include "worker/worker_metrics.h"

namespace catq::worker {

struct RemoteWorkerOptions {
  // Names this worker in the server's events; default "<hostname>-<pid>".
  std::string worker_id;
  // Where cached inputs and results in flight live. Required.
  std::string cache_dir;
  // How long one LeaseTask call waits for a task.
  absl::Duration poll = absl::Seconds(10);
  // Run returns after this many tasks; 0: no limit.
  int max_tasks = 0;
  // Receives one line per event (leased, done, lease lost, retrying).
  std::function<void(const std::string&)> log;
  // Counts tasks, their time and the bytes read, when set; outlives the
  // worker.
  WorkerMetrics* metrics = nullptr;
  Env* env = Env::Default();
};

class RemoteWorker {
 public:
  // Create: opens the cache. `token` is sent as a bearer token when not
  // empty, never printed.
  static absl::StatusOr<std::unique_ptr<RemoteWorker>> Create(
      std::shared_ptr<grpc::Channel> channel, std::string token, RemoteWorkerOptions options);
  ~RemoteWorker();

  // RunOnce: leases one task (waiting up to options.poll) and runs it.
  // Returns false when no task came. Errors: the server's, for a call that
  // failed (the caller decides whether to retry).
  absl::StatusOr<bool> RunOnce();
  // Run: RunOnce until Stop or options.max_tasks; an unreachable server is
  // retried with backoff (up to 10 s between tries).
  absl::Status Run();
  void Stop();

 private:
  struct JobInputs;
  class LeaseKeeper;

  RemoteWorker(std::shared_ptr<grpc::Channel> channel, std::string token,
               RemoteWorkerOptions options);
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  void Log(const std::string& line) const;
  absl::Status RunTask(const v1::TaskLease& lease);
  absl::Status RunLeasedTask(const v1::TaskLease& lease, TaskOutcome& outcome);
  absl::StatusOr<std::shared_ptr<JobInputs>> Inputs(const v1::TaskLease& lease);
  absl::StatusOr<std::string> FetchBlob(const std::string& lease_id, const std::string& sha256);
  absl::StatusOr<bool> SendResult(const std::string& lease_id, const std::string& path);
  absl::Status SendFailure(const std::string& lease_id, const absl::Status& error, bool retry);

  std::unique_ptr<v1::Worker::Stub> stub_;
  const std::string token_;
  RemoteWorkerOptions options_;
  std::unique_ptr<server::BlobStore> blobs_;
  std::unique_ptr<server::ModelRepository> models_;
  std::shared_ptr<JobInputs> inputs_;  // the last job's
  absl::Notification stop_;
  absl::Mutex mu_;
  grpc::ClientContext* polling_ ABSL_GUARDED_BY(mu_) = nullptr;  // a LeaseTask in flight
};

}  // namespace catq::worker

#endif  // CATQ_WORKER_REMOTE_WORKER_H_
