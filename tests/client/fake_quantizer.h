// File: tests/client/fake_quantizer.h
//
// A scripted stand-in for catq.v1.Quantizer, for the client's tests: it
// answers from fields the test sets (uploads, models, one job, result files,
// watch events) and records what it is sent (tokens, upload headers and
// chunks, fetch and submit requests). It checks nothing a real server
// checks; the server's own tests cover that.
//
//   FakeQuantizer fake;
//   fake.results = {{"model.safetensors", bytes}};
//   fake.SetSucceededJob();
//   FakeServer server(&fake);  // in-process channel and a loopback port
//   QuantizerClient client(server.channel(), options);
#ifndef CATQ_TESTS_CLIENT_FAKE_QUANTIZER_H_
#define CATQ_TESTS_CLIENT_FAKE_QUANTIZER_H_

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "catq/v1/catq.grpc.pb.h"
#include "client/quantizer_client.h"
#include "core/io/sha256.h"

namespace catq::testing {

struct ChunkSeen {
  uint32_t file_index;
  uint64_t offset;
  uint64_t size;
  bool operator==(const ChunkSeen&) const = default;
};

inline void PrintTo(const ChunkSeen& chunk, std::ostream* os) {
  *os << "{file " << chunk.file_index << ", offset " << chunk.offset << ", " << chunk.size
      << " bytes}";
}

// Answers from what the test sets and records what it is sent. Tests make
// one call at a time and read the records once it has returned, so there is
// no locking.
class FakeQuantizer final : public v1::Quantizer::Service {
 public:
  // Set by the test.
  std::map<std::string, v1::Upload> uploads;
  std::vector<v1::Model> models;
  v1::Job job;
  std::map<std::string, std::string> results;  // path -> content
  uint64_t fetch_chunk_bytes = 64;
  int64_t fail_fetch_after_bytes = -1;  // UNAVAILABLE once this many are sent
  bool wrong_first_chunk_sha = false;
  std::vector<v1::JobEvent> events;
  grpc::Status submit_status;

  // Recorded.
  std::vector<std::string> authorizations;
  std::vector<v1::UploadHeader> headers;
  std::vector<ChunkSeen> chunks;
  int upload_calls = 0;
  std::vector<v1::FetchResultRequest> fetches;
  std::vector<v1::SubmitJobRequest> submits;
  std::vector<int> list_limits;

  grpc::Status GetUpload(grpc::ServerContext* context, const v1::GetUploadRequest* request,
                         v1::Upload* response) override {
    Record(*context);
    auto it = uploads.find(request->upload_id());
    if (it == uploads.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such upload");
    *response = it->second;
    return grpc::Status::OK;
  }

  grpc::Status UploadModel(grpc::ServerContext* context,
                           grpc::ServerReader<v1::UploadModelRequest>* reader,
                           v1::UploadModelResponse* response) override {
    Record(*context);
    ++upload_calls;
    v1::UploadModelRequest request;
    while (reader->Read(&request)) {
      if (request.has_header()) headers.push_back(request.header());
      if (request.has_chunk()) {
        const v1::UploadChunk& c = request.chunk();
        chunks.push_back({c.file_index(), c.offset(), c.data().size()});
      }
    }
    response->mutable_model()->set_model_id("m-new");
    response->mutable_model()->set_name(headers.empty() ? "" : headers.back().name());
    return grpc::Status::OK;
  }

  grpc::Status UploadCalibration(grpc::ServerContext* context,
                                 grpc::ServerReader<v1::UploadCalibrationRequest>* reader,
                                 v1::UploadCalibrationResponse* response) override {
    Record(*context);
    ++upload_calls;
    v1::UploadCalibrationRequest request;
    while (reader->Read(&request)) {
      if (request.has_header()) headers.push_back(request.header());
      if (request.has_chunk()) {
        const v1::UploadChunk& c = request.chunk();
        chunks.push_back({c.file_index(), c.offset(), c.data().size()});
      }
    }
    response->mutable_calibration()->set_calibration_id("c-new");
    return grpc::Status::OK;
  }

  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest*,
                          v1::ListModelsResponse* response) override {
    Record(*context);
    for (const v1::Model& model : models) *response->add_models() = model;
    return grpc::Status::OK;
  }

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override {
    Record(*context);
    submits.push_back(*request);
    *response->mutable_job() = job;
    return submit_status;
  }

  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    Record(*context);
    list_limits.push_back(request->limit());
    *response->add_jobs() = job;
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::Job* response) override {
    Record(*context);
    if (request->job_id() != job.job_id()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job '" + request->job_id() + "'");
    }
    job.set_state(v1::JOB_STATE_CANCELLED);
    *response = job;
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* response) override {
    Record(*context);
    if (request->job_id() != job.job_id()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job '" + request->job_id() + "'");
    }
    *response = job;
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest*,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    Record(*context);
    if (events.empty()) {  // The job as it stands, as a late watcher sees it.
      v1::JobEvent event;
      *event.mutable_job() = job;
      writer->Write(event);
    }
    for (const v1::JobEvent& event : events) writer->Write(event);
    return grpc::Status::OK;
  }

  grpc::Status FetchResult(grpc::ServerContext* context, const v1::FetchResultRequest* request,
                           grpc::ServerWriter<v1::FetchResultChunk>* writer) override {
    Record(*context);
    fetches.push_back(*request);
    auto it = results.find(request->path());
    if (it == results.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, request->path());
    const std::string& content = it->second;
    uint64_t sent = 0;
    for (uint64_t offset = request->offset(); offset < content.size();
         offset += fetch_chunk_bytes) {
      if (fail_fetch_after_bytes >= 0 && sent >= static_cast<uint64_t>(fail_fetch_after_bytes)) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server going away");
      }
      v1::FetchResultChunk chunk;
      chunk.set_path(request->path());
      chunk.set_offset(offset);
      chunk.set_data(content.substr(offset, fetch_chunk_bytes));
      if (offset == request->offset()) {
        chunk.set_file_size(content.size());
        chunk.set_sha256(wrong_first_chunk_sha ? Sha256Hex("other") : Sha256Hex(content));
      }
      sent += chunk.data().size();
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

  // A SUCCEEDED job whose result files are `results`.
  void SetSucceededJob() {
    job.set_job_id("j-1");
    job.set_state(v1::JOB_STATE_SUCCEEDED);
    job.clear_result_files();
    for (const auto& [path, content] : results) {
      v1::FileEntry& file = *job.add_result_files();
      file.set_path(path);
      file.set_size(content.size());
      file.set_sha256(Sha256Hex(content));
    }
  }

 private:
  void Record(const grpc::ServerContext& context) {
    auto it = context.client_metadata().find("authorization");
    authorizations.push_back(it == context.client_metadata().end()
                                 ? ""
                                 : std::string(it->second.data(), it->second.size()));
  }
};

// Serves `fake` in this process: through an in-process channel and on a
// loopback port (for a `catq` subprocess), until destroyed.
class FakeServer {
 public:
  explicit FakeServer(FakeQuantizer* fake) {
    grpc::ServerBuilder builder;
    builder.SetMaxReceiveMessageSize(client::kMaxReceiveMessageBytes);
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(fake);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() { server_->Shutdown(); }

  std::shared_ptr<grpc::Channel> channel() {
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(client::kMaxReceiveMessageBytes);
    return server_->InProcessChannel(arguments);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace catq::testing

#endif  // CATQ_TESTS_CLIENT_FAKE_QUANTIZER_H_
