#include "worker/worker_metrics.h"

#include <string>

#include "server/metrics_endpoint.h"

namespace catq::worker {

absl::string_view TaskOutcomeName(TaskOutcome outcome) {
  switch (outcome) {
    case TaskOutcome::kDone:
      return "done";
    case TaskOutcome::kFailed:
      return "failed";
    case TaskOutcome::kReturned:
      return "returned";
    case TaskOutcome::kLost:
      return "lost";
  }
  return "unknown";
}

WorkerMetrics::WorkerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      tasks_(prometheus::BuildCounter()
                 .Name("catq_worker_tasks_total")
                 .Help("Layer tasks this worker leased, by outcome")
                 .Register(*registry_)),
      task_seconds_(prometheus::BuildHistogram()
                        .Name("catq_worker_task_duration_seconds")
                        .Help("Lease-to-result time of this worker's layer tasks")
                        .Register(*registry_)
                        .Add({}, server::DurationBuckets())),
      read_bytes_(prometheus::BuildCounter()
                      .Name("catq_worker_read_bytes_total")
                      .Help("Input bytes read from the server (cache misses)")
                      .Register(*registry_)
                      .Add({})),
      busy_(prometheus::BuildGauge()
                .Name("catq_worker_busy")
                .Help("1 while this worker runs a task, else 0")
                .Register(*registry_)
                .Add({})) {
  // Every outcome exists from the start, so rate() over it never lacks a
  // series.
  for (TaskOutcome outcome :
       {TaskOutcome::kDone, TaskOutcome::kFailed, TaskOutcome::kReturned, TaskOutcome::kLost}) {
    tasks_.Add({{"outcome", std::string(TaskOutcomeName(outcome))}});
  }
}

void WorkerMetrics::TaskStarted() { busy_.Set(1); }

void WorkerMetrics::TaskEnded(TaskOutcome outcome, double seconds) {
  busy_.Set(0);
  tasks_.Add({{"outcome", std::string(TaskOutcomeName(outcome))}}).Increment();
  task_seconds_.Observe(seconds);
}

void WorkerMetrics::RecordReadBytes(uint64_t bytes) {
  read_bytes_.Increment(static_cast<double>(bytes));
}

}  // namespace catq::worker
