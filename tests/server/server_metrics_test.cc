// The server's /metrics endpoint over real HTTP during and after real jobs:
// every family the dashboards read is exported, with the values the jobs
// produced, and per-site SQNR is kept for the newest jobs only.
#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "client/quantizer_client.h"
#include "proto/recipe_conversion.h"
#include "server/catq_server.h"
#include "tests/util/http_get.h"
#include "tests/util/output_comparison.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq::server {
namespace {

using ::testing::HasSubstr;

// The value of the sample whose line starts with `series` (name and
// labels exactly as exported); -1 when absent.
double Sample(const std::string& exposition, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      return std::stod(std::string(line.substr(series.size() + 1)));
    }
  }
  return -1;
}

TEST(ServerMetricsTest, JobsTasksRequestsAndSqnrAreExported) {
  testing::TempDir dir;
  ASSERT_OK(testing::WriteSyntheticJobInputs(dir.Join("model"), dir.Join("stats.safetensors")));
  CatqServerOptions options;
  options.listen = "127.0.0.1:0";
  options.metrics_listen = "127.0.0.1:0";
  options.data_dir = dir.Join("data");
  options.workers = 2;
  auto server = CatqServer::Start(options);
  ASSERT_OK(server);
  ASSERT_GT((*server)->metrics_port(), 0);
  client::ClientOptions client_options;
  client_options.server = absl::StrCat("127.0.0.1:", (*server)->port());
  auto client = client::QuantizerClient::Connect(client_options);
  ASSERT_OK(client);

  auto model = (*client)->UploadModel(dir.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  // Token ids run the calibration forward pass, which keeps the activation
  // samples SQNR is measured on.
  std::string ids;
  for (int32_t t = 0; t < 60; ++t) {
    const int32_t id = t == 30 ? -1 : 1 + (t * 13) % 200;
    ids.append(reinterpret_cast<const char*>(&id), sizeof(id));
  }
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("calib.ids"), ids));
  auto calibration =
      (*client)->UploadCalibration(dir.Join("calib.ids"), v1::CALIBRATION_KIND_TOKEN_IDS, "ids");
  ASSERT_OK(calibration);
  v1::SubmitJobRequest request;
  request.set_model_id(model->model_id());
  request.set_calibration_id(calibration->calibration_id());
  *request.mutable_recipe() = RecipeToProto(testing::CatW4A4Recipe());
  auto submitted = (*client)->Submit(request);
  ASSERT_OK(submitted);
  auto job = (*client)->Watch(submitted->job().job_id(), nullptr);
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  ASSERT_OK((*client)->Fetch(job->job_id(), dir.Join("fetched")));
  request.mutable_recipe()->set_weight_bits(9);
  EXPECT_FALSE((*client)->Submit(request).ok());

  auto text = testing::HttpGet("127.0.0.1", (*server)->metrics_port(), "/metrics");
  ASSERT_OK(text);
  const std::string& m = *text;
  EXPECT_EQ(Sample(m, R"(catq_grpc_requests_total{code="OK",method="SubmitJob"})"), 1) << m;
  EXPECT_EQ(Sample(m, R"(catq_grpc_requests_total{code="INVALID_ARGUMENT",method="SubmitJob"})"),
            1);
  EXPECT_EQ(Sample(m, R"(catq_grpc_request_duration_seconds_count{method="UploadModel"})"), 1);
  EXPECT_EQ(Sample(m, R"(catq_jobs{method="cat",state="succeeded"})"), 1);
  EXPECT_EQ(Sample(m, R"(catq_jobs{method="rtn",state="succeeded"})"), 0);
  EXPECT_EQ(Sample(m, R"(catq_jobs{method="cat",state="quantizing"})"), 0);
  EXPECT_EQ(Sample(m, R"(catq_jobs_finished_total{method="cat",state="succeeded"})"), 1);
  EXPECT_EQ(Sample(m, R"(catq_job_duration_seconds_count{method="cat"})"), 1);
  EXPECT_EQ(Sample(m, R"(catq_tasks_total{kind="layer",outcome="ok"})"), 2);  // tiny: 2 layers
  EXPECT_EQ(Sample(m, R"(catq_tasks_total{kind="assemble",outcome="ok"})"), 1);
  EXPECT_EQ(Sample(m, R"(catq_task_duration_seconds_count{kind="layer"})"), 2);
  // Each layer task's solve, quantize and pack time, from its result.
  for (const char* stage : {"solve", "quantize", "pack"}) {
    const std::string labels = absl::StrCat(R"({kind=")", stage, R"("})");
    EXPECT_EQ(Sample(m, absl::StrCat("catq_task_duration_seconds_count", labels)), 2) << stage;
    EXPECT_GT(Sample(m, absl::StrCat("catq_task_duration_seconds_sum", labels)), 0) << stage;
    EXPECT_EQ(Sample(m, absl::StrCat(R"(catq_tasks_total{kind=")", stage, R"(",outcome="ok"})")),
              -1)
        << stage << " is a part of a layer task, not a task";
  }
  EXPECT_EQ(Sample(m, "catq_queue_depth"), 0);
  EXPECT_EQ(Sample(m, R"(catq_workers{kind="in_process"})"), 2);
  EXPECT_EQ(Sample(m, R"(catq_workers_busy{kind="in_process"})"), 0);
  EXPECT_GT(Sample(m, "catq_upload_bytes_total"), 0);
  EXPECT_GT(Sample(m, "catq_fetch_bytes_total"), 0);
  EXPECT_GT(Sample(m, "catq_process_resident_memory_bytes"), 1 << 20);
  EXPECT_EQ(Sample(m, "catq_calibration_tokens_total"), 59);  // 30 + 29 tokens
  EXPECT_EQ(Sample(m, R"(catq_tasks_total{kind="calibration",outcome="ok"})"), 1);
  EXPECT_THAT(m, HasSubstr(absl::StrCat(R"(catq_site_sqnr_db{job_id=")", job->job_id(),
                                        R"(",layer="1",site="attn_in",stage="after"})")));
  EXPECT_THAT(m, HasSubstr("# TYPE catq_task_duration_seconds histogram"));
  (*server)->Shutdown();
}

// The job_id label of every series of `family`, sorted.
std::vector<std::string> JobIds(const ServerMetrics& metrics, const std::string& family_name) {
  std::vector<std::string> jobs;
  for (const prometheus::MetricFamily& family : metrics.registry()->Collect()) {
    if (family.name != family_name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name == "job_id") jobs.push_back(label.value);
      }
    }
  }
  std::sort(jobs.begin(), jobs.end());
  return jobs;
}

TEST(ServerMetricsTest, PerJobSeriesAreKeptForTheNewestJobsOnly) {
  ServerMetrics metrics(/*max_recent_jobs=*/2);
  for (const char* job : {"j1", "j2", "j3"}) metrics.RecordSiteSqnr(job, 0, "mlp_in", 10, 20);
  metrics.RecordSiteSqnr("j2", 1, "mlp_in", 11, 21);  // a known job adds series
  EXPECT_EQ(JobIds(metrics, "catq_site_sqnr_db"),
            (std::vector<std::string>{"j2", "j2", "j2", "j2", "j3", "j3"}));
  // Perplexity shares the window: a fourth job drops all of j2's series.
  metrics.RecordJobPerplexity("j3", 4.2, 3.5);
  metrics.RecordJobPerplexity("j4", 4.4, 3.5);
  EXPECT_EQ(JobIds(metrics, "catq_site_sqnr_db"), (std::vector<std::string>{"j3", "j3"}));
  EXPECT_EQ(JobIds(metrics, "catq_job_perplexity"),
            (std::vector<std::string>{"j3", "j3", "j4", "j4"}));
}

TEST(ServerMetricsTest, AMetricsPortInUseIsAnError) {
  testing::TempDir dir;
  CatqServerOptions options;
  options.listen = "127.0.0.1:0";
  options.metrics_listen = "127.0.0.1:0";
  options.data_dir = dir.Join("a");
  auto first = CatqServer::Start(options);
  ASSERT_OK(first);
  options.metrics_listen = absl::StrCat("127.0.0.1:", (*first)->metrics_port());
  options.data_dir = dir.Join("b");
  auto second = CatqServer::Start(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("--metrics-listen"));
}

}  // namespace
}  // namespace catq::server
