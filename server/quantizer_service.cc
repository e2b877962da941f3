#include "server/quantizer_service.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/model/token_id_documents.h"
#include "core/util/status_macros.h"
#include "proto/grpc_status.h"
#include "proto/wire_limits.h"
#include "server/random_id.h"
#include "server/submit_job_validation.h"

namespace catq::server {
namespace {

constexpr size_t kFetchChunkBytes = kMaxChunkBytes;

int64_t NowMs(Env* env) { return static_cast<int64_t>(env->NowMicros() / 1000); }

v1::FileEntry FileEntryOf(const StoredFile& file) {
  v1::FileEntry entry;
  entry.set_path(file.path);
  entry.set_size(file.size);
  entry.set_sha256(file.sha256);
  return entry;
}

v1::Model ModelToProto(const ModelRecord& model) {
  v1::Model out;
  out.set_model_id(model.id);
  out.set_name(model.name);
  out.set_format(static_cast<v1::ModelFormat>(model.format));
  for (const StoredFile& file : model.files) *out.add_files() = FileEntryOf(file);
  out.set_num_layers(model.num_layers);
  out.set_hidden_size(model.hidden_size);
  out.set_create_time_ms(model.create_time_ms);
  return out;
}

v1::Calibration CalibrationToProto(const CalibrationRecord& calibration) {
  v1::Calibration out;
  out.set_calibration_id(calibration.id);
  out.set_name(calibration.name);
  out.set_kind(static_cast<v1::CalibrationKind>(calibration.kind));
  *out.mutable_file() = FileEntryOf(calibration.file);
  out.set_create_time_ms(calibration.create_time_ms);
  return out;
}

}  // namespace

QuantizerService::QuantizerService(Env* env, const TenantAuth* auth, MetadataStore* store,
                                   BlobStore* blobs, ModelRepository* models,
                                   UploadReceiver* uploads, JobRunner* runner, JobEventHub* events,
                                   ServiceLimits limits, ServerMetrics* metrics)
    : env_(env),
      auth_(auth),
      store_(store),
      blobs_(blobs),
      models_(models),
      uploads_(uploads),
      runner_(runner),
      events_(events),
      limits_(limits),
      metrics_(metrics) {}

absl::StatusOr<std::string> QuantizerService::Tenant(grpc::ServerContext* context) const {
  return auth_->Authenticate(context->client_metadata());
}

template <typename Request>
absl::StatusOr<UploadRecord> QuantizerService::ReceiveUpload(grpc::ServerContext* context,
                                                             grpc::ServerReader<Request>* reader,
                                                             UploadKind kind) {
  CATQ_ASSIGN_OR_RETURN(std::string tenant, Tenant(context));
  Request message;
  if (!reader->Read(&message) || !message.has_header()) {
    return absl::InvalidArgumentError("header: the first message must be an UploadHeader");
  }
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<UploadSession> session,
                        uploads_->Begin(tenant, kind, message.header()));
  if (session->record().complete) return session->record();
  while (reader->Read(&message)) {
    if (!message.has_chunk()) {
      return absl::InvalidArgumentError("header: only the first message may be a header");
    }
    CATQ_RETURN_IF_ERROR(session->Append(message.chunk()));
    if (metrics_ != nullptr) metrics_->RecordUploadBytes(message.chunk().data().size());
  }
  CATQ_RETURN_IF_ERROR(session->CheckComplete());
  return session->record();
}

absl::StatusOr<v1::Model> QuantizerService::AcceptModel(const UploadRecord& upload) {
  if (upload.complete) {
    CATQ_ASSIGN_OR_RETURN(ModelRecord model, store_->GetModel(upload.tenant, upload.result_id));
    return ModelToProto(model);
  }
  ModelRecord model;
  model.id = NewRandomId("m");
  model.tenant = upload.tenant;
  model.name = upload.name;
  model.format = upload.format;
  model.create_time_ms = NowMs(env_);
  CATQ_ASSIGN_OR_RETURN(
      AcceptedModel accepted,
      models_->Accept(model.id, static_cast<v1::ModelFormat>(upload.format), upload.files));
  model.files = std::move(accepted.files);
  model.num_layers = accepted.num_layers;
  model.hidden_size = accepted.hidden_size;
  CATQ_RETURN_IF_ERROR(store_->InsertModel(model));
  CATQ_RETURN_IF_ERROR(store_->CompleteUpload(upload.tenant, upload.id, model.id));
  uploads_->Discard(upload);
  return ModelToProto(model);
}

absl::StatusOr<v1::Calibration> QuantizerService::AcceptCalibration(const UploadRecord& upload) {
  if (upload.complete) {
    CATQ_ASSIGN_OR_RETURN(CalibrationRecord calibration,
                          store_->GetCalibration(upload.tenant, upload.result_id));
    return CalibrationToProto(calibration);
  }
  const auto kind = static_cast<v1::CalibrationKind>(upload.format);
  if (kind != v1::CALIBRATION_KIND_TEXT && kind != v1::CALIBRATION_KIND_TOKEN_IDS &&
      kind != v1::CALIBRATION_KIND_STATISTICS) {
    return absl::InvalidArgumentError(
        "header.calibration_kind: must be CALIBRATION_KIND_TEXT, CALIBRATION_KIND_TOKEN_IDS or "
        "CALIBRATION_KIND_STATISTICS");
  }
  CalibrationRecord calibration;
  calibration.id = NewRandomId("c");
  calibration.tenant = upload.tenant;
  calibration.name = upload.name;
  calibration.kind = upload.format;
  calibration.file = upload.files[0];
  calibration.create_time_ms = NowMs(env_);
  // Statistics and token ids are validated now, so a bad file is refused at
  // upload, naming the tensor or the byte offset (the vocabulary is checked
  // when a job binds the ids to a model).
  if (kind != v1::CALIBRATION_KIND_TEXT) {
    CATQ_ASSIGN_OR_RETURN(std::string path, blobs_->VerifiedPath(calibration.file.sha256));
    absl::Status valid = kind == v1::CALIBRATION_KIND_STATISTICS
                             ? ReadSiteStatistics(path, env_).status()
                             : ReadTokenIdDocuments(env_, path, /*vocab_size=*/0).status();
    if (!valid.ok()) {
      std::string message(valid.message());
      if (size_t at = message.find(path); at != std::string::npos) {
        message.replace(at, path.size(), calibration.file.path);
      }
      return absl::InvalidArgumentError(message);
    }
  }
  CATQ_RETURN_IF_ERROR(store_->InsertCalibration(calibration));
  CATQ_RETURN_IF_ERROR(store_->CompleteUpload(upload.tenant, upload.id, calibration.id));
  uploads_->Discard(upload);
  return CalibrationToProto(calibration);
}

grpc::Status QuantizerService::UploadModel(grpc::ServerContext* context,
                                           grpc::ServerReader<v1::UploadModelRequest>* reader,
                                           v1::UploadModelResponse* response) {
  absl::StatusOr<UploadRecord> upload = ReceiveUpload(context, reader, UploadKind::kModel);
  if (!upload.ok()) return ToGrpcStatus(upload.status());
  absl::StatusOr<v1::Model> model = AcceptModel(*upload);
  if (!model.ok()) return ToGrpcStatus(model.status());
  *response->mutable_model() = std::move(*model);
  return grpc::Status::OK;
}

grpc::Status QuantizerService::UploadCalibration(
    grpc::ServerContext* context, grpc::ServerReader<v1::UploadCalibrationRequest>* reader,
    v1::UploadCalibrationResponse* response) {
  absl::StatusOr<UploadRecord> upload = ReceiveUpload(context, reader, UploadKind::kCalibration);
  if (!upload.ok()) return ToGrpcStatus(upload.status());
  absl::StatusOr<v1::Calibration> calibration = AcceptCalibration(*upload);
  if (!calibration.ok()) return ToGrpcStatus(calibration.status());
  *response->mutable_calibration() = std::move(*calibration);
  return grpc::Status::OK;
}

grpc::Status QuantizerService::GetUpload(grpc::ServerContext* context,
                                         const v1::GetUploadRequest* request,
                                         v1::Upload* response) {
  absl::StatusOr<std::string> tenant = Tenant(context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  absl::StatusOr<UploadRecord> upload = store_->GetUpload(*tenant, request->upload_id());
  if (!upload.ok()) return ToGrpcStatus(upload.status());
  absl::StatusOr<std::vector<uint64_t>> received = uploads_->Received(*upload);
  if (!received.ok()) return ToGrpcStatus(received.status());
  response->set_upload_id(upload->id);
  for (size_t i = 0; i < upload->files.size(); ++i) {
    *response->add_files() = FileEntryOf(upload->files[i]);
    response->add_received_bytes(upload->complete ? upload->files[i].size : (*received)[i]);
  }
  response->set_complete(upload->complete);
  if (upload->complete && upload->kind == UploadKind::kModel) {
    response->set_model_id(upload->result_id);
  }
  if (upload->complete && upload->kind == UploadKind::kCalibration) {
    response->set_calibration_id(upload->result_id);
  }
  return grpc::Status::OK;
}

absl::Status QuantizerService::Submit(const std::string& tenant,
                                      const v1::SubmitJobRequest& request,
                                      v1::SubmitJobResponse* response) {
  CATQ_ASSIGN_OR_RETURN(ValidatedSubmit submit, ValidateSubmitJobRequest(*store_, tenant, request));
  CATQ_ASSIGN_OR_RETURN(int64_t unfinished, store_->CountUnfinishedJobs(tenant));
  if (unfinished >= limits_.max_unfinished_jobs_per_tenant) {
    // Over the limit nothing is stored; a duplicate submit of an existing job
    // is still answered with that job.
    if (!request.idempotency_key().empty()) {
      CATQ_ASSIGN_OR_RETURN(std::optional<JobRecord> existing,
                            store_->FindJobByIdempotencyKey(tenant, request.idempotency_key()));
      if (existing.has_value()) {
        *response->mutable_job() = runner_->JobToProto(*existing);
        response->set_deduplicated(true);
        return absl::OkStatus();
      }
    }
    return absl::ResourceExhaustedError(absl::StrCat("jobs: ", unfinished,
                                                     " unfinished jobs, the limit per tenant is ",
                                                     limits_.max_unfinished_jobs_per_tenant));
  }
  JobRecord job;
  job.id = NewRandomId("j");
  job.tenant = tenant;
  job.model_id = submit.model.id;
  job.calibration_id = request.calibration_id();
  job.eval_calibration_id = request.eval_calibration_id();
  job.idempotency_key = request.idempotency_key();
  job.request = request.SerializeAsString();
  job.method = MethodOfJobRequest(job.request);
  job.create_time_ms = job.update_time_ms = NowMs(env_);
  CATQ_ASSIGN_OR_RETURN(auto inserted, store_->InsertJob(job));
  auto& [stored, deduplicated] = inserted;
  if (!deduplicated) runner_->Enqueue(stored);
  *response->mutable_job() = runner_->JobToProto(stored);
  response->set_deduplicated(deduplicated);
  return absl::OkStatus();
}

grpc::Status QuantizerService::SubmitJob(grpc::ServerContext* context,
                                         const v1::SubmitJobRequest* request,
                                         v1::SubmitJobResponse* response) {
  absl::StatusOr<std::string> tenant = Tenant(context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  return ToGrpcStatus(Submit(*tenant, *request, response));
}

grpc::Status QuantizerService::GetJob(grpc::ServerContext* context,
                                      const v1::GetJobRequest* request, v1::Job* response) {
  absl::StatusOr<std::string> tenant = Tenant(context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  absl::StatusOr<JobRecord> job = store_->GetJob(*tenant, request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = runner_->JobToProto(*job);
  return grpc::Status::OK;
}

grpc::Status QuantizerService::ListJobs(grpc::ServerContext* context,
                                        const v1::ListJobsRequest* request,
                                        v1::ListJobsResponse* response) {
  absl::StatusOr<std::string> tenant = Tenant(context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  if (request->limit() < 0) return ToGrpcStatus(absl::InvalidArgumentError("limit: must be >= 0"));
  const int limit = request->limit() == 0 ? 100 : std::min(request->limit(), 1000);
  absl::StatusOr<std::vector<JobRecord>> jobs = store_->ListJobs(*tenant, limit);
  if (!jobs.ok()) return ToGrpcStatus(jobs.status());
  for (const JobRecord& job : *jobs) *response->add_jobs() = runner_->JobToProto(job);
  return grpc::Status::OK;
}

grpc::Status QuantizerService::CancelJob(grpc::ServerContext* context,
                                         const v1::CancelJobRequest* request, v1::Job* response) {
  absl::StatusOr<std::string> tenant = Tenant(context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  absl::StatusOr<JobRecord> job = store_->GetJob(*tenant, request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  if (absl::Status cancelled = runner_->Cancel(*job); !cancelled.ok()) {
    return ToGrpcStatus(cancelled);
  }
  job = store_->GetJob(*tenant, request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = runner_->JobToProto(*job);
  return grpc::Status::OK;
}

grpc::Status QuantizerService::WatchJob(grpc::ServerContext* context,
                                        const v1::WatchJobRequest* request,
                                        grpc::ServerWriter<v1::JobEvent>* writer) {
  absl::StatusOr<std::string> tenant = Tenant(context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  // The sequence is taken before the snapshot, so no event between the two
  // is missed (at worst one is sent twice, which is harmless: each event
  // carries the whole job).
  uint64_t seen = events_->Latest(request->job_id());
  absl::StatusOr<JobRecord> job = store_->GetJob(*tenant, request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  v1::JobEvent snapshot;
  *snapshot.mutable_job() = runner_->JobToProto(*job);
  if (!writer->Write(snapshot)) return grpc::Status::CANCELLED;
  bool done = IsTerminal(job->state);
  while (!done) {
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    for (const JobEventHub::Entry& entry :
         events_->WaitNewer(request->job_id(), seen, absl::Seconds(1))) {
      seen = entry.sequence;
      if (!writer->Write(entry.event)) return grpc::Status::CANCELLED;
      done = IsTerminal(static_cast<JobState>(entry.event.job().state()));
      if (done) break;
    }
  }
  return grpc::Status::OK;
}

absl::Status QuantizerService::SendFile(grpc::ServerContext* context, const std::string& job_id,
                                        const StoredFile& file, uint64_t offset,
                                        grpc::ServerWriter<v1::FetchResultChunk>* writer) {
  const std::string path = absl::StrCat(runner_->OutputDir(job_id), "/", file.path);
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, env_->MapFile(path));
  const absl::string_view bytes = mapped->bytes();
  if (bytes.size() != file.size) {
    return absl::DataLossError(
        absl::StrCat(file.path, ": ", bytes.size(), " bytes on the server, recorded ", file.size));
  }
  bool first = true;
  do {
    if (context->IsCancelled()) return absl::CancelledError("the client went away");
    v1::FetchResultChunk chunk;
    chunk.set_path(file.path);
    chunk.set_offset(offset);
    const size_t length = std::min<uint64_t>(kFetchChunkBytes, file.size - offset);
    chunk.set_data(bytes.data() + offset, length);
    if (first) {
      chunk.set_file_size(file.size);
      chunk.set_sha256(file.sha256);
      first = false;
    }
    if (!writer->Write(chunk)) return absl::CancelledError("the client went away");
    // Write copied the bytes: keep the server's memory at a chunk, not the file.
    mapped->Release(bytes.substr(offset, length));
    if (metrics_ != nullptr) metrics_->RecordFetchBytes(length);
    offset += length;
  } while (offset < file.size);
  return absl::OkStatus();
}

grpc::Status QuantizerService::FetchResult(grpc::ServerContext* context,
                                           const v1::FetchResultRequest* request,
                                           grpc::ServerWriter<v1::FetchResultChunk>* writer) {
  absl::StatusOr<std::string> tenant = Tenant(context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  absl::StatusOr<JobRecord> job = store_->GetJob(*tenant, request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  if (job->state != JobState::kSucceeded) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        absl::StrCat("job '", job->id, "': has no result (state ",
                     v1::JobState_Name(static_cast<v1::JobState>(job->state)), ")")));
  }
  if (request->path().empty()) {
    if (request->offset() != 0) {
      return ToGrpcStatus(absl::InvalidArgumentError("offset: must be 0 without a path"));
    }
    for (const StoredFile& file : job->result_files) {
      if (absl::Status sent = SendFile(context, job->id, file, 0, writer); !sent.ok()) {
        return ToGrpcStatus(sent);
      }
    }
    return grpc::Status::OK;
  }
  for (const StoredFile& file : job->result_files) {
    if (file.path != request->path()) continue;
    if (request->offset() > file.size) {
      return ToGrpcStatus(
          absl::OutOfRangeError(absl::StrCat("offset: ", request->offset(), " is past the end of '",
                                             file.path, "' (", file.size, " bytes)")));
    }
    return ToGrpcStatus(SendFile(context, job->id, file, request->offset(), writer));
  }
  return ToGrpcStatus(absl::NotFoundError(
      absl::StrCat("path: job '", job->id, "' has no result file '", request->path(), "'")));
}

grpc::Status QuantizerService::ListModels(grpc::ServerContext* context,
                                          const v1::ListModelsRequest* request,
                                          v1::ListModelsResponse* response) {
  absl::StatusOr<std::string> tenant = Tenant(context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  absl::StatusOr<std::vector<ModelRecord>> models = store_->ListModels(*tenant);
  if (!models.ok()) return ToGrpcStatus(models.status());
  for (const ModelRecord& model : *models) *response->add_models() = ModelToProto(model);
  return grpc::Status::OK;
}

grpc::Status QuantizerService::DeleteModel(grpc::ServerContext* context,
                                           const v1::DeleteModelRequest* request,
                                           v1::DeleteModelResponse* response) {
  absl::StatusOr<std::string> tenant = Tenant(context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  if (absl::Status deleted = store_->DeleteModel(*tenant, request->model_id()); !deleted.ok()) {
    return ToGrpcStatus(deleted);
  }
  return ToGrpcStatus(models_->Remove(request->model_id()));
}

}  // namespace catq::server
