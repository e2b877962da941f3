// File: server/worker_service.h
//
// catq.v1.Worker (proto/catq/v1/worker.proto): remote workers lease layer
// tasks from the job runner, read the leased task's inputs from the blob
// store by sha256, and return results, which enter the blob store only after
// their hash checks. The runner owns leases and their expiry; this class
// authenticates, validates and streams.
//
// Authentication: with `auth` set, every call needs one of its tokens (a
// worker tokens file, "<token> <worker name>" lines, separate from the
// tenants'); `auth` null refuses every call (a server with tenant tokens but
// no worker tokens accepts no remote worker).
//
// Thread-safety: thread-safe (gRPC calls the methods from many threads).
#ifndef CATQ_SERVER_WORKER_SERVICE_H_
#define CATQ_SERVER_WORKER_SERVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "catq/v1/worker.grpc.pb.h"
#include "core/io/env.h"
#include "server/blob_store.h"
#include "server/job_runner.h"
#include "server/tenant_auth.h"

namespace catq::server {

struct WorkerServiceLimits {
  // The largest task result a worker may return.
  uint64_t max_result_bytes = uint64_t{64} << 30;
};

class WorkerService final : public v1::Worker::Service {
 public:
  WorkerService(Env* env, const TenantAuth* auth, BlobStore* blobs, JobRunner* runner,
                WorkerServiceLimits limits);

  grpc::Status LeaseTask(grpc::ServerContext* context, const v1::LeaseTaskRequest* request,
                         v1::LeaseTaskResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status ReadBlob(grpc::ServerContext* context, const v1::ReadBlobRequest* request,
                        grpc::ServerWriter<v1::BlobChunk>* writer) override;
  grpc::Status CompleteTask(grpc::ServerContext* context,
                            grpc::ServerReader<v1::CompleteTaskRequest>* reader,
                            v1::CompleteTaskResponse* response) override;
  grpc::Status FailTask(grpc::ServerContext* context, const v1::FailTaskRequest* request,
                        v1::FailTaskResponse* response) override;

 private:
  absl::Status Authenticate(grpc::ServerContext* context) const;
  absl::Status SendBlob(grpc::ServerContext* context, const v1::ReadBlobRequest& request,
                        grpc::ServerWriter<v1::BlobChunk>* writer);
  absl::StatusOr<bool> ReceiveResult(grpc::ServerContext* context,
                                     grpc::ServerReader<v1::CompleteTaskRequest>* reader);

  Env* const env_;
  const TenantAuth* const auth_;
  BlobStore* const blobs_;
  JobRunner* const runner_;
  const WorkerServiceLimits limits_;
};

}  // namespace catq::server

#endif  // CATQ_SERVER_WORKER_SERVICE_H_
