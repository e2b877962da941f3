#include "server/worker_service.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/io/sha256.h"
#include "core/util/status_macros.h"
#include "proto/grpc_status.h"
#include "proto/wire_limits.h"

namespace catq::server {
namespace {

constexpr uint32_t kMaxLeaseWaitMs = 60000;

}  // namespace

WorkerService::WorkerService(Env* env, const TenantAuth* auth, BlobStore* blobs, JobRunner* runner,
                             WorkerServiceLimits limits)
    : env_(env), auth_(auth), blobs_(blobs), runner_(runner), limits_(limits) {}

absl::Status WorkerService::Authenticate(grpc::ServerContext* context) const {
  if (auth_ == nullptr) {
    return absl::UnauthenticatedError(
        "this server accepts no remote workers (start it with --worker-tokens)");
  }
  return auth_->Authenticate(context->client_metadata()).status();
}

grpc::Status WorkerService::LeaseTask(grpc::ServerContext* context,
                                      const v1::LeaseTaskRequest* request,
                                      v1::LeaseTaskResponse* response) {
  if (absl::Status auth = Authenticate(context); !auth.ok()) return ToGrpcStatus(auth);
  if (request->wait_ms() > kMaxLeaseWaitMs) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("wait_ms: ", request->wait_ms(), " is over the limit of ", kMaxLeaseWaitMs)));
  }
  absl::StatusOr<std::optional<v1::TaskLease>> lease =
      runner_->LeaseTask(request->worker_id(), absl::Milliseconds(request->wait_ms()));
  if (!lease.ok()) return ToGrpcStatus(lease.status());
  if (lease->has_value()) *response->mutable_lease() = **lease;
  return grpc::Status::OK;
}

grpc::Status WorkerService::Heartbeat(grpc::ServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) {
  if (absl::Status auth = Authenticate(context); !auth.ok()) return ToGrpcStatus(auth);
  response->set_keep_going(runner_->RenewLease(request->lease_id()));
  return grpc::Status::OK;
}

absl::Status WorkerService::SendBlob(grpc::ServerContext* context,
                                     const v1::ReadBlobRequest& request,
                                     grpc::ServerWriter<v1::BlobChunk>* writer) {
  CATQ_RETURN_IF_ERROR(runner_->CheckLeaseInput(request.lease_id(), request.sha256()));
  CATQ_ASSIGN_OR_RETURN(std::string path, blobs_->VerifiedPath(request.sha256()));
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, env_->MapFile(path));
  const absl::string_view bytes = mapped->bytes();
  uint64_t offset = request.offset();
  if (offset > bytes.size()) {
    return absl::OutOfRangeError(absl::StrCat("offset: ", offset, " is past the end of blob ",
                                              request.sha256(), " (", bytes.size(), " bytes)"));
  }
  do {
    if (context->IsCancelled()) return absl::CancelledError("the worker went away");
    v1::BlobChunk chunk;
    chunk.set_offset(offset);
    chunk.set_size(bytes.size());
    const size_t length = std::min<uint64_t>(kMaxChunkBytes, bytes.size() - offset);
    chunk.set_data(bytes.data() + offset, length);
    if (!writer->Write(chunk)) return absl::CancelledError("the worker went away");
    mapped->Release(bytes.substr(offset, length));  // sent: memory stays at a chunk
    offset += length;
  } while (offset < bytes.size());
  return absl::OkStatus();
}

grpc::Status WorkerService::ReadBlob(grpc::ServerContext* context,
                                     const v1::ReadBlobRequest* request,
                                     grpc::ServerWriter<v1::BlobChunk>* writer) {
  if (absl::Status auth = Authenticate(context); !auth.ok()) return ToGrpcStatus(auth);
  return ToGrpcStatus(SendBlob(context, *request, writer));
}

// Streams the result into a temporary file beside the blobs; it enters the
// store only when its size and sha256 match the header.
absl::StatusOr<bool> WorkerService::ReceiveResult(
    grpc::ServerContext* context, grpc::ServerReader<v1::CompleteTaskRequest>* reader) {
  v1::CompleteTaskRequest message;
  if (!reader->Read(&message) || !message.has_header()) {
    return absl::InvalidArgumentError("header: the first message must be a CompleteTaskHeader");
  }
  const v1::CompleteTaskHeader header = message.header();
  if (!IsSha256Hex(header.sha256())) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.sha256: '", header.sha256(), "' is not 64 lowercase hex digits"));
  }
  if (header.size() > limits_.max_result_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "header.size: ", header.size(), " bytes is over the limit of ", limits_.max_result_bytes));
  }
  if (!runner_->RenewLease(header.lease_id())) {
    return absl::NotFoundError(
        absl::StrCat("lease_id '", header.lease_id(), "': unknown or expired"));
  }
  const std::string temp = blobs_->NewTempPath();
  absl::Status received = [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env_->NewWritableFile(temp));
    uint64_t size = 0;
    while (reader->Read(&message)) {
      if (context->IsCancelled()) return absl::CancelledError("the worker went away");
      if (message.has_header()) {
        return absl::InvalidArgumentError("header: only the first message may be a header");
      }
      if (message.data().size() > kMaxChunkBytes || size + message.data().size() > header.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("data at offset ", size, ": ", message.data().size(),
                         " bytes overrun the chunk limit or the header's size of ", header.size()));
      }
      CATQ_RETURN_IF_ERROR(file->Append(message.data()));
      size += message.data().size();
    }
    if (size != header.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("data: ", size, " bytes received, the header says ", header.size()));
    }
    CATQ_RETURN_IF_ERROR(file->Close());
    return blobs_->PutFile(temp, header.sha256());
  }();
  if (!received.ok()) {
    env_->RemoveFile(temp).IgnoreError();  // a partial result is never kept
    return received;
  }
  return runner_->CompleteLease(header.lease_id(), header.sha256());
}

grpc::Status WorkerService::CompleteTask(grpc::ServerContext* context,
                                         grpc::ServerReader<v1::CompleteTaskRequest>* reader,
                                         v1::CompleteTaskResponse* response) {
  if (absl::Status auth = Authenticate(context); !auth.ok()) return ToGrpcStatus(auth);
  absl::StatusOr<bool> stored = ReceiveResult(context, reader);
  if (!stored.ok()) return ToGrpcStatus(stored.status());
  response->set_stored(*stored);
  return grpc::Status::OK;
}

grpc::Status WorkerService::FailTask(grpc::ServerContext* context,
                                     const v1::FailTaskRequest* request,
                                     v1::FailTaskResponse* /*response*/) {
  if (absl::Status auth = Authenticate(context); !auth.ok()) return ToGrpcStatus(auth);
  return ToGrpcStatus(runner_->FailLease(request->lease_id(), request->error(), request->retry()));
}

}  // namespace catq::server
