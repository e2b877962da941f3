#include "server/job_runner.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/cat/site_statistics.h"
#include "core/eval/output_evaluation.h"
#include "core/io/staged_directory.h"
#include "core/model/llama_model.h"
#include "core/output/auto_bits.h"
#include "core/output/auto_block_size.h"
#include "core/output/calibration_data.h"
#include "core/output/gptq_export.h"
#include "core/output/layer_quantizer.h"
#include "core/output/layer_result_io.h"
#include "core/output/output_assembler.h"
#include "core/output/site_quantizer.h"
#include "core/util/release_free_memory.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"
#include "proto/recipe_conversion.h"
#include "server/random_id.h"

namespace catq::server {

// What every task of a job reads, loaded once per job while it runs.
struct JobRunner::JobContext {
  JobRecord record;
  v1::SubmitJobRequest request;
  Recipe recipe;
  ModelRecord model_record;
  std::string model_dir;
  std::unique_ptr<LlamaModel> model;
  // The stored statistics and samples; each layer task reads its own sites
  // (ReadLayerCalibration), so the job never holds the whole model's.
  CalibrationFiles calibration_files;
  CalibrationReport calibration_report;
  // The stored calibration's blobs (empty without calibration), which remote
  // workers read.
  std::string statistics_sha256;
  std::string samples_sha256;
  // cat-auto: `recipe` holds the block size chosen per site once the
  // calibration exists; this is the choice's report for catq_report.json.
  nlohmann::json block_size_choice;
  nlohmann::json bit_allocation;
};

namespace {

int64_t NowMs(Env* env) { return static_cast<int64_t>(env->NowMicros() / 1000); }

nlohmann::json CalibrationReportJson(const CalibrationReport& r) {
  return {{"source", r.source},
          {"path", r.path},
          {"documents", r.documents},
          {"tokens", r.tokens},
          {"max_documents", r.max_documents},
          {"max_tokens", r.max_tokens},
          {"statistics_block_size", r.statistics_block_size},
          {"mode", CalibrationModeName(r.sequential)},
          {"seconds", r.seconds}};
}

CalibrationReport CalibrationReportFromJson(const nlohmann::json& j) {
  CalibrationReport r;
  r.source = j.value("source", "none");
  r.path = j.value("path", "");
  r.documents = j.value("documents", int64_t{0});
  r.tokens = j.value("tokens", int64_t{0});
  r.max_documents = j.value("max_documents", int64_t{0});
  r.max_tokens = j.value("max_tokens", int64_t{0});
  r.statistics_block_size = j.value("statistics_block_size", int64_t{0});
  // Manifests stored before the mode existed were all float mode.
  r.sequential = j.value("mode", "fp") == std::string(CalibrationModeName(true));
  r.seconds = j.value("seconds", 0.0);
  return r;
}

v1::TaskSummary SummarizeLayer(const LayerResult& result) {
  v1::TaskSummary summary;
  summary.set_layer(result.layer);
  summary.set_seconds(result.read_seconds + result.quantize_seconds);
  for (Site s : kAllSites) {
    const SiteResult& site = result.site(s);
    v1::SiteSummary* out = summary.add_sites();
    out->set_site(std::string(SiteName(s)));
    double sum = 0.0;
    for (const LinearReport& linear : site.linears) sum += linear.weight_sqnr_db;
    if (!site.linears.empty()) out->set_weight_sqnr_db_mean(sum / site.linears.size());
    if (site.report.sqnr_before.has_value()) {
      out->set_sqnr_before_db(site.report.sqnr_before->measured_sqnr_db);
    }
    if (site.report.sqnr_after.has_value()) {
      out->set_sqnr_after_db(site.report.sqnr_after->measured_sqnr_db);
      out->set_predicted_sqnr_after_db(site.report.sqnr_after->predicted_sqnr_db);
    }
  }
  return summary;
}

// Stores the file at `path` as a blob (it is moved) and returns its digest.
absl::StatusOr<std::string> StoreFile(Env* env, BlobStore* blobs, const std::string& path) {
  CATQ_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(env, path));
  CATQ_RETURN_IF_ERROR(blobs->PutFile(path, sha));
  return sha;
}

}  // namespace

JobRunner::JobRunner(Env* env, JobRunnerOptions options, MetadataStore* store, BlobStore* blobs,
                     ModelRepository* models, JobEventHub* events)
    : env_(env),
      options_(std::move(options)),
      store_(store),
      blobs_(blobs),
      models_(models),
      events_(events) {}

JobRunner::~JobRunner() { Stop(); }

absl::Status JobRunner::Start() {
  CATQ_RETURN_IF_ERROR(store_->ResetRunningTasks());
  CATQ_ASSIGN_OR_RETURN(std::vector<JobRecord> unfinished, store_->ListUnfinishedJobs());
  for (const JobRecord& job : unfinished) Enqueue(job);
  // Without in-process workers one thread still plans and assembles.
  const bool runs_layers = options_.workers > 0;
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.emplace_back([this, runs_layers] { WorkerLoop(runs_layers); });
  }
  lease_expiry_ = std::thread([this] { LeaseExpiryLoop(); });
  return absl::OkStatus();
}

void JobRunner::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
  if (lease_expiry_.joinable()) lease_expiry_.join();
}

void JobRunner::Enqueue(const JobRecord& job) {
  {
    absl::MutexLock lock(&mu_);
    tenants_[job.id] = job.tenant;
  }
  Push({WorkItem::kPlan, job.id, 0});
}

void JobRunner::Push(WorkItem item) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(item));
}

// Two workers finishing a job's last tasks together may both see it
// complete; only the first queues the assembly.
void JobRunner::PushAssembleOnce(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  if (!assembling_.insert(job_id).second) return;
  queue_.push_back({WorkItem::kAssemble, job_id, 0});
}

bool JobRunner::Cancelled(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  return cancelled_.count(job_id) > 0;
}

void JobRunner::DropContext(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  contexts_.erase(job_id);
}

std::string JobRunner::OutputDir(const std::string& job_id) const {
  return absl::StrCat(options_.jobs_dir, "/", job_id, "/output");
}

absl::StatusOr<JobRecord> JobRunner::GetJob(const std::string& job_id) {
  std::string tenant;
  {
    absl::MutexLock lock(&mu_);
    auto it = tenants_.find(job_id);
    if (it == tenants_.end()) {
      return absl::InternalError(absl::StrCat("job '", job_id, "': not known to the runner"));
    }
    tenant = it->second;
  }
  return store_->GetJob(tenant, job_id);
}

v1::Job JobRunner::JobToProto(const JobRecord& job) const {
  v1::Job out;
  out.set_job_id(job.id);
  out.set_model_id(job.model_id);
  out.set_calibration_id(job.calibration_id);
  out.set_eval_calibration_id(job.eval_calibration_id);
  out.set_idempotency_key(job.idempotency_key);
  v1::SubmitJobRequest request;
  if (request.ParseFromString(job.request)) *out.mutable_recipe() = request.recipe();
  out.set_state(static_cast<v1::JobState>(job.state));
  out.set_error(job.error);
  out.set_tasks_total(job.tasks_total);
  out.set_tasks_done(job.tasks_done);
  out.set_create_time_ms(job.create_time_ms);
  out.set_update_time_ms(job.update_time_ms);
  out.set_eta_seconds(-1);
  {
    absl::MutexLock lock(&mu_);
    auto it = quantize_start_ms_.find(job.id);
    if (job.state == JobState::kQuantizing && it != quantize_start_ms_.end() &&
        job.tasks_done > 0) {
      const double elapsed = static_cast<double>(job.update_time_ms - it->second) * 1e-3;
      out.set_eta_seconds(elapsed / job.tasks_done * (job.tasks_total - job.tasks_done));
    }
  }
  for (const StoredFile& file : job.result_files) {
    v1::FileEntry* entry = out.add_result_files();
    entry->set_path(file.path);
    entry->set_size(file.size);
    entry->set_sha256(file.sha256);
  }
  return out;
}

void JobRunner::PublishJob(const std::string& job_id, const v1::JobEvent& detail) {
  absl::StatusOr<JobRecord> job = GetJob(job_id);
  if (!job.ok()) return;
  v1::JobEvent event = detail;
  *event.mutable_job() = JobToProto(*job);
  events_->Publish(event);
}

void JobRunner::SetState(const std::string& job_id, JobState state) {
  if (store_->SetJobState(job_id, state, "", NowMs(env_)).ok()) PublishJob(job_id, {});
}

void JobRunner::FailJob(const std::string& job_id, const absl::Status& status) {
  if (Cancelled(job_id)) return;
  {
    absl::MutexLock lock(&mu_);
    std::erase_if(queue_, [&](const WorkItem& item) { return item.job_id == job_id; });
    DropLeasesLocked(job_id);
  }
  const std::string message =
      absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
  if (store_->SetJobState(job_id, JobState::kFailed, message, NowMs(env_)).ok()) {
    v1::JobEvent event;
    event.set_message(message);
    PublishJob(job_id, event);
    RecordJobEnd(job_id, JobState::kFailed);
  }
  DropContext(job_id);
}

absl::Status JobRunner::Cancel(const JobRecord& job) {
  CATQ_RETURN_IF_ERROR(
      store_->SetJobState(job.id, JobState::kCancelled, "cancelled by the client", NowMs(env_)));
  {
    absl::MutexLock lock(&mu_);
    cancelled_.insert(job.id);
    tenants_[job.id] = job.tenant;
    std::erase_if(queue_, [&](const WorkItem& item) { return item.job_id == job.id; });
    DropLeasesLocked(job.id);
  }
  RecordJobEnd(job.id, JobState::kCancelled);
  DropContext(job.id);
  PublishJob(job.id, {});
  return absl::OkStatus();
}

bool JobRunner::HasWorkLocked(bool runs_layers) const {
  if (runs_layers) return !queue_.empty();
  return std::any_of(queue_.begin(), queue_.end(),
                     [](const WorkItem& item) { return item.kind != WorkItem::kLayer; });
}

JobRunner::WorkItem JobRunner::TakeWorkLocked(bool runs_layers) {
  auto it = runs_layers ? queue_.begin()
                        : std::find_if(queue_.begin(), queue_.end(), [](const WorkItem& item) {
                            return item.kind != WorkItem::kLayer;
                          });
  WorkItem item = std::move(*it);
  queue_.erase(it);
  return item;
}

void JobRunner::WorkerLoop(bool runs_layers) {
  while (true) {
    WorkItem item;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this, runs_layers]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || HasWorkLocked(runs_layers);
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      item = TakeWorkLocked(runs_layers);
    }
    if (Cancelled(item.job_id)) continue;
    absl::Status status = Run(item);
    if (!status.ok()) FailJob(item.job_id, status);
  }
}

absl::Status JobRunner::Run(const WorkItem& item) {
  const absl::Time start = absl::Now();
  absl::Status status = absl::InternalError("unknown work item");
  const char* kind = "plan";
  switch (item.kind) {
    case WorkItem::kPlan:
      status = Plan(item.job_id);
      break;
    case WorkItem::kLayer: {
      kind = "layer";
      {
        absl::MutexLock lock(&mu_);
        ++busy_;
      }
      status = RunLayer(item.job_id, item.task_index);
      absl::MutexLock lock(&mu_);
      --busy_;
      break;
    }
    case WorkItem::kAssemble:
      kind = "assemble";
      status = Assemble(item.job_id);
      break;
  }
  if (options_.metrics != nullptr) {
    options_.metrics->RecordTask(kind, status.ok(), absl::ToDoubleSeconds(absl::Now() - start));
  }
  return status;
}

RunnerSnapshot JobRunner::Snapshot() const {
  absl::MutexLock lock(&mu_);
  RunnerSnapshot snapshot;
  snapshot.queued_tasks = std::count_if(queue_.begin(), queue_.end(), [](const WorkItem& item) {
    return item.kind == WorkItem::kLayer;
  });
  snapshot.in_process_workers = options_.workers;
  snapshot.in_process_busy = busy_;
  snapshot.leases = static_cast<int64_t>(leases_.size());
  std::set<std::string> workers;
  for (const auto& [id, lease] : leases_) workers.insert(lease.worker_id);
  snapshot.remote_workers = static_cast<int64_t>(workers.size());
  return snapshot;
}

void JobRunner::RecordJobEnd(const std::string& job_id, JobState state) {
  if (options_.metrics == nullptr) return;
  absl::StatusOr<JobRecord> job = GetJob(job_id);
  if (!job.ok()) return;
  options_.metrics->RecordJobEnd(JobStateName(state), job->method,
                                 static_cast<double>(NowMs(env_) - job->create_time_ms) * 1e-3);
}

absl::StatusOr<std::shared_ptr<JobRunner::JobContext>> JobRunner::Context(
    const std::string& job_id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = contexts_.find(job_id);
    if (it != contexts_.end()) return it->second;
  }
  auto context = std::make_shared<JobContext>();
  CATQ_ASSIGN_OR_RETURN(context->record, GetJob(job_id));
  if (!context->request.ParseFromString(context->record.request)) {
    return absl::DataLossError(absl::StrCat("job '", job_id, "': stored request is unreadable"));
  }
  CATQ_ASSIGN_OR_RETURN(context->recipe, RecipeFromProto(context->request.recipe()));
  CATQ_ASSIGN_OR_RETURN(context->model_record,
                        store_->GetModel(context->record.tenant, context->record.model_id));
  CATQ_ASSIGN_OR_RETURN(context->model_dir, models_->Directory(context->model_record));
  CATQ_ASSIGN_OR_RETURN(LlamaModel opened, LlamaModel::Open(context->model_dir, env_));
  context->model = std::make_unique<LlamaModel>(std::move(opened));
  if (context->record.calibration_sha256.empty()) {
    CATQ_RETURN_IF_ERROR(Calibrate(*context));
    // The whole model's statistics were read and written here: without the
    // trim, a 7B job kept ~700 MB of freed statistics blocks for its lifetime.
    ReleaseFreeMemory();
  } else {
    CATQ_RETURN_IF_ERROR(LoadStoredCalibration(*context));
  }
  if (context->recipe.is_auto()) CATQ_RETURN_IF_ERROR(ResolveBlockSizes(*context));
  if (context->recipe.allocates_bits()) CATQ_RETURN_IF_ERROR(ResolveBits(*context));
  absl::MutexLock lock(&mu_);
  return contexts_.emplace(job_id, std::move(context)).first->second;
}

// Runs the calibration the job names (forward pass over text, or the uploaded
// statistics) and stores its statistics, samples and report as blobs, named by
// one manifest blob, so no later stage or restart repeats it.
absl::Status JobRunner::Calibrate(JobContext& context) {
  const JobRecord& job = context.record;
  if (job.calibration_id.empty()) return absl::OkStatus();  // RTN needs none
  SetState(job.id, JobState::kCalibrating);
  CATQ_ASSIGN_OR_RETURN(CalibrationRecord calibration,
                        store_->GetCalibration(job.tenant, job.calibration_id));
  CATQ_ASSIGN_OR_RETURN(std::string path, blobs_->VerifiedPath(calibration.file.sha256));
  CalibrationInput input;
  if (calibration.kind == v1::CALIBRATION_KIND_STATISTICS) {
    input.statistics_path = path;
  } else if (calibration.kind == v1::CALIBRATION_KIND_TOKEN_IDS) {
    input.token_ids_path = path;
  } else {
    input.text_path = path;
  }
  const v1::CalibrationOptions& options = context.request.calibration_options();
  input.text.max_documents = options.max_documents();
  input.text.max_tokens = options.max_tokens();
  if (options.has_sample_tokens()) input.sample_tokens = options.sample_tokens();
  input.sequential = options.sequential();
  input.threads = std::max(1, options_.calibration_threads);
  absl::StatusOr<CalibrationData> loaded = catq::LoadCalibration(
      env_, *context.model, context.model_dir, context.recipe, input, &context.calibration_report);
  if (!loaded.ok()) {
    // Name the calibration as the client knows it, not by its blob's path.
    std::string message(loaded.status().message());
    for (size_t at; (at = message.find(path)) != std::string::npos;) {
      message.replace(at, path.size(), absl::StrCat("calibration '", calibration.name, "'"));
    }
    return absl::Status(loaded.status().code(), message);
  }
  const CalibrationData& data = *loaded;
  context.calibration_report.path = calibration.name;
  if (options_.metrics != nullptr) {
    options_.metrics->RecordTask("calibration", true, context.calibration_report.seconds);
    options_.metrics->RecordCalibrationTokens(context.calibration_report.tokens);
  }

  const std::string statistics_path = blobs_->NewTempPath();
  CATQ_RETURN_IF_ERROR(WriteSiteStatistics(env_, statistics_path, data.statistics));
  CATQ_ASSIGN_OR_RETURN(std::string statistics_sha, StoreFile(env_, blobs_, statistics_path));
  const std::string samples_path = blobs_->NewTempPath();
  CATQ_RETURN_IF_ERROR(WriteActivationSamples(env_, samples_path, data.samples));
  CATQ_ASSIGN_OR_RETURN(std::string samples_sha, StoreFile(env_, blobs_, samples_path));
  const nlohmann::json manifest = {{"statistics", statistics_sha},
                                   {"samples", samples_sha},
                                   {"report", CalibrationReportJson(context.calibration_report)}};
  CATQ_ASSIGN_OR_RETURN(std::string manifest_sha, blobs_->PutBytes(manifest.dump()));
  CATQ_RETURN_IF_ERROR(store_->SetJobCalibration(job.id, manifest_sha));
  context.record.calibration_sha256 = manifest_sha;
  context.statistics_sha256 = statistics_sha;
  context.samples_sha256 = samples_sha;
  CATQ_ASSIGN_OR_RETURN(context.calibration_files.statistics_path, blobs_->Path(statistics_sha));
  CATQ_ASSIGN_OR_RETURN(context.calibration_files.samples_path, blobs_->Path(samples_sha));
  return absl::OkStatus();
}

// The job's stored calibration statistics, read a layer at a time: what the
// per-site choices below read.
LayerStatisticsSource JobRunner::StoredLayerStatistics(const JobContext& context) const {
  return [this, &context](int64_t layer) -> absl::StatusOr<SiteStatisticsMap> {
    CATQ_ASSIGN_OR_RETURN(CalibrationData data,
                          ReadLayerCalibration(env_, context.calibration_files, layer));
    return std::move(data.statistics);
  };
}

// cat-auto: the block size of every site, chosen from the stored statistics
// (read a layer at a time) before any layer task runs, as the in-process
// quantizer chooses; a restarted server chooses again, the same.
absl::Status JobRunner::ResolveBlockSizes(JobContext& context) {
  CATQ_ASSIGN_OR_RETURN(
      AutoBlockSizes chosen,
      ResolveAutoBlockSizes(*context.model, context.recipe, StoredLayerStatistics(context)));
  context.recipe = std::move(chosen.recipe);
  context.block_size_choice = std::move(chosen.report);
  return absl::OkStatus();
}

// Mixed precision: each site's bits, chosen after cat-auto's block sizes from
// the same statistics, as the in-process quantizer chooses.
absl::Status JobRunner::ResolveBits(JobContext& context) {
  CATQ_ASSIGN_OR_RETURN(AutoBits chosen, ResolveAutoBits(*context.model, context.recipe,
                                                         StoredLayerStatistics(context)));
  context.recipe = std::move(chosen.recipe);
  context.bit_allocation = std::move(chosen.report);
  return absl::OkStatus();
}

absl::Status JobRunner::LoadStoredCalibration(JobContext& context) {
  CATQ_ASSIGN_OR_RETURN(std::string text, blobs_->ReadVerified(context.record.calibration_sha256));
  const nlohmann::json manifest = nlohmann::json::parse(text, nullptr, false);
  if (manifest.is_discarded() || !manifest.contains("statistics")) {
    return absl::DataLossError(absl::StrCat("job '", context.record.id,
                                            "': the stored calibration manifest is unreadable"));
  }
  context.statistics_sha256 = manifest["statistics"].get<std::string>();
  context.samples_sha256 = manifest.value("samples", "");
  CATQ_ASSIGN_OR_RETURN(context.calibration_files.statistics_path,
                        blobs_->VerifiedPath(context.statistics_sha256));
  CATQ_ASSIGN_OR_RETURN(context.calibration_files.samples_path,
                        blobs_->VerifiedPath(context.samples_sha256));
  context.calibration_report = CalibrationReportFromJson(manifest["report"]);
  return absl::OkStatus();
}

absl::Status JobRunner::Plan(const std::string& job_id) {
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<JobContext> context, Context(job_id));
  if (context->request.export_gptq()) {
    // A diagonal transform that would stay online on this model fails the
    // job now, not after every layer is quantized.
    CATQ_RETURN_IF_ERROR(
        Prefix("export_gptq", CheckGptqExportable(*context->model, context->recipe)));
  }
  CATQ_ASSIGN_OR_RETURN(std::vector<TaskRecord> tasks, store_->ListTasks(job_id));
  if (tasks.empty()) {
    for (int64_t layer = 0; layer < context->model->config().num_hidden_layers; ++layer) {
      TaskRecord task;
      task.job_id = job_id;
      task.index = layer;
      task.layer = layer;
      tasks.push_back(task);
    }
    CATQ_RETURN_IF_ERROR(store_->CreateTasks(job_id, tasks));
  }
  {
    absl::MutexLock lock(&mu_);
    quantize_start_ms_[job_id] = NowMs(env_);
  }
  SetState(job_id, JobState::kQuantizing);
  bool all_done = true;
  for (const TaskRecord& task : tasks) {
    if (task.state == TaskState::kDone) continue;
    all_done = false;
    Push({WorkItem::kLayer, job_id, task.index});
  }
  if (all_done) PushAssembleOnce(job_id);
  return absl::OkStatus();
}

absl::Status JobRunner::RunLayer(const std::string& job_id, int64_t task_index) {
  if (!store_->StartTask(job_id, task_index).ok()) return absl::OkStatus();  // not pending
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<JobContext> context, Context(job_id));
  const absl::Status finished = [&]() -> absl::Status {
    absl::StatusOr<CalibrationData> calibration =
        ReadLayerCalibration(env_, context->calibration_files, task_index);
    if (!calibration.ok()) return Prefix(absl::StrCat("layer ", task_index), calibration.status());
    absl::StatusOr<LayerResult> result =
        QuantizeLayer(*context->model, context->recipe, task_index, *calibration);
    if (!result.ok()) return Prefix(absl::StrCat("layer ", task_index), result.status());
    const std::string path = blobs_->NewTempPath();
    CATQ_RETURN_IF_ERROR(WriteLayerResult(env_, path, *result));
    CATQ_ASSIGN_OR_RETURN(std::string sha, StoreFile(env_, blobs_, path));
    return FinishLayer(job_id, task_index, sha, *result).status();
  }();
  ReleaseFreeMemory();  // the layer's weights and results are freed: return their pages
  return finished;
}

absl::StatusOr<bool> JobRunner::FinishLayer(const std::string& job_id, int64_t task_index,
                                            const std::string& result_sha256,
                                            const LayerResult& result) {
  const v1::TaskSummary summary = SummarizeLayer(result);
  CATQ_ASSIGN_OR_RETURN(bool first, store_->CompleteTask(job_id, task_index, result_sha256,
                                                         summary.SerializeAsString()));
  if (!first) return false;
  if (options_.metrics != nullptr) {
    StageSeconds stages;
    for (const SiteResult& site : result.sites) {
      stages.solve += site.report.stages.solve;
      stages.quantize += site.report.stages.quantize;
      stages.pack += site.report.stages.pack;
    }
    options_.metrics->RecordLayerStages(stages.solve, stages.quantize, stages.pack);
    for (const v1::SiteSummary& site : summary.sites()) {
      if (site.has_sqnr_before_db() && site.has_sqnr_after_db()) {
        options_.metrics->RecordSiteSqnr(job_id, result.layer, site.site(), site.sqnr_before_db(),
                                         site.sqnr_after_db());
      }
    }
  }
  v1::JobEvent event;
  *event.mutable_task_finished() = summary;
  PublishJob(job_id, event);
  CATQ_ASSIGN_OR_RETURN(JobRecord job, GetJob(job_id));
  if (job.tasks_done == job.tasks_total) PushAssembleOnce(job_id);
  return true;
}

// The optional evaluation stage: perplexity of the assembled output (still
// staged, so a fetch never sees a report without it) and of the FP model on
// the job's evaluation text, into catq_report.json.
absl::Status JobRunner::Evaluate(const JobContext& context, const std::string& output_dir) {
  SetState(context.record.id, JobState::kEvaluating);
  CATQ_ASSIGN_OR_RETURN(
      CalibrationRecord text,
      store_->GetCalibration(context.record.tenant, context.record.eval_calibration_id));
  CATQ_ASSIGN_OR_RETURN(std::string text_path, blobs_->VerifiedPath(text.file.sha256));
  ForwardOptions forward;
  forward.num_threads = options_.calibration_threads;
  const absl::Time start = absl::Now();
  absl::StatusOr<OutputEvaluation> evaluation =
      EvaluateOutput(context.model_dir, output_dir, text_path, forward);
  if (options_.metrics != nullptr) {
    options_.metrics->RecordTask("eval", evaluation.ok(),
                                 absl::ToDoubleSeconds(absl::Now() - start));
  }
  if (!evaluation.ok()) return Prefix("evaluation", evaluation.status());
  if (options_.metrics != nullptr) {
    options_.metrics->RecordJobPerplexity(context.record.id, evaluation->perplexity,
                                          evaluation->fp_perplexity);
  }
  return AddEvaluationToReport(env_, output_dir, *evaluation, text.name);
}

absl::Status JobRunner::Assemble(const std::string& job_id) {
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<JobContext> context, Context(job_id));
  SetState(job_id, JobState::kAssembling);
  CATQ_ASSIGN_OR_RETURN(std::vector<TaskRecord> tasks, store_->ListTasks(job_id));
  std::map<int64_t, std::string> results;
  for (const TaskRecord& task : tasks) results[task.layer] = task.result_sha256;

  const std::string output = OutputDir(job_id);
  CATQ_RETURN_IF_ERROR(env_->CreateDirs(std::filesystem::path(output).parent_path().string()));
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<StagedDirectory> staged,
                        StagedDirectory::Create(env_, output, /*replace=*/true));
  QuantizationReport report =
      NewQuantizationReport(*context->model, context->model_dir, context->recipe);
  report.model_dir = absl::StrCat("model:", context->model_record.id);
  report.model_name = context->model_record.name;
  report.calibration = context->calibration_report;
  report.calibration_seconds = context->calibration_report.seconds;
  report.block_size_choice = context->block_size_choice;
  report.bit_allocation = context->bit_allocation;
  AssembleOptions options;
  if (context->request.max_shard_bytes() > 0) {
    options.max_shard_bytes = context->request.max_shard_bytes();
  }
  options.start_micros = static_cast<uint64_t>(context->record.create_time_ms) * 1000;
  const LayerResultSource stored = [&](int64_t layer) -> absl::StatusOr<LayerResult> {
    auto it = results.find(layer);
    if (it == results.end() || it->second.empty()) {
      return absl::InternalError(absl::StrCat("layer ", layer, ": no stored result"));
    }
    CATQ_ASSIGN_OR_RETURN(std::string path, blobs_->VerifiedPath(it->second));
    return ReadLayerResult(env_, path);
  };
  CATQ_RETURN_IF_ERROR(AssembleOutput(env_, *context->model, context->model_dir, context->recipe,
                                      stored, options, staged->path(), &report));
  if (context->request.export_gptq()) {
    GptqExportOptions gptq;
    gptq.max_shard_bytes = options.max_shard_bytes;
    absl::StatusOr<GptqExportSummary> exported = ExportGptqLayout(
        env_, staged->path(), absl::StrCat(staged->path(), "/", kGptqExportDirName), gptq);
    if (!exported.ok()) return Prefix("export_gptq", exported.status());
  }
  if (!context->record.eval_calibration_id.empty()) {
    CATQ_RETURN_IF_ERROR(Evaluate(*context, staged->path()));
  }
  CATQ_RETURN_IF_ERROR(staged->Publish());

  std::vector<StoredFile> files;
  // Relative paths: the GPTQ export's files are "gptq/<name>".
  CATQ_ASSIGN_OR_RETURN(std::vector<std::string> names, ListFilesRecursively(env_, output));
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(output, "/", name);
    StoredFile file;
    file.path = name;
    CATQ_ASSIGN_OR_RETURN(file.size, env_->GetFileSize(path));
    CATQ_ASSIGN_OR_RETURN(file.sha256, Sha256OfFile(env_, path));
    files.push_back(std::move(file));
  }
  if (Cancelled(job_id)) return absl::OkStatus();
  CATQ_RETURN_IF_ERROR(store_->SetJobResult(job_id, files, NowMs(env_)));
  RecordJobEnd(job_id, JobState::kSucceeded);
  PublishJob(job_id, {});
  DropContext(job_id);
  return absl::OkStatus();
}

// --- Remote workers: leases. ------------------------------------------------

absl::StatusOr<std::optional<v1::TaskLease>> JobRunner::LeaseTask(const std::string& worker_id,
                                                                  absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  while (true) {
    WorkItem item;
    {
      absl::MutexLock lock(&mu_);
      auto is_layer = [](const WorkItem& w) { return w.kind == WorkItem::kLayer; };
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || std::any_of(queue_.begin(), queue_.end(), is_layer);
      };
      if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline) || stopping_) {
        return std::nullopt;
      }
      auto it = std::find_if(queue_.begin(), queue_.end(), is_layer);
      item = std::move(*it);
      queue_.erase(it);
    }
    if (Cancelled(item.job_id)) continue;
    if (!store_->StartTask(item.job_id, item.task_index).ok()) continue;  // not pending
    absl::StatusOr<v1::TaskLease> lease = NewLease(worker_id, item);
    if (lease.ok()) return *std::move(lease);
    FailJob(item.job_id, lease.status());
  }
}

absl::StatusOr<v1::TaskLease> JobRunner::NewLease(const std::string& worker_id,
                                                  const WorkItem& item) {
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<JobContext> context, Context(item.job_id));
  Lease record;
  record.job_id = item.job_id;
  record.task_index = item.task_index;
  record.layer = item.task_index;  // Plan: task i quantizes layer i
  record.worker_id = worker_id;
  record.start = absl::Now();
  v1::TaskLease lease;
  lease.set_lease_id(NewRandomId("l"));
  lease.set_job_id(item.job_id);
  lease.set_task_index(item.task_index);
  lease.set_layer(record.layer);
  lease.set_lease_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.lease)));
  // A cat-auto recipe goes out resolved: the worker quantizes with the
  // chosen block sizes and never chooses itself.
  *lease.mutable_recipe() = context->recipe.is_auto() || context->recipe.allocates_bits()
                                ? RecipeToProto(context->recipe)
                                : context->request.recipe();
  lease.set_model_id(context->model_record.id);
  for (const StoredFile& file : context->model_record.files) {
    v1::FileEntry* entry = lease.add_model_files();
    entry->set_path(file.path);
    entry->set_size(file.size);
    entry->set_sha256(file.sha256);
    record.inputs.insert(file.sha256);
  }
  if (!context->statistics_sha256.empty()) {
    lease.set_statistics_sha256(context->statistics_sha256);
    lease.set_samples_sha256(context->samples_sha256);
    record.inputs.insert(context->statistics_sha256);
    record.inputs.insert(context->samples_sha256);
  }
  absl::MutexLock lock(&mu_);
  record.deadline = absl::Now() + options_.lease;
  leases_.emplace(lease.lease_id(), std::move(record));
  ++lease_generation_;
  return lease;
}

bool JobRunner::RenewLease(const std::string& lease_id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return false;
  it->second.deadline = absl::Now() + options_.lease;
  return true;
}

absl::Status JobRunner::CheckLeaseInput(const std::string& lease_id, const std::string& sha256) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) {
    return absl::NotFoundError(absl::StrCat("lease_id '", lease_id, "': unknown or expired"));
  }
  if (it->second.inputs.count(sha256) == 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("sha256 ", sha256, ": not an input of lease '", lease_id, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<JobRunner::Lease> JobRunner::TakeLease(const std::string& lease_id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) {
    return absl::NotFoundError(absl::StrCat("lease_id '", lease_id, "': unknown or expired"));
  }
  Lease lease = std::move(it->second);
  leases_.erase(it);
  return lease;
}

// The task goes back to the queue, unless its job has ended meanwhile.
void JobRunner::ReleaseTask(const std::string& job_id, int64_t task_index) {
  if (!store_->ResetTask(job_id, task_index).ok()) return;
  absl::StatusOr<JobRecord> job = GetJob(job_id);
  if (!job.ok() || IsTerminal(job->state) || Cancelled(job_id)) return;
  Push({WorkItem::kLayer, job_id, task_index});
}

absl::StatusOr<bool> JobRunner::CompleteLease(const std::string& lease_id,
                                              const std::string& sha256) {
  CATQ_ASSIGN_OR_RETURN(Lease lease, TakeLease(lease_id));
  absl::StatusOr<LayerResult> result = [&]() -> absl::StatusOr<LayerResult> {
    CATQ_ASSIGN_OR_RETURN(std::string path, blobs_->VerifiedPath(sha256));
    return ReadLayerResult(env_, path);
  }();
  if (!result.ok() || result->layer != lease.layer) {
    ReleaseTask(lease.job_id, lease.task_index);
    return absl::InvalidArgumentError(absl::StrCat(
        "result of lease '", lease_id, "': ",
        result.ok() ? absl::StrCat("holds layer ", result->layer, ", leased ", lease.layer)
                    : std::string(result.status().message())));
  }
  absl::StatusOr<bool> stored = FinishLayer(lease.job_id, lease.task_index, sha256, *result);
  if (!stored.ok()) FailJob(lease.job_id, stored.status());
  if (options_.metrics != nullptr) {
    options_.metrics->RecordTask("layer", stored.ok(),
                                 absl::ToDoubleSeconds(absl::Now() - lease.start));
  }
  return stored;
}

absl::Status JobRunner::FailLease(const std::string& lease_id, const std::string& error,
                                  bool retry) {
  CATQ_ASSIGN_OR_RETURN(Lease lease, TakeLease(lease_id));
  if (retry) {
    ReleaseTask(lease.job_id, lease.task_index);
  } else {
    FailJob(lease.job_id, absl::AbortedError(absl::StrCat("layer ", lease.layer, " (worker ",
                                                          lease.worker_id, "): ", error)));
  }
  return absl::OkStatus();
}

void JobRunner::DropLeasesLocked(const std::string& job_id) {
  std::erase_if(leases_, [&](const auto& entry) { return entry.second.job_id == job_id; });
}

// Wakes at the earliest lease deadline (or when a lease is added) and puts
// the tasks of expired leases back in the queue.
void JobRunner::LeaseExpiryLoop() {
  while (true) {
    std::vector<Lease> expired;
    {
      absl::MutexLock lock(&mu_);
      absl::Time next = absl::InfiniteFuture();
      for (const auto& [id, lease] : leases_) next = std::min(next, lease.deadline);
      const int64_t seen = lease_generation_;
      auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || lease_generation_ != seen;
      };
      mu_.AwaitWithDeadline(absl::Condition(&changed), next);
      if (stopping_) return;
      const absl::Time now = absl::Now();
      for (auto it = leases_.begin(); it != leases_.end();) {
        if (it->second.deadline > now) {
          ++it;
          continue;
        }
        expired.push_back(std::move(it->second));
        it = leases_.erase(it);
      }
    }
    for (const Lease& lease : expired) {
      ReleaseTask(lease.job_id, lease.task_index);
      v1::JobEvent event;
      event.set_message(absl::StrCat("layer ", lease.layer, ": the lease of worker '",
                                     lease.worker_id, "' expired; the task is queued again"));
      PublishJob(lease.job_id, event);
    }
  }
}

}  // namespace catq::server
