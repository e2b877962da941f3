// File: server/quantizer_service.h
//
// catq.v1.Quantizer over the server's stores (architecture.md section 2):
// each RPC authenticates the caller's tenant, validates the request (errors
// name the field), calls the store, receiver or runner, and converts the
// status. Nothing here computes; the job runner does.
//
// Thread-safety: thread-safe (gRPC calls the methods from many threads).
#ifndef CATQ_SERVER_QUANTIZER_SERVICE_H_
#define CATQ_SERVER_QUANTIZER_SERVICE_H_

#include <string>

#include "catq/v1/catq.grpc.pb.h"
#include "core/io/env.h"
#include "server/blob_store.h"
#include "server/job_events.h"
#include "server/job_runner.h"
#include "server/metadata_store.h"
#include "server/model_repository.h"
#include "server/server_metrics.h"
#include "server/tenant_auth.h"
#include "server/upload_receiver.h"

namespace catq::server {

struct ServiceLimits {
  // Jobs of one tenant not yet finished; SubmitJob beyond is
  // RESOURCE_EXHAUSTED.
  int64_t max_unfinished_jobs_per_tenant = 16;
};

class QuantizerService final : public v1::Quantizer::Service {
 public:
  QuantizerService(Env* env, const TenantAuth* auth, MetadataStore* store, BlobStore* blobs,
                   ModelRepository* models, UploadReceiver* uploads, JobRunner* runner,
                   JobEventHub* events, ServiceLimits limits, ServerMetrics* metrics = nullptr);

  grpc::Status UploadModel(grpc::ServerContext* context,
                           grpc::ServerReader<v1::UploadModelRequest>* reader,
                           v1::UploadModelResponse* response) override;
  grpc::Status GetUpload(grpc::ServerContext* context, const v1::GetUploadRequest* request,
                         v1::Upload* response) override;
  grpc::Status UploadCalibration(grpc::ServerContext* context,
                                 grpc::ServerReader<v1::UploadCalibrationRequest>* reader,
                                 v1::UploadCalibrationResponse* response) override;
  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;
  grpc::Status FetchResult(grpc::ServerContext* context, const v1::FetchResultRequest* request,
                           grpc::ServerWriter<v1::FetchResultChunk>* writer) override;
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status DeleteModel(grpc::ServerContext* context, const v1::DeleteModelRequest* request,
                           v1::DeleteModelResponse* response) override;

 private:
  absl::StatusOr<std::string> Tenant(grpc::ServerContext* context) const;
  template <typename Request>
  absl::StatusOr<UploadRecord> ReceiveUpload(grpc::ServerContext* context,
                                             grpc::ServerReader<Request>* reader, UploadKind kind);
  absl::StatusOr<v1::Model> AcceptModel(const UploadRecord& upload);
  absl::StatusOr<v1::Calibration> AcceptCalibration(const UploadRecord& upload);
  absl::Status Submit(const std::string& tenant, const v1::SubmitJobRequest& request,
                      v1::SubmitJobResponse* response);
  absl::Status SendFile(grpc::ServerContext* context, const std::string& job_id,
                        const StoredFile& file, uint64_t offset,
                        grpc::ServerWriter<v1::FetchResultChunk>* writer);

  Env* const env_;
  const TenantAuth* const auth_;
  MetadataStore* const store_;
  BlobStore* const blobs_;
  ModelRepository* const models_;
  UploadReceiver* const uploads_;
  JobRunner* const runner_;
  JobEventHub* const events_;
  const ServiceLimits limits_;
  ServerMetrics* const metrics_;  // upload and fetch bytes; may be null
};

}  // namespace catq::server

#endif  // CATQ_SERVER_QUANTIZER_SERVICE_H_
