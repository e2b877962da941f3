// Issue 7, "Bad input": every RPC of catq.v1.Quantizer and catq.v1.Worker
// given malformed, mismatched, out-of-range or foreign input, over real gRPC
// on loopback against one CatqServer (two tenants, one remote-worker token,
// small upload limits). Each case of the table asserts the exact status code
// and a fragment of the message naming the field, file, tensor or offset,
// and that no message leaks the server's directories. After all of them,
// BadInputAfterwardsTest checks that the server still runs a normal job to
// SUCCEEDED and that nothing partial is visible: each tenant lists only the
// models and jobs that were accepted, and no refused upload is complete.
//
// Input the server accepts and a job then refuses (NaN weights, a one-token
// or empty calibration, statistics of other dimensions) is a case too: the
// job must end FAILED, and its error's leading code and text are checked.
//
// ctest runs every case in its own process; the final test runs whatever
// cases its process has not run yet, so it sees the same server history in
// both ways of running.
#include <grpcpp/create_channel.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "catq/v1/catq.grpc.pb.h"
#include "catq/v1/worker.grpc.pb.h"
#include "client/quantizer_client.h"
#include "core/cat/site_statistics.h"
#include "core/io/env.h"
#include "core/io/sha256.h"
#include "core/math/eigen_types.h"
#include "nlohmann/json.hpp"
#include "proto/grpc_status.h"
#include "server/catq_server.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kTokenA[] = "tok-a";
constexpr char kTokenB[] = "tok-b";
constexpr char kWorkerToken[] = "wtok-1";
constexpr uint64_t kMaxUploadBytes = uint64_t{2} << 20;
constexpr size_t kMaxFiles = 8;
constexpr size_t kChunkBytes = size_t{1} << 20;
// The synthetic "tiny" model: hidden 64, intermediate 172, 2 layers, vocab 512.
constexpr int kHidden = 64;
constexpr int kVocab = 512;
constexpr char kQProj[] = "model.layers.0.self_attn.q_proj.weight";

// (path, bytes) of the files of one upload, in header order.
using Files = std::vector<std::pair<std::string, std::string>>;

// ---------------------------------------------------------------------------
// Shared state: one server for the whole binary.

struct Shared {
  testing::TempDir dir;
  std::string data_dir;
  std::unique_ptr<CatqServer> server;
  std::unique_ptr<v1::Quantizer::Stub> stub;
  std::unique_ptr<v1::Worker::Stub> worker;
  std::unique_ptr<client::QuantizerClient> a;  // tenant-a
  std::unique_ptr<client::QuantizerClient> b;  // tenant-b
  // The good inputs: the synthetic model's config.json and model.safetensors
  // (F32), and its calibration statistics.
  std::string config;
  std::string weights;
  std::string statistics;
  // Made on first use (see the functions below).
  std::string model_id;       // tenant-a's good model (upload id "good-model")
  std::string statistics_id;  // tenant-a's statistics calibration
  v1::Job job;                // tenant-a's SUCCEEDED rtn job
  std::string failed_job_id;  // tenant-a's FAILED job (one-token calibration)
  std::string model_b_id;     // tenant-b's copy of the good model
  // What must be visible at the end: [0] tenant-a, [1] tenant-b.
  std::set<std::string> models[2];
  std::set<std::string> jobs[2];
  // (token, upload id) of every refused upload.
  std::vector<std::pair<std::string, std::string>> refused_uploads;
  std::set<std::string> cases_run;
  bool final_ran = false;
};

Shared* g_shared = nullptr;

// A llama2.c tokenizer of `vocab` pieces that Llama2cTokenizer accepts:
// <unk>, BOS, EOS, the 256 byte-fallback pieces, " " and filler words.
std::string Llama2cTokenizerBytes(int vocab) {
  std::string out;
  auto append = [&out](const void* data, size_t size) {
    out.append(static_cast<const char*>(data), size);
  };
  const int32_t max_length = 8;
  append(&max_length, sizeof(max_length));
  auto add = [&](const std::string& piece, float score) {
    const int32_t length = static_cast<int32_t>(piece.size());
    append(&score, sizeof(score));
    append(&length, sizeof(length));
    out += piece;
  };
  add("<unk>", 0.0f);
  add("\n<s>\n", 0.0f);
  add("\n</s>\n", 0.0f);
  for (int byte = 0; byte < 256; ++byte) {
    char piece[16];
    std::snprintf(piece, sizeof(piece), "<0x%02X>", byte);
    add(piece, 0.0f);
  }
  add(" ", -1.0f);
  for (int i = 260; i < vocab; ++i) add(absl::StrCat("w", i), static_cast<float>(-i));
  return out;
}

class ServerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    g_shared = new Shared;
    Shared& s = *g_shared;
    const std::string model_dir = s.dir.Join("model");
    ASSERT_OK(testing::WriteSyntheticJobInputs(model_dir, s.dir.Join("stats.safetensors")));
    // With a tokenizer, text calibrations reach their own checks.
    ASSERT_OK(WriteFileAtomically(Env::Default(), model_dir + "/tokenizer.bin",
                                  Llama2cTokenizerBytes(kVocab)));
    s.config = testing::ReadTestFile(model_dir + "/config.json");
    s.weights = testing::ReadTestFile(model_dir + "/model.safetensors");
    s.statistics = testing::ReadTestFile(s.dir.Join("stats.safetensors"));
    ASSERT_OK(WriteFileAtomically(Env::Default(), s.dir.Join("tokens"),
                                  "tok-a tenant-a\ntok-b tenant-b\n"));
    ASSERT_OK(WriteFileAtomically(Env::Default(), s.dir.Join("worker_tokens"),
                                  absl::StrCat(kWorkerToken, " worker-1\n")));
    CatqServerOptions options;
    options.listen = "127.0.0.1:0";
    s.data_dir = s.dir.Join("data");
    options.data_dir = s.data_dir;
    options.workers = 2;
    options.tokens_file = s.dir.Join("tokens");
    options.worker_tokens_file = s.dir.Join("worker_tokens");
    options.upload_limits.max_upload_bytes = kMaxUploadBytes;
    options.upload_limits.max_files = kMaxFiles;
    auto server = CatqServer::Start(options);
    ASSERT_OK(server);
    s.server = std::move(*server);
    const std::string address = absl::StrCat("127.0.0.1:", s.server->port());
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(client::kMaxReceiveMessageBytes);
    auto channel =
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments);
    s.stub = v1::Quantizer::NewStub(channel);
    s.worker = v1::Worker::NewStub(channel);
    for (auto [token, out] : {std::pair{kTokenA, &s.a}, std::pair{kTokenB, &s.b}}) {
      client::ClientOptions client_options;
      client_options.server = address;
      client_options.token = token;
      auto connected = client::QuantizerClient::Connect(client_options);
      ASSERT_OK(connected);
      *out = std::move(*connected);
    }
  }

  void TearDown() override {
    if (g_shared != nullptr && g_shared->server != nullptr) g_shared->server->Shutdown();
    delete g_shared;
    g_shared = nullptr;
  }
};

[[maybe_unused]] ::testing::Environment* const kServerEnvironment =
    ::testing::AddGlobalTestEnvironment(new ServerEnvironment);

int TenantIndex(absl::string_view token) { return token == kTokenB ? 1 : 0; }

// ---------------------------------------------------------------------------
// Calls.

std::unique_ptr<grpc::ClientContext> ContextWithAuthorization(absl::string_view authorization) {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!authorization.empty()) context->AddMetadata("authorization", std::string(authorization));
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  return context;
}

// A context carrying `token` ("": no authorization metadata).
std::unique_ptr<grpc::ClientContext> Context(absl::string_view token) {
  return ContextWithAuthorization(token.empty() ? "" : absl::StrCat("Bearer ", token));
}

// Writes `parts` (stopping when the server has ended the call) and returns
// the call's status.
template <typename Request>
grpc::Status SendStream(grpc::ClientWriter<Request>& writer, const std::vector<Request>& parts) {
  for (const Request& part : parts) {
    if (!writer.Write(part)) break;
  }
  writer.WritesDone();
  return writer.Finish();
}

template <typename Request>
Request HeaderPart(const v1::UploadHeader& header) {
  Request part;
  *part.mutable_header() = header;
  return part;
}

template <typename Request>
Request ChunkPart(uint32_t index, uint64_t offset, std::string data) {
  Request part;
  part.mutable_chunk()->set_file_index(index);
  part.mutable_chunk()->set_offset(offset);
  part.mutable_chunk()->set_data(std::move(data));
  return part;
}

// A header listing `files` with their true sizes and digests.
v1::UploadHeader MakeHeader(const std::string& upload_id, const Files& files) {
  v1::UploadHeader header;
  header.set_upload_id(upload_id);
  header.set_name(upload_id);
  for (const auto& [path, bytes] : files) {
    v1::FileEntry* file = header.add_files();
    file->set_path(path);
    file->set_size(bytes.size());
    file->set_sha256(Sha256Hex(bytes));
  }
  return header;
}

// The header, then every file in chunks of at most 1 MiB, in order.
template <typename Request>
std::vector<Request> UploadParts(const v1::UploadHeader& header, const Files& files) {
  std::vector<Request> parts = {HeaderPart<Request>(header)};
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& bytes = files[i].second;
    for (size_t offset = 0; offset < bytes.size(); offset += kChunkBytes) {
      parts.push_back(
          ChunkPart<Request>(static_cast<uint32_t>(i), offset, bytes.substr(offset, kChunkBytes)));
    }
  }
  return parts;
}

// Remembers a refused upload (of a known tenant) for the final check.
void NoteRefusedUpload(Shared& s, absl::string_view token, const v1::UploadHeader& header) {
  if (token == kTokenA || token == kTokenB) {
    s.refused_uploads.emplace_back(std::string(token), header.upload_id());
  }
}

grpc::Status SendModelParts(Shared& s, absl::string_view token,
                            const std::vector<v1::UploadModelRequest>& parts,
                            std::string* model_id = nullptr) {
  v1::UploadModelResponse response;
  auto context = Context(token);
  auto writer = s.stub->UploadModel(context.get(), &response);
  const grpc::Status status = SendStream(*writer, parts);
  if (status.ok()) {
    s.models[TenantIndex(token)].insert(response.model().model_id());
    if (model_id != nullptr) *model_id = response.model().model_id();
  } else if (!parts.empty() && parts[0].has_header()) {
    NoteRefusedUpload(s, token, parts[0].header());
  }
  return status;
}

grpc::Status UploadModelFiles(Shared& s, const std::string& upload_id, const Files& files,
                              v1::ModelFormat format = v1::MODEL_FORMAT_HF,
                              std::string* model_id = nullptr) {
  v1::UploadHeader header = MakeHeader(upload_id, files);
  header.set_format(format);
  return SendModelParts(s, kTokenA, UploadParts<v1::UploadModelRequest>(header, files), model_id);
}

grpc::Status SendCalibrationParts(Shared& s, absl::string_view token,
                                  const std::vector<v1::UploadCalibrationRequest>& parts,
                                  std::string* calibration_id = nullptr) {
  v1::UploadCalibrationResponse response;
  auto context = Context(token);
  auto writer = s.stub->UploadCalibration(context.get(), &response);
  const grpc::Status status = SendStream(*writer, parts);
  if (status.ok()) {
    if (calibration_id != nullptr) *calibration_id = response.calibration().calibration_id();
  } else if (!parts.empty() && parts[0].has_header()) {
    NoteRefusedUpload(s, token, parts[0].header());
  }
  return status;
}

grpc::Status UploadCalibrationFile(Shared& s, const std::string& upload_id, const std::string& path,
                                   const std::string& bytes, v1::CalibrationKind kind,
                                   std::string* calibration_id = nullptr) {
  const Files files = {{path, bytes}};
  v1::UploadHeader header = MakeHeader(upload_id, files);
  header.set_calibration_kind(kind);
  return SendCalibrationParts(s, kTokenA, UploadParts<v1::UploadCalibrationRequest>(header, files),
                              calibration_id);
}

grpc::Status Submit(Shared& s, const v1::SubmitJobRequest& request,
                    absl::string_view token = kTokenA, std::string* job_id = nullptr) {
  v1::SubmitJobResponse response;
  auto context = Context(token);
  const grpc::Status status = s.stub->SubmitJob(context.get(), request, &response);
  if (status.ok()) {
    s.jobs[TenantIndex(token)].insert(response.job().job_id());
    if (job_id != nullptr) *job_id = response.job().job_id();
  }
  return status;
}

// The code a FAILED job's error starts with ("DATA_LOSS: ...").
grpc::StatusCode CodeOfJobError(absl::string_view error) {
  for (int code = 1; code <= 16; ++code) {
    if (absl::StartsWith(
            error,
            absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(code)), ": "))) {
      return static_cast<grpc::StatusCode>(code);
    }
  }
  return grpc::StatusCode::UNKNOWN;
}

// Follows tenant-a's job to its end: OK when it SUCCEEDED; a FAILED job as
// the code and message of its error.
grpc::Status JobOutcome(Shared& s, const std::string& job_id, v1::Job* out = nullptr) {
  absl::StatusOr<v1::Job> job = s.a->Watch(job_id, nullptr);
  if (!job.ok()) return ToGrpcStatus(job.status());
  if (out != nullptr) *out = *job;
  switch (job->state()) {
    case v1::JOB_STATE_SUCCEEDED:
      return grpc::Status::OK;
    case v1::JOB_STATE_FAILED:
      return grpc::Status(CodeOfJobError(job->error()), job->error());
    default:
      return grpc::Status(grpc::StatusCode::ABORTED,
                          absl::StrCat("job ended ", v1::JobState_Name(job->state())));
  }
}

grpc::Status RunJob(Shared& s, const v1::SubmitJobRequest& request, v1::Job* out = nullptr) {
  std::string job_id;
  const grpc::Status submitted = Submit(s, request, kTokenA, &job_id);
  if (!submitted.ok()) return submitted;
  return JobOutcome(s, job_id, out);
}

grpc::Status GetJob(Shared& s, absl::string_view token, const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job response;
  return s.stub->GetJob(Context(token).get(), request, &response);
}

grpc::Status CancelJob(Shared& s, absl::string_view token, const std::string& job_id) {
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::Job response;
  return s.stub->CancelJob(Context(token).get(), request, &response);
}

grpc::Status WatchJob(Shared& s, absl::string_view token, const std::string& job_id) {
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  auto context = Context(token);
  auto reader = s.stub->WatchJob(context.get(), request);
  v1::JobEvent event;
  while (reader->Read(&event)) {
  }
  return reader->Finish();
}

grpc::Status GetUpload(Shared& s, absl::string_view token, const std::string& upload_id,
                       v1::Upload* response = nullptr) {
  v1::GetUploadRequest request;
  request.set_upload_id(upload_id);
  v1::Upload ignored;
  return s.stub->GetUpload(Context(token).get(), request,
                           response != nullptr ? response : &ignored);
}

grpc::Status DeleteModel(Shared& s, absl::string_view token, const std::string& model_id) {
  v1::DeleteModelRequest request;
  request.set_model_id(model_id);
  v1::DeleteModelResponse response;
  return s.stub->DeleteModel(Context(token).get(), request, &response);
}

grpc::Status ListJobs(Shared& s, absl::string_view token, int limit,
                      v1::ListJobsResponse* response = nullptr) {
  v1::ListJobsRequest request;
  request.set_limit(limit);
  v1::ListJobsResponse ignored;
  return s.stub->ListJobs(Context(token).get(), request, response != nullptr ? response : &ignored);
}

grpc::Status ListModels(Shared& s, absl::string_view token,
                        v1::ListModelsResponse* response = nullptr) {
  v1::ListModelsResponse ignored;
  return s.stub->ListModels(Context(token).get(), v1::ListModelsRequest(),
                            response != nullptr ? response : &ignored);
}

grpc::Status Fetch(Shared& s, absl::string_view token, const std::string& job_id,
                   const std::string& path, uint64_t offset) {
  v1::FetchResultRequest request;
  request.set_job_id(job_id);
  request.set_path(path);
  request.set_offset(offset);
  auto context = Context(token);
  auto reader = s.stub->FetchResult(context.get(), request);
  v1::FetchResultChunk chunk;
  while (reader->Read(&chunk)) {
  }
  return reader->Finish();
}

// ---------------------------------------------------------------------------
// The good objects, made on first use.

const std::string& GoodModel(Shared& s) {
  if (s.model_id.empty()) {
    auto model = s.a->UploadModel(s.dir.Join("model"), "tiny", v1::MODEL_FORMAT_HF, "good-model");
    EXPECT_OK(model);
    if (model.ok()) {
      s.model_id = model->model_id();
      s.models[0].insert(s.model_id);
    }
  }
  return s.model_id;
}

const std::string& GoodStatistics(Shared& s) {
  if (s.statistics_id.empty()) {
    auto calibration =
        s.a->UploadCalibration(s.dir.Join("stats.safetensors"), v1::CALIBRATION_KIND_STATISTICS,
                               "stats", "good-statistics");
    EXPECT_OK(calibration);
    if (calibration.ok()) s.statistics_id = calibration->calibration_id();
  }
  return s.statistics_id;
}

// Tenant-a's rtn job on the good model, SUCCEEDED.
const v1::Job& GoodJob(Shared& s) {
  if (s.job.job_id().empty()) {
    v1::SubmitJobRequest request;
    request.set_model_id(GoodModel(s));
    const grpc::Status outcome = RunJob(s, request, &s.job);
    EXPECT_TRUE(outcome.ok()) << outcome.error_message();
  }
  return s.job;
}

// Tenant-a's rtn job calibrated on one token id, FAILED.
const std::string& FailedJob(Shared& s) {
  if (s.failed_job_id.empty()) {
    std::string calibration_id;
    const int32_t one_token = 5;
    const grpc::Status uploaded = UploadCalibrationFile(
        s, "one-token", "one-token.bin",
        std::string(reinterpret_cast<const char*>(&one_token), sizeof(one_token)),
        v1::CALIBRATION_KIND_TOKEN_IDS, &calibration_id);
    EXPECT_TRUE(uploaded.ok()) << uploaded.error_message();
    v1::SubmitJobRequest request;
    request.set_model_id(GoodModel(s));
    request.set_calibration_id(calibration_id);
    const grpc::Status submitted = Submit(s, request, kTokenA, &s.failed_job_id);
    EXPECT_TRUE(submitted.ok()) << submitted.error_message();
    v1::Job job;
    (void)JobOutcome(s, s.failed_job_id, &job);
    EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED) << job.error();
  }
  return s.failed_job_id;
}

const std::string& GoodModelOfB(Shared& s) {
  if (s.model_b_id.empty()) {
    auto model =
        s.b->UploadModel(s.dir.Join("model"), "tiny-b", v1::MODEL_FORMAT_HF, "good-model-b");
    EXPECT_OK(model);
    if (model.ok()) {
      s.model_b_id = model->model_id();
      s.models[1].insert(s.model_b_id);
    }
  }
  return s.model_b_id;
}

// ---------------------------------------------------------------------------
// Safetensors surgery: an 8-byte little-endian header length, the JSON
// header, the data.

struct SafetensorsParts {
  nlohmann::ordered_json header;
  std::string data;
};

SafetensorsParts SplitSafetensors(const std::string& bytes) {
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<uint8_t>(bytes[i]);
  SafetensorsParts parts;
  parts.header = nlohmann::ordered_json::parse(bytes.substr(8, length));
  parts.data = bytes.substr(8 + length);
  return parts;
}

std::string LengthPrefixed(absl::string_view header, uint64_t length) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((length >> (8 * i)) & 0xFF));
  out.append(header.data(), header.size());
  return out;
}

std::string JoinSafetensors(const SafetensorsParts& parts) {
  std::string header = parts.header.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  return LengthPrefixed(header, header.size()) + parts.data;
}

std::string EditSafetensors(const std::string& bytes,
                            const std::function<void(SafetensorsParts&)>& edit) {
  SafetensorsParts parts = SplitSafetensors(bytes);
  edit(parts);
  return JoinSafetensors(parts);
}

uint64_t DataBegin(const SafetensorsParts& parts, const std::string& tensor) {
  return parts.header.at(tensor).at("data_offsets").at(0).get<uint64_t>();
}

template <typename T>
T ReadElement(const SafetensorsParts& parts, const std::string& tensor, size_t index) {
  T value;
  std::memcpy(&value, parts.data.data() + DataBegin(parts, tensor) + index * sizeof(T), sizeof(T));
  return value;
}

template <typename T>
void WriteElement(SafetensorsParts& parts, const std::string& tensor, size_t index, T value) {
  std::memcpy(parts.data.data() + DataBegin(parts, tensor) + index * sizeof(T), &value, sizeof(T));
}

// The good model with element `index` of `tensor` (F32) set to `value`.
Files ModelWithElement(const Shared& s, const std::string& tensor, size_t index, float value) {
  const std::string weights = EditSafetensors(s.weights, [&](SafetensorsParts& parts) {
    EXPECT_EQ(parts.header.at(tensor).at("dtype"), "F32");
    WriteElement(parts, tensor, index, value);
  });
  return {{"config.json", s.config}, {"model.safetensors", weights}};
}

Files ModelWithWeights(const Shared& s, std::string weights) {
  return {{"config.json", s.config}, {"model.safetensors", std::move(weights)}};
}

Files ModelWithConfig(const Shared& s, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json config = nlohmann::json::parse(s.config);
  edit(config);
  return {{"config.json", config.dump()}, {"model.safetensors", s.weights}};
}

// A statistics file for every site of the tiny model's two layers, but of
// dimension 16 at each (as if collected on another model).
std::string StatisticsOfAnotherModel(const Shared& s) {
  std::map<std::string, SiteStatistics> sites;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (int layer = 0; layer < 2; ++layer) {
    for (const char* site : {"attn_in", "attn_out", "mlp_in", "mlp_out"}) {
      auto stats = SiteStatistics::Create(16);
      EXPECT_OK(stats);
      if (!stats.ok()) return "";
      RowMatrixXf x(8, 16);
      for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
      EXPECT_OK(stats->Accumulate(x));
      sites.emplace(absl::StrCat("model.layers.", layer, ".", site), std::move(*stats));
    }
  }
  const std::string path = s.dir.Join("other-model-stats.safetensors");
  EXPECT_OK(WriteSiteStatistics(Env::Default(), path, sites));
  return testing::ReadTestFile(path);
}

std::string Int32s(std::initializer_list<int32_t> ids) {
  std::string out;
  for (int32_t id : ids) out.append(reinterpret_cast<const char*>(&id), sizeof(id));
  return out;
}

// A header of one file `config.json` of `size` bytes whose digest no upload
// ever matches.
v1::UploadHeader OneFileHeader(const std::string& upload_id, uint64_t size) {
  v1::UploadHeader header;
  header.set_upload_id(upload_id);
  header.set_name(upload_id);
  header.set_format(v1::MODEL_FORMAT_HF);
  v1::FileEntry* file = header.add_files();
  file->set_path("config.json");
  file->set_size(size);
  file->set_sha256(Sha256Hex(absl::StrCat("never uploaded: ", upload_id)));
  return header;
}

grpc::Status SendOneFileModel(Shared& s, const v1::UploadHeader& header,
                              std::vector<v1::UploadModelRequest> chunks) {
  std::vector<v1::UploadModelRequest> parts = {HeaderPart<v1::UploadModelRequest>(header)};
  for (v1::UploadModelRequest& chunk : chunks) parts.push_back(std::move(chunk));
  return SendModelParts(s, kTokenA, parts);
}

v1::UploadModelRequest ModelChunk(uint32_t index, uint64_t offset, std::string data) {
  return ChunkPart<v1::UploadModelRequest>(index, offset, std::move(data));
}

// A SubmitJob on the good model, changed by `edit`.
grpc::Status SubmitEdited(Shared& s, const std::function<void(v1::SubmitJobRequest&)>& edit) {
  v1::SubmitJobRequest request;
  request.set_model_id(GoodModel(s));
  edit(request);
  return Submit(s, request);
}

// ---------------------------------------------------------------------------
// The table.

struct BadInputCase {
  std::string name;
  // Performs the call(s) and returns the status to check. May add its own
  // expectations.
  std::function<grpc::Status(Shared&)> call;
  grpc::StatusCode code;
  // In the message; "$JOB", "$MODEL" and "$FAILED_JOB" stand for the ids of
  // the good job, the good model and the failed job.
  std::string fragment;
  // A second fragment, when one cannot say all (empty: none).
  std::string also;
};

void PrintTo(const BadInputCase& c, std::ostream* os) { *os << c.name; }

std::vector<BadInputCase> MakeCases() {
  using grpc::StatusCode;
  std::vector<BadInputCase> cases;
  auto add = [&cases](std::string name, std::function<grpc::Status(Shared&)> call, StatusCode code,
                      std::string fragment, std::string also = "") {
    cases.push_back({std::move(name), std::move(call), code, std::move(fragment), std::move(also)});
  };

  // --- Authentication, on each kind of call. -------------------------------
  add(
      "ListModelsWithoutToken", [](Shared& s) { return ListModels(s, ""); },
      StatusCode::UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata");
  add(
      "ListJobsWithUnknownToken",
      [](Shared& s) {
        const grpc::Status status = ListJobs(s, "tok-stolen", 0);
        EXPECT_THAT(status.error_message(), Not(HasSubstr("tok-stolen")));
        return status;
      },
      StatusCode::UNAUTHENTICATED, "authorization: unknown token");
  add(
      "GetUploadWithBasicAuthorization",
      [](Shared& s) {
        v1::GetUploadRequest request;
        request.set_upload_id("good-model");
        v1::Upload response;
        return s.stub->GetUpload(ContextWithAuthorization("Basic dG9rLWE=").get(), request,
                                 &response);
      },
      StatusCode::UNAUTHENTICATED, "authorization: expected 'Bearer <token>'");
  add(
      "UploadModelWithoutToken",
      [](Shared& s) {
        const Files files = {{"config.json", s.config}};
        return SendModelParts(
            s, "", UploadParts<v1::UploadModelRequest>(MakeHeader("no-token", files), files));
      },
      StatusCode::UNAUTHENTICATED, "missing 'authorization");
  add(
      "SubmitJobWithWorkerToken",
      [](Shared& s) {
        v1::SubmitJobRequest request;
        request.set_model_id(GoodModel(s));
        return Submit(s, request, kWorkerToken);
      },
      StatusCode::UNAUTHENTICATED, "authorization: unknown token");

  // --- Other tenants' ids are NOT_FOUND. ------------------------------------
  add(
      "GetJobOfOtherTenant", [](Shared& s) { return GetJob(s, kTokenB, GoodJob(s).job_id()); },
      StatusCode::NOT_FOUND, "job '$JOB': not found");
  add(
      "WatchJobOfOtherTenant", [](Shared& s) { return WatchJob(s, kTokenB, GoodJob(s).job_id()); },
      StatusCode::NOT_FOUND, "job '$JOB': not found");
  add(
      "CancelJobOfOtherTenant",
      [](Shared& s) { return CancelJob(s, kTokenB, GoodJob(s).job_id()); }, StatusCode::NOT_FOUND,
      "job '$JOB': not found");
  add(
      "FetchResultOfOtherTenant",
      [](Shared& s) { return Fetch(s, kTokenB, GoodJob(s).job_id(), "", 0); },
      StatusCode::NOT_FOUND, "job '$JOB': not found");
  add(
      "DeleteModelOfOtherTenant", [](Shared& s) { return DeleteModel(s, kTokenB, GoodModel(s)); },
      StatusCode::NOT_FOUND, "model '$MODEL': not found");
  add(
      "GetUploadOfOtherTenant",
      [](Shared& s) {
        GoodModel(s);  // tenant-a's upload "good-model"
        return GetUpload(s, kTokenB, "good-model");
      },
      StatusCode::NOT_FOUND, "upload 'good-model': not found");
  add(
      "SubmitJobOnOtherTenantsModel",
      [](Shared& s) {
        v1::SubmitJobRequest request;
        request.set_model_id(GoodModel(s));
        return Submit(s, request, kTokenB);
      },
      StatusCode::NOT_FOUND, "model '$MODEL': not found");
  add(
      "SubmitJobWithOtherTenantsCalibration",
      [](Shared& s) {
        v1::SubmitJobRequest request;
        request.set_model_id(GoodModelOfB(s));
        request.set_calibration_id(GoodStatistics(s));
        request.mutable_recipe()->set_method("cat");
        return Submit(s, request, kTokenB);
      },
      StatusCode::NOT_FOUND, "calibration '");

  // --- Unknown ids. ----------------------------------------------------------
  add(
      "GetJobUnknownId", [](Shared& s) { return GetJob(s, kTokenA, "j-doesnotexist"); },
      StatusCode::NOT_FOUND, "job 'j-doesnotexist': not found");
  add(
      "CancelJobUnknownId", [](Shared& s) { return CancelJob(s, kTokenA, "j-doesnotexist"); },
      StatusCode::NOT_FOUND, "job 'j-doesnotexist': not found");
  add(
      "WatchJobUnknownId", [](Shared& s) { return WatchJob(s, kTokenA, "j-doesnotexist"); },
      StatusCode::NOT_FOUND, "job 'j-doesnotexist': not found");
  add(
      "FetchResultUnknownJob", [](Shared& s) { return Fetch(s, kTokenA, "j-doesnotexist", "", 0); },
      StatusCode::NOT_FOUND, "job 'j-doesnotexist': not found");
  add(
      "GetUploadUnknownId", [](Shared& s) { return GetUpload(s, kTokenA, "never-sent"); },
      StatusCode::NOT_FOUND, "upload 'never-sent': not found");
  add(
      "DeleteModelUnknownId", [](Shared& s) { return DeleteModel(s, kTokenA, "m-doesnotexist"); },
      StatusCode::NOT_FOUND, "model 'm-doesnotexist': not found");
  add(
      "SubmitJobUnknownModel",
      [](Shared& s) {
        v1::SubmitJobRequest request;
        request.set_model_id("m-doesnotexist");
        return Submit(s, request);
      },
      StatusCode::NOT_FOUND, "model 'm-doesnotexist': not found");
  add(
      "SubmitJobUnknownCalibration",
      [](Shared& s) {
        return SubmitEdited(s, [](v1::SubmitJobRequest& r) {
          r.set_calibration_id("c-doesnotexist");
          r.mutable_recipe()->set_method("cat");
        });
      },
      StatusCode::NOT_FOUND, "calibration 'c-doesnotexist': not found");

  // --- Results, listing and cancelling. --------------------------------------
  add(
      "FetchOffsetPastTheEnd",
      [](Shared& s) {
        for (const v1::FileEntry& file : GoodJob(s).result_files()) {
          if (file.path() == "model.safetensors") {
            return Fetch(s, kTokenA, s.job.job_id(), file.path(), file.size() + 1);
          }
        }
        return grpc::Status(grpc::StatusCode::INTERNAL, "the good job has no model.safetensors");
      },
      StatusCode::OUT_OF_RANGE, "is past the end of 'model.safetensors'");
  add(
      "FetchUnknownPath",
      [](Shared& s) { return Fetch(s, kTokenA, GoodJob(s).job_id(), "nope.safetensors", 0); },
      StatusCode::NOT_FOUND, "path: job '$JOB' has no result file 'nope.safetensors'");
  add(
      "FetchOffsetWithoutPath",
      [](Shared& s) { return Fetch(s, kTokenA, GoodJob(s).job_id(), "", 7); },
      StatusCode::INVALID_ARGUMENT, "offset: must be 0 without a path");
  add(
      "FetchResultOfFailedJob", [](Shared& s) { return Fetch(s, kTokenA, FailedJob(s), "", 0); },
      StatusCode::FAILED_PRECONDITION, "job '$FAILED_JOB': has no result (state JOB_STATE_FAILED)");
  add(
      "CancelFinishedJob", [](Shared& s) { return CancelJob(s, kTokenA, GoodJob(s).job_id()); },
      StatusCode::FAILED_PRECONDITION, "job '$JOB': already succeeded");
  add(
      "ListJobsNegativeLimit", [](Shared& s) { return ListJobs(s, kTokenA, -1); },
      StatusCode::INVALID_ARGUMENT, "limit: must be >= 0");

  // --- Recipes and other SubmitJob fields. -----------------------------------
  add(
      "RecipeWeightBitsZero",
      [](Shared& s) {
        return SubmitEdited(
            s, [](v1::SubmitJobRequest& r) { r.mutable_recipe()->set_weight_bits(0); });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.weight_bits: 0 is outside [2, 8]");
  add(
      "RecipeWeightBitsNine",
      [](Shared& s) {
        return SubmitEdited(
            s, [](v1::SubmitJobRequest& r) { r.mutable_recipe()->set_weight_bits(9); });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.weight_bits: 9 is outside [2, 8]");
  add(
      "RecipeBlockSizeZero",
      [](Shared& s) {
        return SubmitEdited(s, [&s](v1::SubmitJobRequest& r) {
          r.set_calibration_id(GoodStatistics(s));
          r.mutable_recipe()->set_method("cat");
          r.mutable_recipe()->set_block_size(0);
        });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.block_size: 0 must be >= 1");
  add(
      "RecipeNegativeDamping",
      [](Shared& s) {
        return SubmitEdited(s, [&s](v1::SubmitJobRequest& r) {
          r.set_calibration_id(GoodStatistics(s));
          r.mutable_recipe()->set_method("cat");
          r.mutable_recipe()->set_damping(-0.5);
        });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.damping: -0.5 must be in [0, 1e6]");
  add(
      "RecipeNanDamping",
      [](Shared& s) {
        return SubmitEdited(s, [](v1::SubmitJobRequest& r) {
          r.mutable_recipe()->set_damping(std::numeric_limits<double>::quiet_NaN());
        });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.damping: nan must be in [0, 1e6]");
  // k > d is no error: cat-method.md and core/cat/recipe.h define a block
  // size at or above a site's dimension as full CAT, so the job runs.
  add(
      "RecipeBlockSizeAboveEveryDimIsFullCat",
      [](Shared& s) {
        v1::SubmitJobRequest request;
        request.set_model_id(GoodModel(s));
        request.set_calibration_id(GoodStatistics(s));
        request.mutable_recipe()->set_method("cat");
        request.mutable_recipe()->set_block_size(1000);
        return RunJob(s, request);
      },
      StatusCode::OK, "");
  add(
      "RecipeUnknownMethod",
      [](Shared& s) {
        return SubmitEdited(s,
                            [](v1::SubmitJobRequest& r) { r.mutable_recipe()->set_method("awq"); });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.method: \"awq\" is not one of");
  add(
      "RecipeUnknownWeightQuantizer",
      [](Shared& s) {
        return SubmitEdited(
            s, [](v1::SubmitJobRequest& r) { r.mutable_recipe()->set_weight_quantizer("hqq"); });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.weight_quantizer: \"hqq\"");
  add(
      "RecipeActivationBitsOne",
      [](Shared& s) {
        return SubmitEdited(
            s, [](v1::SubmitJobRequest& r) { r.mutable_recipe()->set_activation_bits(1); });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.activation_bits: 1 must be in [2, 8]");
  add(
      "RecipeWeightGroupSizeZero",
      [](Shared& s) {
        return SubmitEdited(
            s, [](v1::SubmitJobRequest& r) { r.mutable_recipe()->set_weight_group_size(0); });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.weight_group_size: 0 must be -1");
  add(
      "RecipeUnknownScaleDtype",
      [](Shared& s) {
        return SubmitEdited(
            s, [](v1::SubmitJobRequest& r) { r.mutable_recipe()->set_scale_dtype("F8"); });
      },
      StatusCode::INVALID_ARGUMENT, "recipe.scale_dtype: \"F8\"");
  add(
      "CatWithoutCalibration",
      [](Shared& s) {
        return SubmitEdited(s,
                            [](v1::SubmitJobRequest& r) { r.mutable_recipe()->set_method("cat"); });
      },
      StatusCode::INVALID_ARGUMENT, "calibration_id: recipe.method 'cat'");
  add(
      "SubmitJobWithoutModelId", [](Shared& s) { return Submit(s, v1::SubmitJobRequest()); },
      StatusCode::INVALID_ARGUMENT, "model_id: required");
  add(
      "NegativeCalibrationOptions",
      [](Shared& s) {
        return SubmitEdited(s, [](v1::SubmitJobRequest& r) {
          r.mutable_calibration_options()->set_max_tokens(-1);
        });
      },
      StatusCode::INVALID_ARGUMENT, "calibration_options: counts must be >= 0");
  add(
      "EvalCalibrationThatIsNotText",
      [](Shared& s) {
        return SubmitEdited(
            s, [&s](v1::SubmitJobRequest& r) { r.set_eval_calibration_id(GoodStatistics(s)); });
      },
      StatusCode::INVALID_ARGUMENT, "eval_calibration_id: must name a text calibration");
  add(
      "ExportGptqOfHadamard",
      [](Shared& s) {
        return SubmitEdited(s, [](v1::SubmitJobRequest& r) {
          r.mutable_recipe()->set_method("hadamard");
          r.set_export_gptq(true);
        });
      },
      StatusCode::INVALID_ARGUMENT, "export_gptq");
  add(
      "IdempotencyKeyTooLong",
      [](Shared& s) {
        return SubmitEdited(
            s, [](v1::SubmitJobRequest& r) { r.set_idempotency_key(std::string(257, 'k')); });
      },
      StatusCode::INVALID_ARGUMENT, "idempotency_key: at most 256 bytes");
  add(
      "SubmitOverTheUnfinishedJobLimit",
      [](Shared&) {
        // A server of its own whose limit of unfinished jobs is 0.
        testing::TempDir dir;
        EXPECT_OK(testing::WriteSyntheticJobInputs(dir.Join("model"), dir.Join("stats")));
        CatqServerOptions options;
        options.listen = "127.0.0.1:0";
        options.data_dir = dir.Join("data");
        options.workers = 0;
        options.service_limits.max_unfinished_jobs_per_tenant = 0;
        auto server = CatqServer::Start(options);
        EXPECT_OK(server);
        if (!server.ok()) return ToGrpcStatus(server.status());
        client::ClientOptions client_options;
        client_options.server = absl::StrCat("127.0.0.1:", (*server)->port());
        auto client = client::QuantizerClient::Connect(client_options);
        EXPECT_OK(client);
        if (!client.ok()) return ToGrpcStatus(client.status());
        auto model = (*client)->UploadModel(dir.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
        EXPECT_OK(model);
        if (!model.ok()) return ToGrpcStatus(model.status());
        v1::SubmitJobRequest request;
        request.set_model_id(model->model_id());
        EXPECT_EQ((*client)->Submit(request).status().code(), absl::StatusCode::kResourceExhausted);
        request.set_idempotency_key("nightly-1");
        const absl::Status refused = (*client)->Submit(request).status();
        // With an idempotency key naming no job, the refused submit stores
        // nothing either: no job of it shows in ListJobs, and a retry with
        // the same key later runs a job rather than returning a FAILED one.
        auto jobs = (*client)->ListJobs();
        EXPECT_OK(jobs);
        if (jobs.ok()) {
          EXPECT_TRUE(jobs->empty())
              << "a refused submit left job " << jobs->front().job_id() << " ("
              << v1::JobState_Name(jobs->front().state()) << ": " << jobs->front().error() << ")";
        }
        (*server)->Shutdown();
        return ToGrpcStatus(refused);
      },
      StatusCode::RESOURCE_EXHAUSTED, "the limit per tenant is 0");

  // --- Upload streams. --------------------------------------------------------
  add(
      "UploadEmptyStream", [](Shared& s) { return SendModelParts(s, kTokenA, {}); },
      StatusCode::INVALID_ARGUMENT, "header: the first message must be an UploadHeader");
  add(
      "UploadChunkBeforeHeader",
      [](Shared& s) { return SendModelParts(s, kTokenA, {ModelChunk(0, 0, "{}")}); },
      StatusCode::INVALID_ARGUMENT, "header: the first message must be an UploadHeader");
  add(
      "UploadSecondHeader",
      [](Shared& s) {
        const v1::UploadHeader header = OneFileHeader("second-header", 10);
        return SendOneFileModel(
            s, header, {ModelChunk(0, 0, "abc"), HeaderPart<v1::UploadModelRequest>(header)});
      },
      StatusCode::INVALID_ARGUMENT, "header: only the first message may be a header");
  add(
      "UploadIdWithSlash",
      [](Shared& s) { return SendOneFileModel(s, OneFileHeader("../escape", 10), {}); },
      StatusCode::INVALID_ARGUMENT, "header.upload_id: must be 1 to 64 characters");
  add(
      "UploadWithoutName",
      [](Shared& s) {
        v1::UploadHeader header = OneFileHeader("no-name", 10);
        header.clear_name();
        return SendOneFileModel(s, header, {});
      },
      StatusCode::INVALID_ARGUMENT, "header.name: must be 1 to 256 bytes");
  add(
      "UploadWithoutFiles",
      [](Shared& s) {
        v1::UploadHeader header = OneFileHeader("no-files", 10);
        header.clear_files();
        return SendOneFileModel(s, header, {});
      },
      StatusCode::INVALID_ARGUMENT, "header.files: empty");
  add(
      "UploadPathWithDotDot",
      [](Shared& s) {
        v1::UploadHeader header = OneFileHeader("dot-dot", 10);
        header.mutable_files(0)->set_path("../config.json");
        return SendOneFileModel(s, header, {});
      },
      StatusCode::INVALID_ARGUMENT, "header.files[0].path: '../config.json' must be relative");
  add(
      "UploadAbsolutePath",
      [](Shared& s) {
        v1::UploadHeader header = OneFileHeader("absolute", 10);
        header.mutable_files(0)->set_path("/etc/passwd");
        return SendOneFileModel(s, header, {});
      },
      StatusCode::INVALID_ARGUMENT, "header.files[0].path: '/etc/passwd' must be relative");
  add(
      "UploadSamePathTwice",
      [](Shared& s) {
        v1::UploadHeader header = OneFileHeader("twice", 10);
        *header.add_files() = header.files(0);
        return SendOneFileModel(s, header, {});
      },
      StatusCode::INVALID_ARGUMENT, "header.files[1].path: 'config.json' appears twice");
  add(
      "UploadSha256NotHex",
      [](Shared& s) {
        v1::UploadHeader header = OneFileHeader("not-hex", 10);
        header.mutable_files(0)->set_sha256(std::string(64, 'G'));
        return SendOneFileModel(s, header, {});
      },
      StatusCode::INVALID_ARGUMENT, "header.files[0].sha256: must be 64 lowercase hex digits");
  add(
      "OversizeUpload",
      [](Shared& s) {
        return SendOneFileModel(s, OneFileHeader("oversize", kMaxUploadBytes + 1), {});
      },
      StatusCode::RESOURCE_EXHAUSTED,
      absl::StrCat("header.files[0].size: the upload exceeds the server's limit of ",
                   kMaxUploadBytes, " bytes"));
  add(
      "OversizeUploadInTotal",
      [](Shared& s) {
        v1::UploadHeader header = OneFileHeader("oversize-total", kMaxUploadBytes / 2 + 1);
        v1::FileEntry* second = header.add_files();
        *second = header.files(0);
        second->set_path("model.safetensors");
        return SendOneFileModel(s, header, {});
      },
      StatusCode::RESOURCE_EXHAUSTED, "header.files[1].size: the upload exceeds");
  add(
      "UploadTooManyFiles",
      [](Shared& s) {
        v1::UploadHeader header = OneFileHeader("too-many-files", 1);
        for (size_t i = 0; i < kMaxFiles; ++i) {
          v1::FileEntry* file = header.add_files();
          *file = header.files(0);
          file->set_path(absl::StrCat("extra-", i));
        }
        return SendOneFileModel(s, header, {});
      },
      StatusCode::INVALID_ARGUMENT,
      absl::StrCat("header.files: ", kMaxFiles + 1, " files, the limit is ", kMaxFiles));
  add(
      "UploadChunkOutOfOrder",
      [](Shared& s) {
        return SendOneFileModel(s, OneFileHeader("out-of-order", 10), {ModelChunk(0, 4, "abc")});
      },
      StatusCode::FAILED_PRECONDITION, "chunk: file 'config.json' offset 4, expected 0");
  add(
      "UploadChunkRepeated",
      [](Shared& s) {
        return SendOneFileModel(s, OneFileHeader("repeated", 10),
                                {ModelChunk(0, 0, "abc"), ModelChunk(0, 0, "abc")});
      },
      StatusCode::FAILED_PRECONDITION, "chunk: file 'config.json' offset 0, expected 3");
  add(
      "UploadChunkFileIndexOutOfRange",
      [](Shared& s) {
        return SendOneFileModel(s, OneFileHeader("bad-index", 10), {ModelChunk(3, 0, "abc")});
      },
      StatusCode::INVALID_ARGUMENT, "chunk.file_index: 3 but the header lists 1 files");
  add(
      "UploadChunkPastTheFileSize",
      [](Shared& s) {
        return SendOneFileModel(s, OneFileHeader("past-size", 10),
                                {ModelChunk(0, 0, std::string(11, 'x'))});
      },
      StatusCode::INVALID_ARGUMENT,
      "chunk: file 'config.json' offset 0 + 11 bytes runs past its size 10");
  add(
      "UploadChunkOverFourMiB",
      [](Shared& s) {
        return SendOneFileModel(
            s, OneFileHeader("big-chunk", 10),
            {ModelChunk(0, 0, std::string(client::kMaxUploadChunkBytes + 1, 'x'))});
      },
      StatusCode::INVALID_ARGUMENT,
      absl::StrCat("chunk.data: ", client::kMaxUploadChunkBytes + 1, " bytes, at most ",
                   client::kMaxUploadChunkBytes));
  // The message names the file as uploaded and the two digests, never the
  // part file in the server's data dir.
  add(
      "UploadWrongSha256",
      [](Shared& s) {
        // The header promises other bytes than those sent.
        v1::UploadHeader header = OneFileHeader("wrong-sha", s.config.size());
        return SendOneFileModel(s, header, {ModelChunk(0, 0, s.config)});
      },
      StatusCode::INVALID_ARGUMENT,
      "header.files[0].sha256: the received bytes of 'config.json' do not hash to it",
      "(content hashes to ");
  add(
      "UploadEndsBeforeTheLastByte",
      [](Shared& s) {
        return SendOneFileModel(s, OneFileHeader("short", 10), {ModelChunk(0, 0, "abc")});
      },
      StatusCode::FAILED_PRECONDITION,
      "upload 'short': file 'config.json' has 3 of 10 bytes; resume from GetUpload");
  add(
      "UploadResumedWithAnotherHeader",
      [](Shared& s) {
        const grpc::Status first =
            SendOneFileModel(s, OneFileHeader("resumed", 10), {ModelChunk(0, 0, "abc")});
        EXPECT_EQ(first.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
            << first.error_message();
        return SendOneFileModel(s, OneFileHeader("resumed", 12), {});
      },
      StatusCode::FAILED_PRECONDITION, "upload 'resumed': exists with a different header");
  add(
      "UploadEmptyFileWithWrongSha256",
      [](Shared& s) { return SendOneFileModel(s, OneFileHeader("empty-file", 0), {}); },
      StatusCode::INVALID_ARGUMENT,
      "header.files[0].sha256: 'config.json' is empty, whose sha256 is");
  add(
      "UploadModelFormatUnspecified",
      [](Shared& s) {
        return UploadModelFiles(s, "no-format", ModelWithWeights(s, s.weights),
                                v1::MODEL_FORMAT_UNSPECIFIED);
      },
      StatusCode::INVALID_ARGUMENT, "format: must be MODEL_FORMAT_HF or MODEL_FORMAT_LLAMA2C");
  add(
      "Llama2cUploadOfOneFile",
      [](Shared& s) {
        return UploadModelFiles(s, "llama2c-one", {{"model.bin", std::string(64, '\0')}},
                                v1::MODEL_FORMAT_LLAMA2C);
      },
      StatusCode::INVALID_ARGUMENT,
      "files: a llama2c upload is a checkpoint and a tokenizer, got 1");
  // A truncated llama2.c checkpoint is the client's bad input,
  // INVALID_ARGUMENT as for an HF upload, naming the uploaded file, not its
  // blob in the server's data dir.
  add(
      "Llama2cTruncatedCheckpoint",
      [](Shared& s) {
        return UploadModelFiles(s, "llama2c-truncated",
                                {{"model.bin", std::string(12, '\x01')},
                                 {"tokenizer.bin", Llama2cTokenizerBytes(kVocab)}},
                                v1::MODEL_FORMAT_LLAMA2C);
      },
      StatusCode::INVALID_ARGUMENT, "model.bin (llama2c): ");

  // --- Malformed safetensors. ---------------------------------------------------
  add(
      "SafetensorsShorterThanTheLengthField",
      [](Shared& s) {
        return UploadModelFiles(s, "st-short", ModelWithWeights(s, std::string("\x10\0\0\0\0", 5)));
      },
      StatusCode::INVALID_ARGUMENT,
      "model.safetensors: file is 5 bytes, too short for the 8-byte header length");
  add(
      "SafetensorsHeaderLengthPastTheEnd",
      [](Shared& s) {
        return UploadModelFiles(s, "st-length",
                                ModelWithWeights(s, LengthPrefixed("{}      ", 4096)));
      },
      StatusCode::INVALID_ARGUMENT,
      "model.safetensors: header length 4096 at offset 0 exceeds file size 16");
  add(
      "SafetensorsHeaderNotJson",
      [](Shared& s) {
        return UploadModelFiles(s, "st-json", ModelWithWeights(s, LengthPrefixed("nonsense", 8)));
      },
      StatusCode::INVALID_ARGUMENT, "model.safetensors: header is not valid JSON");
  add(
      "SafetensorsTruncatedData",
      [](Shared& s) {
        return UploadModelFiles(s, "st-truncated",
                                ModelWithWeights(s, s.weights.substr(0, s.weights.size() / 2)));
      },
      StatusCode::INVALID_ARGUMENT, "end past the data buffer of");
  add(
      "SafetensorsOffsetsPastTheEnd",
      [](Shared& s) {
        return UploadModelFiles(
            s, "st-offsets",
            ModelWithWeights(
                s, EditSafetensors(s.weights, [](SafetensorsParts& p) {
                  const uint64_t size = p.data.size();
                  p.header[kQProj]["data_offsets"] = {size, size + kHidden * kHidden * 4};
                })));
      },
      StatusCode::INVALID_ARGUMENT, absl::StrCat("tensor \"", kQProj, "\": data_offsets"),
      "end past the data buffer of");
  add(
      "SafetensorsOverlappingOffsets",
      [](Shared& s) {
        return UploadModelFiles(
            s, "st-overlap",
            ModelWithWeights(
                s, EditSafetensors(s.weights, [](SafetensorsParts& p) {
                  // Moves q_proj 4 bytes back, into the tensor before it.
                  auto& offsets = p.header[kQProj]["data_offsets"];
                  offsets = {offsets[0].get<uint64_t>() - 4, offsets[1].get<uint64_t>() - 4};
                })));
      },
      StatusCode::INVALID_ARGUMENT, absl::StrCat("tensor \"", kQProj, "\": data_offsets"),
      "overlap tensor");
  add(
      "WeightOfDtypeI32",
      [](Shared& s) {
        return UploadModelFiles(
            s, "st-i32", ModelWithWeights(s, EditSafetensors(s.weights, [](SafetensorsParts& p) {
                                            p.header[kQProj]["dtype"] = "I32";
                                          })));
      },
      StatusCode::INVALID_ARGUMENT,
      absl::StrCat(kQProj, ": dtype I32 is not a float type (F32, F16, BF16)"));
  add(
      "WeightOfAnotherShape",
      [](Shared& s) {
        return UploadModelFiles(
            s, "st-shape",
            ModelWithWeights(s, EditSafetensors(s.weights, [](SafetensorsParts& p) {
                               p.header[kQProj]["shape"] = {kHidden / 2, kHidden * 2};
                             })));
      },
      StatusCode::INVALID_ARGUMENT,
      absl::StrCat(kQProj, ": expected shape [64, 64], got [32, 128]"));
  // "missing from the upload", not from the server's model directory.
  add(
      "MissingTensor",
      [](Shared& s) {
        return UploadModelFiles(
            s, "st-missing",
            ModelWithWeights(
                s, EditSafetensors(s.weights, [](SafetensorsParts& p) {
                  nlohmann::ordered_json renamed = nlohmann::ordered_json::object();
                  for (const auto& item : p.header.items()) {
                    renamed[item.key() == "model.norm.weight" ? "model.final_norm.weight"
                                                              : item.key()] = item.value();
                  }
                  p.header = renamed;
                })));
      },
      StatusCode::INVALID_ARGUMENT, "model.norm.weight: missing from the upload");
  // As MissingTensor, the message does not name the server's directory.
  add(
      "NoSafetensorsFile",
      [](Shared& s) {
        return UploadModelFiles(s, "no-weights", {{"config.json", s.config}});
      },
      StatusCode::INVALID_ARGUMENT, "no model.safetensors.index.json or model.safetensors");

  // --- config.json against the tensors and the architecture. ------------------
  add(
      "ConfigHiddenSizeDisagreesWithTensors",
      [](Shared& s) {
        return UploadModelFiles(
            s, "cfg-hidden", ModelWithConfig(s, [](nlohmann::json& c) { c["hidden_size"] = 96; }));
      },
      StatusCode::INVALID_ARGUMENT,
      "model.embed_tokens.weight: expected shape [512, 96], got [512, 64]");
  // As MissingTensor, the message does not name the server's directory.
  add(
      "ConfigHasMoreLayersThanTensors",
      [](Shared& s) {
        return UploadModelFiles(s, "cfg-layers", ModelWithConfig(s, [](nlohmann::json& c) {
                                  c["num_hidden_layers"] = 3;
                                }));
      },
      StatusCode::INVALID_ARGUMENT,
      "model.layers.2.input_layernorm.weight: missing from the upload");
  add(
      "ConfigModelTypeMistral",
      [](Shared& s) {
        return UploadModelFiles(s, "cfg-mistral", ModelWithConfig(s, [](nlohmann::json& c) {
                                  c["model_type"] = "mistral";
                                }));
      },
      StatusCode::INVALID_ARGUMENT, "config.json: model_type \"mistral\" is not supported");
  add(
      "ConfigArchitectureGpt2",
      [](Shared& s) {
        return UploadModelFiles(s, "cfg-gpt2", ModelWithConfig(s, [](nlohmann::json& c) {
                                  c["architectures"] = {"GPT2LMHeadModel"};
                                }));
      },
      StatusCode::INVALID_ARGUMENT,
      "config.json: architecture \"GPT2LMHeadModel\" is not supported");
  add(
      "ConfigNotJson",
      [](Shared& s) {
        return UploadModelFiles(
            s, "cfg-json",
            {{"config.json", "{\"hidden_size\": "}, {"model.safetensors", s.weights}});
      },
      StatusCode::INVALID_ARGUMENT, "config.json: not valid JSON");
  add(
      "NoConfig",
      [](Shared& s) {
        return UploadModelFiles(s, "no-config", {{"model.safetensors", s.weights}});
      },
      StatusCode::INVALID_ARGUMENT, "config.json");

  // --- NaN and Inf weights: accepted at upload (the weights are read when
  // a job needs them), the job fails naming the tensor and the element. ---
  add(
      "NanWeightFailsTheJob",
      [](Shared& s) {
        std::string model_id;
        const grpc::Status uploaded = UploadModelFiles(
            s, "nan-weight",
            ModelWithElement(s, kQProj, 0, std::numeric_limits<float>::quiet_NaN()),
            v1::MODEL_FORMAT_HF, &model_id);
        if (!uploaded.ok()) return uploaded;
        v1::SubmitJobRequest request;
        request.set_model_id(model_id);
        return RunJob(s, request);
      },
      StatusCode::DATA_LOSS, absl::StrCat(kQProj, ": element 0 is nan"));
  add(
      "InfWeightFailsTheJob",
      [](Shared& s) {
        std::string model_id;
        const grpc::Status uploaded =
            UploadModelFiles(s, "inf-weight",
                             ModelWithElement(s, "model.layers.1.mlp.down_proj.weight", 7,
                                              -std::numeric_limits<float>::infinity()),
                             v1::MODEL_FORMAT_HF, &model_id);
        if (!uploaded.ok()) return uploaded;
        v1::SubmitJobRequest request;
        request.set_model_id(model_id);
        return RunJob(s, request);
      },
      StatusCode::DATA_LOSS, "model.layers.1.mlp.down_proj.weight: element 7 is -inf");
  // Tensors the output copies unquantized (the embedding, lm_head, norms)
  // are checked for NaN and Inf as the quantized linears are.
  add(
      "NanEmbeddingFailsTheJob",
      [](Shared& s) {
        std::string model_id;
        const grpc::Status uploaded =
            UploadModelFiles(s, "nan-embedding",
                             ModelWithElement(s, "model.embed_tokens.weight", 3,
                                              std::numeric_limits<float>::quiet_NaN()),
                             v1::MODEL_FORMAT_HF, &model_id);
        if (!uploaded.ok()) return uploaded;
        v1::SubmitJobRequest request;
        request.set_model_id(model_id);
        return RunJob(s, request);
      },
      StatusCode::DATA_LOSS, "model.embed_tokens.weight: element 3 is nan");

  // --- Calibration uploads. ----------------------------------------------------
  add(
      "CalibrationOfTwoFiles",
      [](Shared& s) {
        const Files files = {{"a.bin", Int32s({1, 2})}, {"b.bin", Int32s({3, 4})}};
        v1::UploadHeader header = MakeHeader("two-files", files);
        header.set_calibration_kind(v1::CALIBRATION_KIND_TOKEN_IDS);
        return SendCalibrationParts(s, kTokenA,
                                    UploadParts<v1::UploadCalibrationRequest>(header, files));
      },
      StatusCode::INVALID_ARGUMENT,
      "header.files: a calibration upload has exactly one file, got 2");
  add(
      "CalibrationKindUnspecified",
      [](Shared& s) {
        return UploadCalibrationFile(s, "no-kind", "ids.bin", Int32s({1, 2, 3}),
                                     v1::CALIBRATION_KIND_UNSPECIFIED);
      },
      StatusCode::INVALID_ARGUMENT, "header.calibration_kind: must be CALIBRATION_KIND_TEXT");
  add(
      "EmptyTokenIds",
      [](Shared& s) {
        return UploadCalibrationFile(s, "empty-ids", "empty.bin", "",
                                     v1::CALIBRATION_KIND_TOKEN_IDS);
      },
      StatusCode::INVALID_ARGUMENT, "empty.bin: holds no token id");
  add(
      "TokenIdsNotAMultipleOfFourBytes",
      [](Shared& s) {
        return UploadCalibrationFile(s, "odd-ids", "odd.bin", Int32s({1, 2}) + "x",
                                     v1::CALIBRATION_KIND_TOKEN_IDS);
      },
      StatusCode::INVALID_ARGUMENT, "odd.bin: size 9 is not a multiple of 4");
  add(
      "NegativeTokenId",
      [](Shared& s) {
        return UploadCalibrationFile(s, "negative-id", "negative.bin", Int32s({1, -5, 7}),
                                     v1::CALIBRATION_KIND_TOKEN_IDS);
      },
      StatusCode::INVALID_ARGUMENT, "negative.bin: id -5 at byte offset 4");
  add(
      "OneTokenCalibrationFailsTheJob", [](Shared& s) { return JobOutcome(s, FailedJob(s)); },
      StatusCode::INVALID_ARGUMENT, "no document with at least two tokens to calibrate on");
  add(
      "TokenIdOutsideTheVocabularyFailsTheJob",
      [](Shared& s) {
        std::string calibration_id;
        const grpc::Status uploaded =
            UploadCalibrationFile(s, "big-id", "big.bin", Int32s({1, 7, kVocab + 88, 9}),
                                  v1::CALIBRATION_KIND_TOKEN_IDS, &calibration_id);
        if (!uploaded.ok()) return uploaded;
        v1::SubmitJobRequest request;
        request.set_model_id(GoodModel(s));
        request.set_calibration_id(calibration_id);
        return RunJob(s, request);
      },
      StatusCode::INVALID_ARGUMENT,
      absl::StrCat("id ", kVocab + 88, " at byte offset 8 is outside [0, ", kVocab, ")"));
  add(
      "EmptyTextCalibrationFailsTheJob",
      [](Shared& s) {
        std::string calibration_id;
        const grpc::Status uploaded = UploadCalibrationFile(
            s, "empty-text", "empty.txt", "", v1::CALIBRATION_KIND_TEXT, &calibration_id);
        if (!uploaded.ok()) return uploaded;
        v1::SubmitJobRequest request;
        request.set_model_id(GoodModel(s));
        request.set_calibration_id(calibration_id);
        request.mutable_recipe()->set_method("cat");
        return RunJob(s, request);
      },
      StatusCode::INVALID_ARGUMENT,
      "calibration 'empty-text': no document with at least two tokens to calibrate on");

  // --- Statistics files. -------------------------------------------------------
  add(
      "StatisticsNotSymmetric",
      [](Shared& s) {
        const std::string sx = "model.layers.0.attn_in.sx";
        const std::string bad = EditSafetensors(s.statistics, [&sx](SafetensorsParts& p) {
          EXPECT_EQ(p.header.at(sx).at("shape"), nlohmann::ordered_json({kHidden, kHidden}));
          const double s00 = ReadElement<double>(p, sx, 0);
          const double s11 = ReadElement<double>(p, sx, kHidden + 1);
          const double s10 = ReadElement<double>(p, sx, kHidden);
          WriteElement<double>(p, sx, 1, s10 + 0.5 * std::sqrt(s00 * s11));
        });
        return UploadCalibrationFile(s, "asymmetric", "stats.safetensors", bad,
                                     v1::CALIBRATION_KIND_STATISTICS);
      },
      StatusCode::INVALID_ARGUMENT,
      "stats.safetensors: model.layers.0.attn_in.sx: not symmetric at [0, 1]");
  add(
      "StatisticsOfWrongShape",
      [](Shared& s) {
        const std::string bad = EditSafetensors(s.statistics, [](SafetensorsParts& p) {
          p.header["model.layers.0.attn_in.sx"]["shape"] = {kHidden / 2, kHidden * 2};
        });
        return UploadCalibrationFile(s, "stats-shape", "stats.safetensors", bad,
                                     v1::CALIBRATION_KIND_STATISTICS);
      },
      StatusCode::INVALID_ARGUMENT,
      "model.layers.0.attn_in.sx: shape [32, 128] is neither a full matrix");
  add(
      "StatisticsWithoutTokens",
      [](Shared& s) {
        const std::string bad = EditSafetensors(s.statistics, [](SafetensorsParts& p) {
          WriteElement<int64_t>(p, "model.layers.1.mlp_out.tokens", 0, 0);
        });
        return UploadCalibrationFile(s, "stats-tokens", "stats.safetensors", bad,
                                     v1::CALIBRATION_KIND_STATISTICS);
      },
      StatusCode::INVALID_ARGUMENT, "model.layers.1.mlp_out.tokens: 0 tokens, expected at least 1");
  add(
      "StatisticsTruncated",
      [](Shared& s) {
        return UploadCalibrationFile(s, "stats-truncated", "stats.safetensors",
                                     s.statistics.substr(0, s.statistics.size() - 100),
                                     v1::CALIBRATION_KIND_STATISTICS);
      },
      StatusCode::INVALID_ARGUMENT, "stats.safetensors: ", "end past the data buffer");
  add(
      "StatisticsOfAnotherModelFailTheJob",
      [](Shared& s) {
        std::string calibration_id;
        const grpc::Status uploaded = UploadCalibrationFile(
            s, "stats-other-model", "other.safetensors", StatisticsOfAnotherModel(s),
            v1::CALIBRATION_KIND_STATISTICS, &calibration_id);
        if (!uploaded.ok()) return uploaded;
        v1::SubmitJobRequest request;
        request.set_model_id(GoodModel(s));
        request.set_calibration_id(calibration_id);
        request.mutable_recipe()->set_method("cat");
        return RunJob(s, request);
      },
      StatusCode::INVALID_ARGUMENT,
      "model.layers.0.attn_in: dim 16, the model's site has 64 channels");

  // --- catq.v1.Worker. -------------------------------------------------------
  add(
      "WorkerLeaseWithoutToken",
      [](Shared& s) {
        v1::LeaseTaskRequest request;
        v1::LeaseTaskResponse response;
        return s.worker->LeaseTask(Context("").get(), request, &response);
      },
      StatusCode::UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata");
  add(
      "WorkerLeaseWithTenantToken",
      [](Shared& s) {
        v1::LeaseTaskRequest request;
        v1::LeaseTaskResponse response;
        return s.worker->LeaseTask(Context(kTokenA).get(), request, &response);
      },
      StatusCode::UNAUTHENTICATED, "authorization: unknown token");
  add(
      "WorkerLeaseWaitOverTheLimit",
      [](Shared& s) {
        v1::LeaseTaskRequest request;
        request.set_worker_id("w");
        request.set_wait_ms(60001);
        v1::LeaseTaskResponse response;
        return s.worker->LeaseTask(Context(kWorkerToken).get(), request, &response);
      },
      StatusCode::INVALID_ARGUMENT, "wait_ms: 60001 is over the limit of 60000");
  add(
      "WorkerHeartbeatUnknownLeaseStops",
      [](Shared& s) {
        v1::HeartbeatRequest request;
        request.set_lease_id("l-doesnotexist");
        v1::HeartbeatResponse response;
        grpc::Status status = s.worker->Heartbeat(Context(kWorkerToken).get(), request, &response);
        if (status.ok() && response.keep_going()) {
          return grpc::Status(grpc::StatusCode::INTERNAL, "keep_going for an unknown lease");
        }
        return status;
      },
      StatusCode::OK, "");
  add(
      "WorkerReadBlobUnknownLease",
      [](Shared& s) {
        v1::ReadBlobRequest request;
        request.set_lease_id("l-doesnotexist");
        request.set_sha256(Sha256Hex(s.config));
        auto context = Context(kWorkerToken);
        auto reader = s.worker->ReadBlob(context.get(), request);
        v1::BlobChunk chunk;
        while (reader->Read(&chunk)) {
        }
        return reader->Finish();
      },
      StatusCode::NOT_FOUND, "lease_id 'l-doesnotexist': unknown or expired");
  add(
      "WorkerCompleteTaskUnknownLease",
      [](Shared& s) {
        v1::CompleteTaskRequest header;
        header.mutable_header()->set_lease_id("l-doesnotexist");
        header.mutable_header()->set_size(3);
        header.mutable_header()->set_sha256(Sha256Hex("abc"));
        v1::CompleteTaskRequest data;
        data.set_data("abc");
        v1::CompleteTaskResponse response;
        auto context = Context(kWorkerToken);
        auto writer = s.worker->CompleteTask(context.get(), &response);
        return SendStream(*writer, {header, data});
      },
      StatusCode::NOT_FOUND, "lease_id 'l-doesnotexist': unknown or expired");
  add(
      "WorkerCompleteTaskBadSha256",
      [](Shared& s) {
        v1::CompleteTaskRequest header;
        header.mutable_header()->set_lease_id("l-doesnotexist");
        header.mutable_header()->set_size(3);
        header.mutable_header()->set_sha256("ABC");
        v1::CompleteTaskResponse response;
        auto context = Context(kWorkerToken);
        auto writer = s.worker->CompleteTask(context.get(), &response);
        return SendStream(*writer, {header});
      },
      StatusCode::INVALID_ARGUMENT, "header.sha256: 'ABC' is not 64 lowercase hex digits");
  add(
      "WorkerCompleteTaskWithoutHeader",
      [](Shared& s) {
        v1::CompleteTaskRequest data;
        data.set_data("abc");
        v1::CompleteTaskResponse response;
        auto context = Context(kWorkerToken);
        auto writer = s.worker->CompleteTask(context.get(), &response);
        return SendStream(*writer, {data});
      },
      StatusCode::INVALID_ARGUMENT, "header: the first message must be a CompleteTaskHeader");
  add(
      "WorkerFailTaskUnknownLease",
      [](Shared& s) {
        v1::FailTaskRequest request;
        request.set_lease_id("l-doesnotexist");
        request.set_error("boom");
        v1::FailTaskResponse response;
        return s.worker->FailTask(Context(kWorkerToken).get(), request, &response);
      },
      StatusCode::NOT_FOUND, "lease_id 'l-doesnotexist': unknown or expired");
  return cases;
}

const std::vector<BadInputCase>& Cases() {
  static const std::vector<BadInputCase>* const cases = new std::vector<BadInputCase>(MakeCases());
  return *cases;
}

std::string ExpandFragment(Shared& s, const std::string& fragment) {
  std::string out = fragment;
  if (absl::StrContains(out, "$JOB"))
    out = absl::StrReplaceAll(out, {{"$JOB", GoodJob(s).job_id()}});
  if (absl::StrContains(out, "$MODEL")) out = absl::StrReplaceAll(out, {{"$MODEL", GoodModel(s)}});
  if (absl::StrContains(out, "$FAILED_JOB")) {
    out = absl::StrReplaceAll(out, {{"$FAILED_JOB", FailedJob(s)}});
  }
  return out;
}

void RunCase(Shared& s, const BadInputCase& c) {
  s.cases_run.insert(c.name);
  const grpc::Status status = c.call(s);
  EXPECT_EQ(status.error_code(), c.code)
      << "got " << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()))
      << ": " << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(ExpandFragment(s, c.fragment)));
  if (!c.also.empty()) {
    EXPECT_THAT(status.error_message(), HasSubstr(ExpandFragment(s, c.also)));
  }
  // Messages name what the client sent, never where the server keeps it.
  EXPECT_THAT(status.error_message(), Not(HasSubstr(s.dir.path())));
}

class BadInputTest : public ::testing::TestWithParam<BadInputCase> {};

TEST_P(BadInputTest, GetsItsStatusCodeAndMessage) {
  ASSERT_NE(g_shared, nullptr);
  ASSERT_FALSE(g_shared->final_ran) << "BadInputAfterwardsTest must run last";
  RunCase(*g_shared, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Table, BadInputTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<BadInputCase>& info) {
                           return info.param.name;
                         });

std::set<std::string> ListedModels(Shared& s, absl::string_view token) {
  v1::ListModelsResponse response;
  const grpc::Status status = ListModels(s, token, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  std::set<std::string> ids;
  for (const v1::Model& model : response.models()) ids.insert(model.model_id());
  return ids;
}

std::set<std::string> ListedJobs(Shared& s, absl::string_view token) {
  v1::ListJobsResponse response;
  const grpc::Status status = ListJobs(s, token, 1000, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  std::set<std::string> ids;
  for (const v1::Job& job : response.jobs()) ids.insert(job.job_id());
  return ids;
}

// A TEST_P (registered with the table, after it) so that it runs last.
class BadInputAfterwardsTest : public ::testing::TestWithParam<int> {};

TEST_P(BadInputAfterwardsTest, ServerStillServesAndNothingPartialIsVisible) {
  ASSERT_NE(g_shared, nullptr);
  Shared& s = *g_shared;
  // Under ctest each case ran in a process of its own; run here what this
  // process has not, so that the checks below follow every case. Their
  // verdicts belong to their own tests, so here they only make the history.
  {
    ::testing::TestPartResultArray replayed;
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &replayed);
    for (const BadInputCase& c : Cases()) {
      if (!s.cases_run.contains(c.name)) RunCase(s, c);
    }
  }
  s.final_ran = true;

  // A normal job still runs, and its output can be fetched.
  v1::SubmitJobRequest request;
  request.set_model_id(GoodModel(s));
  std::string job_id;
  const grpc::Status submitted = Submit(s, request, kTokenA, &job_id);
  ASSERT_TRUE(submitted.ok()) << submitted.error_message();
  auto job = s.a->Watch(job_id, nullptr);
  ASSERT_OK(job);
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error();
  auto fetched = s.a->Fetch(job_id, s.dir.Join("fetched"));
  ASSERT_OK(fetched);
  EXPECT_GT(fetched->bytes_received, 0u);

  // Each tenant sees exactly what was accepted: no model from a refused
  // upload, no job from a refused submit.
  EXPECT_EQ(ListedModels(s, kTokenA), s.models[0]);
  EXPECT_EQ(ListedModels(s, kTokenB), s.models[1]);
  EXPECT_EQ(ListedJobs(s, kTokenA), s.jobs[0]);
  EXPECT_EQ(ListedJobs(s, kTokenB), s.jobs[1]);
  EXPECT_FALSE(s.refused_uploads.empty());
  for (const auto& [token, upload_id] : s.refused_uploads) {
    SCOPED_TRACE(absl::StrCat("upload '", upload_id, "'"));
    v1::Upload upload;
    const grpc::Status status = GetUpload(s, token, upload_id, &upload);
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) continue;  // refused at the header
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_FALSE(upload.complete());
    EXPECT_EQ(upload.model_id(), "");
    EXPECT_EQ(upload.calibration_id(), "");
  }
  // On disk: a model directory only for a listed model, no temporary blob.
  std::set<std::string> listed = s.models[0];
  listed.insert(s.models[1].begin(), s.models[1].end());
  for (const auto& entry : std::filesystem::directory_iterator(s.data_dir + "/models")) {
    EXPECT_TRUE(listed.contains(entry.path().filename().string())) << entry.path();
  }
  for (const auto& entry : std::filesystem::directory_iterator(s.data_dir + "/blobs/tmp")) {
    ADD_FAILURE() << "temporary blob left: " << entry.path();
  }
}

INSTANTIATE_TEST_SUITE_P(Last, BadInputAfterwardsTest, ::testing::Values(0));

}  // namespace
}  // namespace catq::server
