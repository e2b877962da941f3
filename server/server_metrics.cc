#include "server/server_metrics.h"

#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/metrics_endpoint.h"

namespace catq::server {
namespace {

prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  return family;
}

void AddGauge(prometheus::MetricFamily& family, double value,
              std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
}

}  // namespace

// The gauges read at scrape time.
class ServerMetrics::StateCollectable : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::function<JobCounts()> jobs;
    std::function<RunnerSnapshot()> runner;
    {
      absl::MutexLock lock(&mu_);
      jobs = jobs_;
      runner = runner_;
    }
    std::vector<prometheus::MetricFamily> families;
    if (jobs) {
      prometheus::MetricFamily family =
          GaugeFamily("catq_jobs", "Jobs in each state, by recipe method");
      // The scrape runs on a thread of civetweb (prometheus-cpp's HTTP
      // server), whose stack Debian's build makes small; SQLite's query
      // planner behind `jobs` needs more (under ASan it overflowed), so the
      // query runs on a thread with a default stack.
      JobCounts counts;
      std::thread([&] { counts = jobs(); }).join();
      for (const auto& [key, count] : counts) {
        AddGauge(family, static_cast<double>(count),
                 {{"method", key.second}, {"state", key.first}});
      }
      families.push_back(std::move(family));
    }
    if (runner) {
      const RunnerSnapshot s = runner();
      prometheus::MetricFamily queue =
          GaugeFamily("catq_queue_depth", "Layer tasks waiting for a worker");
      AddGauge(queue, static_cast<double>(s.queued_tasks));
      families.push_back(std::move(queue));
      prometheus::MetricFamily workers =
          GaugeFamily("catq_workers", "Workers that run layer tasks, by kind");
      AddGauge(workers, static_cast<double>(s.in_process_workers), {{"kind", "in_process"}});
      AddGauge(workers, static_cast<double>(s.remote_workers), {{"kind", "remote"}});
      families.push_back(std::move(workers));
      prometheus::MetricFamily busy =
          GaugeFamily("catq_workers_busy", "Workers running a layer task now, by kind");
      AddGauge(busy, static_cast<double>(s.in_process_busy), {{"kind", "in_process"}});
      AddGauge(busy, static_cast<double>(s.leases), {{"kind", "remote"}});
      families.push_back(std::move(busy));
    }
    return families;
  }

  void SetJobs(std::function<JobCounts()> source) {
    absl::MutexLock lock(&mu_);
    jobs_ = std::move(source);
  }
  void SetRunner(std::function<RunnerSnapshot()> source) {
    absl::MutexLock lock(&mu_);
    runner_ = std::move(source);
  }

 private:
  mutable absl::Mutex mu_;
  std::function<JobCounts()> jobs_ ABSL_GUARDED_BY(mu_);
  std::function<RunnerSnapshot()> runner_ ABSL_GUARDED_BY(mu_);
};

ServerMetrics::ServerMetrics(int max_recent_jobs)
    : registry_(std::make_shared<prometheus::Registry>()),
      state_(std::make_shared<StateCollectable>()),
      requests_(prometheus::BuildCounter()
                    .Name("catq_grpc_requests_total")
                    .Help("gRPC calls by method and status code")
                    .Register(*registry_)),
      request_seconds_(prometheus::BuildHistogram()
                           .Name("catq_grpc_request_duration_seconds")
                           .Help("gRPC call latency by method")
                           .Register(*registry_)),
      upload_bytes_(prometheus::BuildCounter()
                        .Name("catq_upload_bytes_total")
                        .Help("File bytes received in uploads")
                        .Register(*registry_)
                        .Add({})),
      fetch_bytes_(prometheus::BuildCounter()
                       .Name("catq_fetch_bytes_total")
                       .Help("Result bytes sent by FetchResult")
                       .Register(*registry_)
                       .Add({})),
      calibration_tokens_(prometheus::BuildCounter()
                              .Name("catq_calibration_tokens_total")
                              .Help("Tokens run through calibration forward passes")
                              .Register(*registry_)
                              .Add({})),
      tasks_(prometheus::BuildCounter()
                 .Name("catq_tasks_total")
                 .Help("Finished tasks and stages by kind and outcome")
                 .Register(*registry_)),
      task_seconds_(prometheus::BuildHistogram()
                        .Name("catq_task_duration_seconds")
                        .Help("Task and stage durations by kind")
                        .Register(*registry_)),
      jobs_ended_(prometheus::BuildCounter()
                      .Name("catq_jobs_finished_total")
                      .Help("Jobs that reached a terminal state, by state and recipe method")
                      .Register(*registry_)),
      job_seconds_(prometheus::BuildHistogram()
                       .Name("catq_job_duration_seconds")
                       .Help("Submit-to-end time of finished jobs, by recipe method")
                       .Register(*registry_)),
      site_sqnr_(prometheus::BuildGauge()
                     .Name("catq_site_sqnr_db")
                     .Help("Measured SQNR per layer and site of recent jobs, before and after "
                           "the transform (dB)")
                     .Register(*registry_)),
      perplexity_(prometheus::BuildGauge()
                      .Name("catq_job_perplexity")
                      .Help("Perplexity on the evaluation text of recent jobs, of the quantized "
                            "output and of the FP model")
                      .Register(*registry_)),
      max_recent_jobs_(max_recent_jobs) {}

std::shared_ptr<prometheus::Collectable> ServerMetrics::state_collectable() const { return state_; }

void ServerMetrics::RecordRequest(const std::string& method, grpc::StatusCode code,
                                  double seconds) {
  requests_
      .Add({{"method", method},
            {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}})
      .Increment();
  request_seconds_.Add({{"method", method}}, DurationBuckets()).Observe(seconds);
}

void ServerMetrics::RecordUploadBytes(uint64_t bytes) {
  upload_bytes_.Increment(static_cast<double>(bytes));
}

void ServerMetrics::RecordFetchBytes(uint64_t bytes) {
  fetch_bytes_.Increment(static_cast<double>(bytes));
}

void ServerMetrics::RecordCalibrationTokens(int64_t tokens) {
  calibration_tokens_.Increment(static_cast<double>(tokens));
}

void ServerMetrics::RecordTask(absl::string_view kind, bool ok, double seconds) {
  tasks_.Add({{"kind", std::string(kind)}, {"outcome", ok ? "ok" : "error"}}).Increment();
  task_seconds_.Add({{"kind", std::string(kind)}}, DurationBuckets()).Observe(seconds);
}

void ServerMetrics::RecordJobEnd(absl::string_view state, absl::string_view method,
                                 double seconds) {
  jobs_ended_.Add({{"state", std::string(state)}, {"method", std::string(method)}}).Increment();
  job_seconds_.Add({{"method", std::string(method)}}, DurationBuckets()).Observe(seconds);
}

void ServerMetrics::RecordLayerStages(double solve, double quantize, double pack) {
  for (const auto& [kind, seconds] :
       {std::pair{"solve", solve}, std::pair{"quantize", quantize}, std::pair{"pack", pack}}) {
    task_seconds_.Add({{"kind", kind}}, DurationBuckets()).Observe(seconds);
  }
}

void ServerMetrics::RecordSiteSqnr(const std::string& job_id, int64_t layer,
                                   const std::string& site, double before_db, double after_db) {
  absl::MutexLock lock(&mu_);
  for (const auto& [stage, value] :
       {std::pair{"before", before_db}, std::pair{"after", after_db}}) {
    SetJobGauge(
        site_sqnr_, job_id,
        {{"job_id", job_id}, {"layer", absl::StrCat(layer)}, {"site", site}, {"stage", stage}},
        value);
  }
}

void ServerMetrics::RecordJobPerplexity(const std::string& job_id, double quantized, double fp) {
  absl::MutexLock lock(&mu_);
  SetJobGauge(perplexity_, job_id, {{"job_id", job_id}, {"variant", "quantized"}}, quantized);
  SetJobGauge(perplexity_, job_id, {{"job_id", job_id}, {"variant", "fp"}}, fp);
}

void ServerMetrics::SetJobGauge(prometheus::Family<prometheus::Gauge>& family,
                                const std::string& job_id, const prometheus::Labels& labels,
                                double value) {
  if (job_gauges_.count(job_id) == 0) {
    recent_jobs_.push_back(job_id);
    while (static_cast<int>(recent_jobs_.size()) > max_recent_jobs_) {
      for (const auto& [owner, gauge] : job_gauges_[recent_jobs_.front()]) owner->Remove(gauge);
      job_gauges_.erase(recent_jobs_.front());
      recent_jobs_.pop_front();
    }
  }
  prometheus::Gauge& gauge = family.Add(labels);
  gauge.Set(value);
  job_gauges_[job_id].emplace_back(&family, &gauge);
}

void ServerMetrics::SetJobStateSource(std::function<JobCounts()> source) {
  state_->SetJobs(std::move(source));
}

void ServerMetrics::SetRunnerSource(std::function<RunnerSnapshot()> source) {
  state_->SetRunner(std::move(source));
}

}  // namespace catq::server
