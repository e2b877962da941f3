// File: worker/worker_metrics.h
//
// A remote worker's own Prometheus metrics (`catq worker --metrics-listen
// HOST:PORT`, path /metrics). The server already counts the tasks it hands
// out; these say what each worker saw: its tasks by outcome and their time
// (lease to result), the input bytes it read from the server (its cache
// misses), and whether it is running a task now.
//
//   catq_worker_tasks_total{outcome}       done, failed (the task's error:
//                                          fails the job), returned (this
//                                          worker's trouble: requeued), lost
//                                          (the lease ended first)
//   catq_worker_task_duration_seconds      histogram, every outcome
//   catq_worker_read_bytes_total           blob bytes read from the server
//   catq_worker_busy                       1 while a task runs, else 0
//
// Thread-safety: thread-safe.
#ifndef CATQ_WORKER_WORKER_METRICS_H_
#define CATQ_WORKER_WORKER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <memory>

#include "absl/strings/string_view.h"

namespace catq::worker {

enum class TaskOutcome { kDone, kFailed, kReturned, kLost };

absl::string_view TaskOutcomeName(TaskOutcome outcome);

class WorkerMetrics {
 public:
  WorkerMetrics();
  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void TaskStarted();
  void TaskEnded(TaskOutcome outcome, double seconds);
  void RecordReadBytes(uint64_t bytes);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& tasks_;
  prometheus::Histogram& task_seconds_;
  prometheus::Counter& read_bytes_;
  prometheus::Gauge& busy_;
};

}  // namespace catq::worker

#endif  // CATQ_WORKER_WORKER_METRICS_H_
