// File: server/server_metrics.h
//
// The server's Prometheus metrics (prometheus-cpp), served on their own port
// (`catq serve --metrics-listen HOST:PORT`, path /metrics). Names start with
// `catq_`, carry their unit, and counters end in `_total`, following the
// Prometheus naming conventions. Labels have bounded values: RPC method and
// status code, job state and method, task kind and outcome; per-job series
// (site SQNR, perplexity) are kept only for the last `max_recent_jobs` jobs.
// Their job label is `job_id`: `job` is the label Prometheus gives every
// series of a scrape target.
//
// Two kinds of figures:
//   events      counters and histograms the code records as things happen
//               (Record*);
//   state       gauges read when Prometheus scrapes (jobs by state, queue
//               depth, workers, resident memory), from the sources set with
//               SetJobStateSource / SetRunnerSource, so they are never stale.
//
//   ServerMetrics metrics;
//   metrics.RecordRequest("SubmitJob", grpc::StatusCode::OK, 0.004);
//   exposer.RegisterCollectable(metrics.registry());
//   exposer.RegisterCollectable(metrics.state_collectable());
//
// Thread-safety: thread-safe.
#ifndef CATQ_SERVER_SERVER_METRICS_H_
#define CATQ_SERVER_SERVER_METRICS_H_

#include <grpcpp/support/status.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace catq::server {

// Jobs by (state, recipe method), read at scrape time: catq_jobs{state,method}.
using JobCounts = std::map<std::pair<std::string, std::string>, int64_t>;

// What the job runner reports at scrape time.
struct RunnerSnapshot {
  int64_t queued_tasks = 0;        // layer tasks waiting for a worker
  int64_t in_process_workers = 0;  // threads that run layer tasks
  int64_t in_process_busy = 0;     // of those, running a task now
  int64_t leases = 0;              // layer tasks leased to remote workers now
  int64_t remote_workers = 0;      // distinct remote workers holding a lease
};

class ServerMetrics {
 public:
  explicit ServerMetrics(int max_recent_jobs = 8);
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  std::shared_ptr<prometheus::Collectable> state_collectable() const;

  // Every finished RPC: catq_grpc_requests_total{method,code} and
  // catq_grpc_request_duration_seconds{method}.
  void RecordRequest(const std::string& method, grpc::StatusCode code, double seconds);
  void RecordUploadBytes(uint64_t bytes);
  void RecordFetchBytes(uint64_t bytes);
  void RecordCalibrationTokens(int64_t tokens);
  // A finished task or stage: kind is plan, calibration, layer, assemble or
  // eval.
  void RecordTask(absl::string_view kind, bool ok, double seconds);
  // Where a finished layer task's time went, summed over its sites:
  // catq_task_duration_seconds{kind=solve|quantize|pack} (not counted in
  // catq_tasks_total: they are parts of the layer task).
  void RecordLayerStages(double solve, double quantize, double pack);
  // A job reaching a terminal state (succeeded, failed, cancelled).
  void RecordJobEnd(absl::string_view state, absl::string_view method, double seconds);
  // Measured SQNR of one site of a finished layer task (dB), kept for the
  // newest max_recent_jobs jobs: catq_site_sqnr_db{job_id,layer,site,stage}.
  void RecordSiteSqnr(const std::string& job_id, int64_t layer, const std::string& site,
                      double before_db, double after_db);
  // A job's evaluation: catq_job_perplexity{job_id,variant=quantized|fp},
  // kept like the SQNR series.
  void RecordJobPerplexity(const std::string& job_id, double quantized, double fp);

  void SetJobStateSource(std::function<JobCounts()> source);
  void SetRunnerSource(std::function<RunnerSnapshot()> source);

 private:
  class StateCollectable;

  // Sets the gauge of `labels` in `family` for `job_id`, first dropping every
  // series of the oldest job when this one makes one job too many.
  void SetJobGauge(prometheus::Family<prometheus::Gauge>& family, const std::string& job_id,
                   const prometheus::Labels& labels, double value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<StateCollectable> state_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Counter& upload_bytes_;
  prometheus::Counter& fetch_bytes_;
  prometheus::Counter& calibration_tokens_;
  prometheus::Family<prometheus::Counter>& tasks_;
  prometheus::Family<prometheus::Histogram>& task_seconds_;
  prometheus::Family<prometheus::Counter>& jobs_ended_;
  prometheus::Family<prometheus::Histogram>& job_seconds_;
  prometheus::Family<prometheus::Gauge>& site_sqnr_;
  prometheus::Family<prometheus::Gauge>& perplexity_;

  const int max_recent_jobs_;
  absl::Mutex mu_;
  // Jobs with per-job series, oldest first, and their gauges.
  std::deque<std::string> recent_jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string,
           std::vector<std::pair<prometheus::Family<prometheus::Gauge>*, prometheus::Gauge*>>>
      job_gauges_ ABSL_GUARDED_BY(mu_);
};

}  // namespace catq::server

#endif  // CATQ_SERVER_SERVER_METRICS_H_
