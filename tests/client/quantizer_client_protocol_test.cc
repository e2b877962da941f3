// QuantizerClient against a scripted stand-in for catq.v1.Quantizer over a
// real (in-process) gRPC channel: what the client sends (token, upload
// header, chunks from the resume offsets, fetch offsets) and what it does
// with what comes back (resumed and corrupt .part files, bad chunks, unsafe
// paths, watch streams). The real server's integration tests live with the
// server; this checks the client's side of the proto's contract.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "client/file_manifest.h"
#include "client/quantizer_client.h"
#include "core/io/sha256.h"
#include "tests/client/fake_quantizer.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq::client {
namespace {

using testing::ChunkSeen;
using testing::FakeQuantizer;
using testing::FakeServer;

constexpr uint64_t kMiB = uint64_t{1} << 20;

std::string Pattern(size_t size, int seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131 + seed * 7) % 251);
  return bytes;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

class QuantizerClientProtocolTest : public ::testing::Test {
 protected:
  QuantizerClientProtocolTest() : server_(&fake_) {
    ClientOptions options;
    options.token = "tok-123";
    client_ = std::make_unique<QuantizerClient>(server_.channel(), options);
  }

  FakeQuantizer fake_;
  FakeServer server_;
  std::unique_ptr<QuantizerClient> client_;
  testing::TempDir dir_;
};

TEST_F(QuantizerClientProtocolTest, UploadSendsEverythingInChunksOfAtMost4MiB) {
  WriteFile(dir_.Join("m/config.json"), "{}");
  WriteFile(dir_.Join("m/model.safetensors"), Pattern(9 * kMiB + 5, 1));
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  absl::StatusOr<v1::Model> model = client_->UploadModel(
      dir_.Join("m"), "llama", v1::MODEL_FORMAT_HF, "",
      [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); });
  ASSERT_OK(model);
  EXPECT_EQ(model->model_id(), "m-new");
  ASSERT_EQ(fake_.headers.size(), 1u);
  const v1::UploadHeader& header = fake_.headers[0];
  EXPECT_EQ(header.upload_id(), DefaultUploadId(header));
  EXPECT_EQ(header.name(), "llama");
  EXPECT_EQ(header.format(), v1::MODEL_FORMAT_HF);
  ASSERT_EQ(header.files_size(), 2);
  EXPECT_EQ(header.files(1).path(), "model.safetensors");
  EXPECT_EQ(header.files(1).sha256(), Sha256Hex(Pattern(9 * kMiB + 5, 1)));
  EXPECT_EQ(fake_.chunks,
            (std::vector<ChunkSeen>{
                {0, 0, 2}, {1, 0, 4 * kMiB}, {1, 4 * kMiB, 4 * kMiB}, {1, 8 * kMiB, kMiB + 5}}));
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), std::make_pair(9 * kMiB + 7, 9 * kMiB + 7));
  // GetUpload and UploadModel both carried the token.
  EXPECT_EQ(fake_.authorizations, (std::vector<std::string>{"Bearer tok-123", "Bearer tok-123"}));
}

TEST_F(QuantizerClientProtocolTest, UploadResumesFromTheOffsetsGetUploadReports) {
  WriteFile(dir_.Join("m/config.json"), "{}");
  WriteFile(dir_.Join("m/model.safetensors"), Pattern(6 * kMiB, 2));
  absl::StatusOr<Manifest> manifest = BuildDirectoryManifest(Env::Default(), dir_.Join("m"));
  ASSERT_OK(manifest);
  v1::Upload partial;
  partial.set_upload_id("resume-me");
  for (const ManifestFile& file : *manifest) *partial.add_files() = file.entry;
  partial.add_received_bytes(2);
  partial.add_received_bytes(kMiB + 3);
  fake_.uploads["resume-me"] = partial;

  ASSERT_OK(client_->UploadModel(dir_.Join("m"), "llama", v1::MODEL_FORMAT_HF, "resume-me"));
  EXPECT_EQ(fake_.chunks,
            (std::vector<ChunkSeen>{{1, kMiB + 3, 4 * kMiB}, {1, 5 * kMiB + 3, kMiB - 3}}));
}

TEST_F(QuantizerClientProtocolTest, ACompletedUploadReturnsItsModelWithoutSendingBytes) {
  WriteFile(dir_.Join("m/config.json"), "{}");
  absl::StatusOr<Manifest> manifest = BuildDirectoryManifest(Env::Default(), dir_.Join("m"));
  ASSERT_OK(manifest);
  v1::UploadHeader header;
  header.set_name("llama");
  header.set_format(v1::MODEL_FORMAT_HF);
  for (const ManifestFile& file : *manifest) *header.add_files() = file.entry;
  v1::Upload done;
  *done.mutable_files() = header.files();
  done.add_received_bytes(2);
  done.set_complete(true);
  done.set_model_id("m-7");
  fake_.uploads[DefaultUploadId(header)] = done;
  fake_.models.emplace_back().set_model_id("m-7");

  absl::StatusOr<v1::Model> model =
      client_->UploadModel(dir_.Join("m"), "llama", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  EXPECT_EQ(model->model_id(), "m-7");
  EXPECT_EQ(fake_.upload_calls, 0);

  fake_.models.clear();
  EXPECT_STATUS(client_->UploadModel(dir_.Join("m"), "llama", v1::MODEL_FORMAT_HF),
                absl::StatusCode::kNotFound, "no longer exists");
}

TEST_F(QuantizerClientProtocolTest, AnUploadIdKnownWithOtherFilesIsRefused) {
  WriteFile(dir_.Join("calib.txt"), "hello\nworld\n");
  v1::Upload other;
  other.add_files()->set_path("calib.txt");
  fake_.uploads["mine"] = other;
  EXPECT_STATUS(client_->UploadCalibration(dir_.Join("calib.txt"), v1::CALIBRATION_KIND_TEXT,
                                           "calib", "mine"),
                absl::StatusCode::kFailedPrecondition, "other files");
  EXPECT_EQ(fake_.upload_calls, 0);
}

TEST_F(QuantizerClientProtocolTest, CalibrationUploadsOneFileWithItsKind) {
  WriteFile(dir_.Join("calib.txt"), "hello\nworld\n");
  absl::StatusOr<v1::Calibration> calibration =
      client_->UploadCalibration(dir_.Join("calib.txt"), v1::CALIBRATION_KIND_TEXT, "calib");
  ASSERT_OK(calibration);
  EXPECT_EQ(calibration->calibration_id(), "c-new");
  ASSERT_EQ(fake_.headers.size(), 1u);
  EXPECT_EQ(fake_.headers[0].calibration_kind(), v1::CALIBRATION_KIND_TEXT);
  EXPECT_EQ(fake_.headers[0].upload_id().substr(0, 6), "calib-");
  EXPECT_EQ(fake_.chunks, (std::vector<ChunkSeen>{{0, 0, 12}}));
}

TEST_F(QuantizerClientProtocolTest, ServerErrorsKeepTheirCodeAndMessageAfterTheRpcName) {
  fake_.submit_status =
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "recipe.weight_bits: 9 is outside [2, 8]");
  EXPECT_STATUS(client_->Submit(v1::SubmitJobRequest()), absl::StatusCode::kInvalidArgument,
                "SubmitJob: INVALID_ARGUMENT: recipe.weight_bits: 9 is outside [2, 8]");
  EXPECT_STATUS(client_->GetJob("j-404"), absl::StatusCode::kNotFound,
                "GetJob: NOT_FOUND: job 'j-404'");
}

TEST_F(QuantizerClientProtocolTest, FetchWritesVerifiedFilesAndSkipsThemOnARerun) {
  fake_.results = {{"model.safetensors", Pattern(1000, 3)}, {"sub/config.json", "{\"a\": 1}"}};
  fake_.SetSucceededJob();
  absl::StatusOr<FetchStats> stats = client_->Fetch("j-1", dir_.Join("out"));
  ASSERT_OK(stats);
  EXPECT_EQ(stats->bytes_received, 1008u);
  EXPECT_EQ(stats->files_already_present, 0);
  EXPECT_EQ(ReadFile(dir_.Join("out/model.safetensors")), Pattern(1000, 3));
  EXPECT_EQ(ReadFile(dir_.Join("out/sub/config.json")), "{\"a\": 1}");
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("out/model.safetensors.part")));

  stats = client_->Fetch("j-1", dir_.Join("out"));
  ASSERT_OK(stats);
  EXPECT_EQ(stats->bytes_received, 0u);
  EXPECT_EQ(stats->files_already_present, 2);
  EXPECT_EQ(fake_.fetches.size(), 2u);
}

TEST_F(QuantizerClientProtocolTest, AFetchCutOffMidwayContinuesFromItsPartFile) {
  fake_.results = {{"model.safetensors", Pattern(1000, 4)}};
  fake_.SetSucceededJob();
  fake_.fail_fetch_after_bytes = 320;
  EXPECT_STATUS(client_->Fetch("j-1", dir_.Join("out")), absl::StatusCode::kUnavailable,
                "FetchResult: UNAVAILABLE: server going away");
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("out/model.safetensors")));
  EXPECT_EQ(ReadFile(dir_.Join("out/model.safetensors.part")), Pattern(1000, 4).substr(0, 320));

  fake_.fail_fetch_after_bytes = -1;
  absl::StatusOr<FetchStats> stats = client_->Fetch("j-1", dir_.Join("out"));
  ASSERT_OK(stats);
  EXPECT_EQ(stats->bytes_received, 680u);
  ASSERT_EQ(fake_.fetches.size(), 2u);
  EXPECT_EQ(fake_.fetches[1].offset(), 320u);
  EXPECT_EQ(fake_.fetches[1].path(), "model.safetensors");
  EXPECT_EQ(ReadFile(dir_.Join("out/model.safetensors")), Pattern(1000, 4));
}

TEST_F(QuantizerClientProtocolTest, ACorruptPartFileIsFetchedAgainFromTheStart) {
  fake_.results = {{"model.safetensors", Pattern(1000, 5)}};
  fake_.SetSucceededJob();
  WriteFile(dir_.Join("out/model.safetensors.part"), std::string(300, 'x'));
  absl::StatusOr<FetchStats> stats = client_->Fetch("j-1", dir_.Join("out"));
  ASSERT_OK(stats);
  EXPECT_EQ(stats->bytes_received, 700u + 1000u);
  ASSERT_EQ(fake_.fetches.size(), 2u);
  EXPECT_EQ(fake_.fetches[0].offset(), 300u);
  EXPECT_EQ(fake_.fetches[1].offset(), 0u);
  EXPECT_EQ(ReadFile(dir_.Join("out/model.safetensors")), Pattern(1000, 5));
}

TEST_F(QuantizerClientProtocolTest, AFirstChunkThatDisagreesWithGetJobIsDataLoss) {
  fake_.results = {{"model.safetensors", Pattern(100, 6)}};
  fake_.SetSucceededJob();
  fake_.wrong_first_chunk_sha = true;
  EXPECT_STATUS(client_->Fetch("j-1", dir_.Join("out")), absl::StatusCode::kDataLoss,
                "model.safetensors: first chunk gives 100 bytes");
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("out/model.safetensors")));
}

TEST_F(QuantizerClientProtocolTest, FetchRefusesResultPathsOutsideTheOutputDirectory) {
  for (const char* path : {"../escape.bin", "/tmp/abs.bin", "a/../../b"}) {
    fake_.results = {{"ok.bin", "fine"}, {path, "evil"}};
    fake_.SetSucceededJob();
    EXPECT_STATUS(client_->Fetch("j-1", dir_.Join("out")), absl::StatusCode::kInvalidArgument,
                  path);
  }
  EXPECT_TRUE(fake_.fetches.empty());
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("out")));
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("escape.bin")));
}

TEST_F(QuantizerClientProtocolTest, FetchOfAJobThatHasNotSucceededIsFailedPrecondition) {
  fake_.job.set_job_id("j-1");
  fake_.job.set_state(v1::JOB_STATE_QUANTIZING);
  EXPECT_STATUS(client_->Fetch("j-1", dir_.Join("out")), absl::StatusCode::kFailedPrecondition,
                "JOB_STATE_QUANTIZING");
}

TEST_F(QuantizerClientProtocolTest, WatchReportsEveryEventAndReturnsTheFinalJob) {
  for (v1::JobState state :
       {v1::JOB_STATE_QUEUED, v1::JOB_STATE_QUANTIZING, v1::JOB_STATE_SUCCEEDED}) {
    v1::JobEvent& event = fake_.events.emplace_back();
    event.mutable_job()->set_job_id("j-1");
    event.mutable_job()->set_state(state);
  }
  fake_.events[1].mutable_task_finished()->set_layer(0);
  std::vector<v1::JobState> seen;
  absl::StatusOr<v1::Job> job =
      client_->Watch("j-1", [&seen](const v1::JobEvent& e) { seen.push_back(e.job().state()); });
  ASSERT_OK(job);
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(seen.size(), 3u);

  fake_.events.pop_back();  // The stream now ends while the job is QUANTIZING.
  EXPECT_STATUS(client_->Watch("j-1", nullptr), absl::StatusCode::kUnavailable,
                "while it is JOB_STATE_QUANTIZING");
}

}  // namespace
}  // namespace catq::client
