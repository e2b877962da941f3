// QuantizerClient: connection, unary calls and WatchJob. Uploads are in
// quantizer_client_upload.cc, FetchResult in quantizer_client_fetch.cc.
#include "client/quantizer_client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/rpc_status.h"
#include "core/util/status_macros.h"

namespace catq::client {
namespace {

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const ClientOptions& options) {
  if (options.tls_ca_file.empty()) return grpc::InsecureChannelCredentials();
  absl::StatusOr<std::string> pem = options.env->ReadFile(options.tls_ca_file);
  if (!pem.ok()) return Prefix("--tls-ca", pem.status());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = *std::move(pem);
  return grpc::SslCredentials(ssl);
}

bool IsFinal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const ClientOptions& options) {
  if (options.server.empty()) {
    return absl::InvalidArgumentError("no server address (HOST:PORT) given");
  }
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                        Credentials(options));
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  return grpc::CreateCustomChannel(options.server, credentials, arguments);
}

absl::StatusOr<std::unique_ptr<QuantizerClient>> QuantizerClient::Connect(
    const ClientOptions& options) {
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, OpenChannel(options));
  return std::make_unique<QuantizerClient>(std::move(channel), options);
}

QuantizerClient::QuantizerClient(std::shared_ptr<grpc::Channel> channel,
                                 const ClientOptions& options)
    : stub_(v1::Quantizer::NewStub(std::move(channel))),
      token_(options.token),
      unary_timeout_seconds_(options.unary_timeout_seconds),
      env_(options.env) {}

std::unique_ptr<grpc::ClientContext> QuantizerClient::NewContext(bool unary) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token_.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  if (unary) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::duration<double>(unary_timeout_seconds_)));
  }
  return context;
}

template <typename Request, typename Response>
absl::StatusOr<Response> QuantizerClient::CallUnary(
    absl::string_view rpc,
    grpc::Status (v1::Quantizer::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
    const Request& request) {
  std::unique_ptr<grpc::ClientContext> context = NewContext(/*unary=*/true);
  Response response;
  CATQ_RETURN_IF_ERROR(RpcStatus(rpc, (stub_.get()->*method)(context.get(), request, &response)));
  return response;
}

absl::StatusOr<v1::Upload> QuantizerClient::GetUpload(absl::string_view upload_id) {
  v1::GetUploadRequest request;
  request.set_upload_id(std::string(upload_id));
  return CallUnary("GetUpload", &v1::Quantizer::Stub::GetUpload, request);
}

absl::StatusOr<v1::SubmitJobResponse> QuantizerClient::Submit(const v1::SubmitJobRequest& request) {
  return CallUnary("SubmitJob", &v1::Quantizer::Stub::SubmitJob, request);
}

absl::StatusOr<v1::Job> QuantizerClient::GetJob(absl::string_view job_id) {
  v1::GetJobRequest request;
  request.set_job_id(std::string(job_id));
  return CallUnary("GetJob", &v1::Quantizer::Stub::GetJob, request);
}

absl::StatusOr<std::vector<v1::Job>> QuantizerClient::ListJobs(int limit) {
  v1::ListJobsRequest request;
  request.set_limit(limit);
  CATQ_ASSIGN_OR_RETURN(v1::ListJobsResponse response,
                        CallUnary("ListJobs", &v1::Quantizer::Stub::ListJobs, request));
  return std::vector<v1::Job>(response.jobs().begin(), response.jobs().end());
}

absl::StatusOr<v1::Job> QuantizerClient::CancelJob(absl::string_view job_id) {
  v1::CancelJobRequest request;
  request.set_job_id(std::string(job_id));
  return CallUnary("CancelJob", &v1::Quantizer::Stub::CancelJob, request);
}

absl::StatusOr<std::vector<v1::Model>> QuantizerClient::ListModels() {
  CATQ_ASSIGN_OR_RETURN(
      v1::ListModelsResponse response,
      CallUnary("ListModels", &v1::Quantizer::Stub::ListModels, v1::ListModelsRequest()));
  return std::vector<v1::Model>(response.models().begin(), response.models().end());
}

absl::Status QuantizerClient::DeleteModel(absl::string_view model_id) {
  v1::DeleteModelRequest request;
  request.set_model_id(std::string(model_id));
  return CallUnary("DeleteModel", &v1::Quantizer::Stub::DeleteModel, request).status();
}

absl::StatusOr<v1::Job> QuantizerClient::Watch(absl::string_view job_id,
                                               const JobEventCallback& on_event) {
  std::unique_ptr<grpc::ClientContext> context = NewContext(/*unary=*/false);
  v1::WatchJobRequest request;
  request.set_job_id(std::string(job_id));
  std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader =
      stub_->WatchJob(context.get(), request);
  std::optional<v1::Job> last;
  v1::JobEvent event;
  while (reader->Read(&event)) {
    last = event.job();
    if (on_event) on_event(event);
  }
  CATQ_RETURN_IF_ERROR(RpcStatus("WatchJob", reader->Finish()));
  if (!last.has_value()) {
    return absl::UnavailableError(
        absl::StrCat("WatchJob: the stream of job '", job_id, "' ended before its first event"));
  }
  if (!IsFinal(last->state())) {
    return absl::UnavailableError(absl::StrCat("WatchJob: the stream of job '", job_id,
                                               "' ended while it is ",
                                               v1::JobState_Name(last->state()), "; watch again"));
  }
  return *std::move(last);
}

}  // namespace catq::client
