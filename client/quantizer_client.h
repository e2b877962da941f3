// File: client/quantizer_client.h
//
// QuantizerClient: the typed client of catq.v1.Quantizer (proto/catq/v1/
// catq.proto), speaking only the public proto. It adds what the raw stub
// leaves to every caller: the bearer token on each call, resumable uploads
// (manifest, GetUpload, chunks from the offsets the server reports),
// resumable verified downloads (FetchResult into `<path>.part`, sha256, then
// rename) and statuses that name the RPC.
//
//   ClientOptions options;
//   options.server = "localhost:50051";
//   options.token = token;  // sent, never printed
//   CATQ_ASSIGN_OR_RETURN(auto client, QuantizerClient::Connect(options));
//   CATQ_ASSIGN_OR_RETURN(v1::Model model,
//                         client->UploadModel("models/llama", "llama", v1::MODEL_FORMAT_HF));
//   v1::SubmitJobRequest request;
//   request.set_model_id(model.model_id());
//   *request.mutable_recipe() = RecipeToProto(recipe);
//   CATQ_ASSIGN_OR_RETURN(v1::SubmitJobResponse submitted, client->Submit(request));
//   CATQ_ASSIGN_OR_RETURN(v1::Job job, client->Watch(submitted.job().job_id(), nullptr));
//   if (job.state() != v1::JOB_STATE_SUCCEEDED) return absl::AbortedError(job.error());
//   CATQ_ASSIGN_OR_RETURN(FetchStats fetched, client->Fetch(job.job_id(), "out/w4"));
//
// Errors: a failed RPC keeps the server's code, and its message becomes
// "<Rpc>: <CODE>: <server's message>", e.g. "SubmitJob: INVALID_ARGUMENT:
// recipe.weight_bits: 9 is outside [2, 8]". Local failures (a missing file, a
// full disk) keep the Env's status; data that fails verification is DataLoss.
// No call retries on its own: uploads and fetches are made to be rerun.
//
// Thread-safety: thread-safe; concurrent calls share the channel. Two
// concurrent Fetch calls into the same directory, or two concurrent uploads
// with the same upload id, race.
#ifndef CATQ_CLIENT_QUANTIZER_CLIENT_H_
#define CATQ_CLIENT_QUANTIZER_CLIENT_H_

#include <grpcpp/channel.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "catq/v1/catq.grpc.pb.h"
#include "catq/v1/catq.pb.h"
#include "client/file_manifest.h"
#include "core/io/env.h"
#include "proto/wire_limits.h"

namespace catq::client {

// The most file bytes one UploadChunk carries (architecture.md section 2).
inline constexpr size_t kMaxUploadChunkBytes = kMaxChunkBytes;
// The client's receive limit: a 4 MiB FetchResultChunk plus its fields.
inline constexpr int kMaxReceiveMessageBytes = 8 << 20;

struct ClientOptions {
  // HOST:PORT of the server. Required.
  std::string server;
  // Sent as `authorization: Bearer <token>` on every call when not empty.
  // Never printed or logged.
  std::string token;
  // PEM file of the CA that signed the server's certificate: TLS when set,
  // plaintext when empty.
  std::string tls_ca_file;
  // Deadline of each unary call, in seconds. Streams (uploads, WatchJob,
  // FetchResult) have none: they last as long as their work. Default 60.
  double unary_timeout_seconds = 60.0;
  // Files are read and written through this Env. Not owned; the default is
  // Env::Default().
  Env* env = Env::Default();
};

// Called as bytes move: `done` of `total` bytes of the whole transfer,
// counting bytes already there from an earlier run. May be null.
using TransferProgress = std::function<void(uint64_t done, uint64_t total)>;

// Called with each event of WatchJob, in order. May be null.
using JobEventCallback = std::function<void(const v1::JobEvent& event)>;

// What Fetch did.
struct FetchStats {
  v1::Job job;                        // As GetJob returned it; job.result_files were fetched.
  uint64_t bytes_received = 0;        // Over the wire in this call.
  int64_t files_already_present = 0;  // Complete and verified before this call.
};

// OpenChannel: a channel to options.server (TLS with options.tls_ca_file when
// set) receiving messages up to kMaxReceiveMessageBytes; what Connect uses,
// for the other services of the same server (catq.v1.Worker).
// InvalidArgument when options.server is empty.
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const ClientOptions& options);

class QuantizerClient {
 public:
  // QuantizerClient::Connect
  //
  // A client on a new channel to options.server (TLS with options.tls_ca_file
  // when set), receiving messages up to kMaxReceiveMessageBytes. Connecting is
  // lazy: an unreachable server shows as UNAVAILABLE on the first call.
  // InvalidArgument when options.server is empty; the Env's error when the CA
  // file cannot be read.
  static absl::StatusOr<std::unique_ptr<QuantizerClient>> Connect(const ClientOptions& options);

  // A client over an existing channel (e.g. a test server's InProcessChannel).
  // options.server and options.tls_ca_file are ignored.
  QuantizerClient(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);

  QuantizerClient(const QuantizerClient&) = delete;
  QuantizerClient& operator=(const QuantizerClient&) = delete;

  // QuantizerClient::UploadModel
  //
  // Uploads every file under `dir` (BuildDirectoryManifest) as model `name`
  // in `format` (MODEL_FORMAT_HF, or MODEL_FORMAT_LLAMA2C for a directory
  // holding just the checkpoint and tokenizer) and returns the stored model.
  // An empty `upload_id` means DefaultUploadId, so running the same upload
  // again resumes where the server's GetUpload says it stopped, and an upload
  // that already completed returns its model without sending a byte.
  // Errors: the manifest's (missing or empty dir), FailedPrecondition when
  // the upload id is known to the server with other files, NotFound when the
  // model that upload became was deleted since, and the server's verdict
  // ("UploadModel: INVALID_ARGUMENT: config.json: ...").
  absl::StatusOr<v1::Model> UploadModel(const std::string& dir, absl::string_view name,
                                        v1::ModelFormat format, absl::string_view upload_id = "",
                                        const TransferProgress& progress = nullptr);

  // QuantizerClient::UploadModelFiles
  //
  // As UploadModel for files given one by one, each under its base name
  // (BuildFilesManifest): a llama2.c checkpoint and its tokenizer.
  absl::StatusOr<v1::Model> UploadModelFiles(const std::vector<std::string>& files,
                                             absl::string_view name, v1::ModelFormat format,
                                             absl::string_view upload_id = "",
                                             const TransferProgress& progress = nullptr);

  // QuantizerClient::UploadModelManifest
  //
  // The general form both call: uploads `manifest` (non-empty, entries as
  // file_manifest.h builds them).
  absl::StatusOr<v1::Model> UploadModelManifest(const Manifest& manifest, absl::string_view name,
                                                v1::ModelFormat format,
                                                absl::string_view upload_id = "",
                                                const TransferProgress& progress = nullptr);

  // QuantizerClient::UploadCalibration
  //
  // Uploads the one file `file` as calibration `name` of `kind` (TEXT,
  // TOKEN_IDS or STATISTICS), resumable like UploadModel. An upload that
  // already completed returns a Calibration built from GetUpload's record
  // (calibration_id, this name, kind and file).
  absl::StatusOr<v1::Calibration> UploadCalibration(const std::string& file,
                                                    v1::CalibrationKind kind,
                                                    absl::string_view name,
                                                    absl::string_view upload_id = "",
                                                    const TransferProgress& progress = nullptr);

  // QuantizerClient::GetUpload: NotFound for an upload id the server has
  // never seen (for this tenant).
  absl::StatusOr<v1::Upload> GetUpload(absl::string_view upload_id);

  // QuantizerClient::Submit: the job, at once; `deduplicated` when
  // request.idempotency_key named an existing job (which is returned).
  absl::StatusOr<v1::SubmitJobResponse> Submit(const v1::SubmitJobRequest& request);

  absl::StatusOr<v1::Job> GetJob(absl::string_view job_id);
  // QuantizerClient::ListJobs: newest first; limit 0 means the server's
  // default (100).
  absl::StatusOr<std::vector<v1::Job>> ListJobs(int limit = 0);
  // QuantizerClient::CancelJob: the job after the cancel request. A job that
  // already ended keeps its state and the call fails with FailedPrecondition
  // ("CancelJob: FAILED_PRECONDITION: job 'j-..': already succeeded").
  absl::StatusOr<v1::Job> CancelJob(absl::string_view job_id);
  absl::StatusOr<std::vector<v1::Model>> ListModels();
  absl::Status DeleteModel(absl::string_view model_id);

  // QuantizerClient::Watch
  //
  // Follows WatchJob, calling `on_event` for each event (the current state
  // first), and returns the job of the last event once the server ends the
  // stream with the job ended: SUCCEEDED, FAILED or CANCELLED (check
  // job.state(); a failed job is not an error of Watch).
  // Errors: the stream's status ("WatchJob: NOT_FOUND: ..."), and
  // Unavailable when the stream ends cleanly before the job has ended (or
  // without a single event): watching again picks up from the current state.
  absl::StatusOr<v1::Job> Watch(absl::string_view job_id, const JobEventCallback& on_event);

  // QuantizerClient::Fetch
  //
  // Downloads every result file of a SUCCEEDED job into `out_dir` (created
  // when absent) at its relative path. A file already there with the right
  // size and sha256 is kept; otherwise bytes go to `<path>.part`, resuming
  // from its current size, and the .part is renamed over `<path>` only after
  // its size and sha256 match GetJob's entry. A fetch killed midway and run
  // again continues from the .part files.
  // Errors: FailedPrecondition when the job has not SUCCEEDED;
  // InvalidArgument for a result path that is absolute or holds ".." (all
  // paths are checked before anything is written); DataLoss when a chunk is not the one asked
  // for (path, offset, a first chunk whose file_size or sha256 differ from
  // GetJob's), runs past the file's size, or the finished file's sha256
  // differs (a corrupt .part is discarded and fetched once more from byte 0
  // before that); the Env's errors (a full disk is ResourceExhausted).
  absl::StatusOr<FetchStats> Fetch(absl::string_view job_id, const std::string& out_dir,
                                   const TransferProgress& progress = nullptr);

 private:
  // A context carrying the token and, for a unary call, the deadline.
  std::unique_ptr<grpc::ClientContext> NewContext(bool unary) const;
  template <typename Request, typename Response>
  absl::StatusOr<Response> CallUnary(
      absl::string_view rpc,
      grpc::Status (v1::Quantizer::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
      const Request& request);
  // The UploadModel / UploadCalibration streams from the resume `offsets`.
  absl::StatusOr<v1::Model> SendModelUpload(const v1::UploadHeader& header,
                                            const Manifest& manifest,
                                            const std::vector<uint64_t>& offsets,
                                            const TransferProgress& progress);
  absl::StatusOr<v1::Calibration> SendCalibrationUpload(const v1::UploadHeader& header,
                                                        const Manifest& manifest,
                                                        const std::vector<uint64_t>& offsets,
                                                        const TransferProgress& progress);
  // FetchResult of `file` from `offset` appended to `part`; returns the bytes
  // received. `done_before` and `total` place it in the whole transfer.
  absl::StatusOr<uint64_t> StreamResultFile(absl::string_view job_id, const v1::FileEntry& file,
                                            uint64_t offset, WritableFile& part,
                                            uint64_t done_before, uint64_t total,
                                            const TransferProgress& progress);
  // One result file into `path` through `path`.part, verified; returns the
  // bytes received.
  absl::StatusOr<uint64_t> FetchFile(absl::string_view job_id, const v1::FileEntry& file,
                                     const std::string& path, uint64_t done_before, uint64_t total,
                                     const TransferProgress& progress);

  const std::unique_ptr<v1::Quantizer::Stub> stub_;
  const std::string token_;  // Empty: no authorization metadata.
  const double unary_timeout_seconds_;
  Env* const env_;
};

}  // namespace catq::client

#endif  // CATQ_CLIENT_QUANTIZER_CLIENT_H_
