// The server commands of the real `catq` binary (upload, submit, watch, fetch,
// jobs, cancel, quantize --server) against the scripted FakeQuantizer on a
// loopback port: what they send, what they print and how they exit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tests/client/catq_runner.h"
#include "tests/client/fake_quantizer.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

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

v1::JobEvent Event(v1::JobState state, int64_t done) {
  v1::JobEvent event;
  event.mutable_job()->set_job_id("j-1");
  event.mutable_job()->set_state(state);
  event.mutable_job()->set_tasks_done(done);
  event.mutable_job()->set_tasks_total(2);
  return event;
}

class RemoteCliTest : public ::testing::Test {
 protected:
  RemoteCliTest() : server_(&fake_) {
    ::setenv("CATQ_SERVER", server_.address().c_str(), 1);
    ::setenv("CATQ_TOKEN", "sekrit-token", 1);
  }
  ~RemoteCliTest() override {
    ::unsetenv("CATQ_SERVER");
    ::unsetenv("CATQ_TOKEN");
  }

  testing::FakeQuantizer fake_;
  testing::FakeServer server_;
  testing::TempDir dir_;
};

TEST_F(RemoteCliTest, UploadPrintsTheIdAndSendsTheTokenWithoutPrintingIt) {
  WriteFile(dir_.Join("m/config.json"), "{}");
  WriteFile(dir_.Join("m/model.safetensors"), "weights");
  const CommandResult model = RunCatq(absl::StrCat("upload --quiet --model ", dir_.Join("m")));
  ASSERT_EQ(model.exit_code, 0) << model.output;
  EXPECT_EQ(model.output, "m-new\n");
  ASSERT_FALSE(fake_.headers.empty());
  EXPECT_EQ(fake_.headers.back().format(), v1::MODEL_FORMAT_HF);
  EXPECT_EQ(fake_.headers.back().name(), "m");
  for (const std::string& authorization : fake_.authorizations) {
    EXPECT_EQ(authorization, "Bearer sekrit-token");
  }

  WriteFile(dir_.Join("calib.txt"), "one\ntwo\n");
  const CommandResult calib =
      RunCatq(absl::StrCat("upload --json --calib-text ", dir_.Join("calib.txt")));
  ASSERT_EQ(calib.exit_code, 0) << calib.output;
  EXPECT_EQ(ParseJsonOutput(calib)["calibration_id"], "c-new");
  EXPECT_EQ(fake_.headers.back().calibration_kind(), v1::CALIBRATION_KIND_TEXT);
  EXPECT_THAT(model.output + calib.output, Not(HasSubstr("sekrit")));
}

TEST_F(RemoteCliTest, UploadOfALlama2cCheckpointSendsBothFiles) {
  WriteFile(dir_.Join("ckpt/stories.bin"), "checkpoint");
  WriteFile(dir_.Join("tok/tok512.bin"), "tokenizer");
  const CommandResult result =
      RunCatq(absl::StrCat("upload --quiet --model ", dir_.Join("ckpt/stories.bin"),
                           " --tokenizer ", dir_.Join("tok/tok512.bin")));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  ASSERT_FALSE(fake_.headers.empty());
  const v1::UploadHeader& header = fake_.headers.back();
  EXPECT_EQ(header.format(), v1::MODEL_FORMAT_LLAMA2C);
  EXPECT_EQ(header.name(), "stories");
  ASSERT_EQ(header.files_size(), 2);
  EXPECT_EQ(header.files(0).path(), "stories.bin");
  EXPECT_EQ(header.files(1).path(), "tok512.bin");

  const CommandResult no_tokenizer =
      RunCatq(absl::StrCat("upload --model ", dir_.Join("ckpt/stories.bin")));
  EXPECT_EQ(no_tokenizer.exit_code, 1);
  EXPECT_THAT(no_tokenizer.output, HasSubstr("--tokenizer"));
}

TEST_F(RemoteCliTest, SubmitSendsTheRecipeAndPrintsTheJobId) {
  fake_.job.set_job_id("j-1");
  const CommandResult result = RunCatq(
      "submit --model-id m-1 --calib-id c-1 --recipe cat --block-size 32 --a-bits 4 "
      "--calib-samples 64 --idempotency-key k-1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "j-1\n");
  ASSERT_EQ(fake_.submits.size(), 1u);
  const v1::SubmitJobRequest& request = fake_.submits[0];
  EXPECT_EQ(request.model_id(), "m-1");
  EXPECT_EQ(request.calibration_id(), "c-1");
  EXPECT_EQ(request.recipe().method(), "cat");
  EXPECT_EQ(request.recipe().block_size(), 32);
  EXPECT_EQ(request.recipe().activation_bits(), 4);
  EXPECT_EQ(request.calibration_options().sample_tokens(), 64);
  EXPECT_EQ(request.idempotency_key(), "k-1");

  const CommandResult bad = RunCatq("submit --model-id m-1 --w-bits 9");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.output, HasSubstr("bits"));
  EXPECT_EQ(fake_.submits.size(), 1u);
}

TEST_F(RemoteCliTest, WatchPrintsALinePerLayerTaskAndExitsNonZeroWhenTheJobFails) {
  fake_.events = {Event(v1::JOB_STATE_QUEUED, 0), Event(v1::JOB_STATE_QUANTIZING, 1),
                  Event(v1::JOB_STATE_SUCCEEDED, 2)};
  v1::TaskSummary& task = *fake_.events[1].mutable_task_finished();
  task.set_layer(0);
  v1::SiteSummary& site = *task.add_sites();
  site.set_site("attn_in");
  site.set_weight_sqnr_db_mean(19.81);
  site.set_sqnr_after_db(21.3);
  site.set_sqnr_before_db(17.2);
  const CommandResult ok = RunCatq("watch j-1");
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("layer 0"));
  EXPECT_THAT(ok.output, HasSubstr("attn_in 19.81"));
  EXPECT_THAT(ok.output, HasSubstr("attn_in 21.30 (17.20)"));
  EXPECT_THAT(ok.output, HasSubstr("job j-1 SUCCEEDED"));

  fake_.events.back().mutable_job()->set_state(v1::JOB_STATE_FAILED);
  fake_.events.back().mutable_job()->set_error("model.layers.1: boom");
  const CommandResult failed = RunCatq("watch --quiet j-1");
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_EQ(failed.output, "catq: job j-1 FAILED: model.layers.1: boom (ABORTED)\n");

  const CommandResult json = RunCatq("watch --json j-1");
  EXPECT_EQ(json.exit_code, 1);
  EXPECT_THAT(json.output, HasSubstr("\"state\":\"JOB_STATE_FAILED\""));
}

TEST_F(RemoteCliTest, FetchJobsAndCancel) {
  fake_.results = {{"model.safetensors", "packed"}, {"catq_report.json", "{}"}};
  fake_.SetSucceededJob();
  fake_.job.set_model_id("m-1");
  fake_.job.mutable_recipe()->set_method("cat");
  const CommandResult fetch = RunCatq(absl::StrCat("fetch --quiet j-1 --out ", dir_.Join("out")));
  ASSERT_EQ(fetch.exit_code, 0) << fetch.output;
  EXPECT_EQ(ReadFile(dir_.Join("out/model.safetensors")), "packed");

  const CommandResult jobs = RunCatq("jobs --limit 5");
  ASSERT_EQ(jobs.exit_code, 0) << jobs.output;
  EXPECT_THAT(jobs.output, ::testing::ContainsRegex("id +state +tasks +model +method\n"
                                                    "j-1 +SUCCEEDED +0/0 +m-1 +cat\n"));
  EXPECT_EQ(fake_.list_limits, std::vector<int>{5});

  const CommandResult cancel = RunCatq("cancel j-1");
  ASSERT_EQ(cancel.exit_code, 0) << cancel.output;
  EXPECT_EQ(cancel.output, "job j-1 CANCELLED\n");
  const CommandResult missing = RunCatq("cancel j-404");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("CancelJob: NOT_FOUND: job 'j-404'"));
}

TEST_F(RemoteCliTest, CommandsWithoutAServerSaySo) {
  ::unsetenv("CATQ_SERVER");
  const CommandResult result = RunCatq("jobs");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.output, HasSubstr("--server HOST:PORT or set CATQ_SERVER"));
}

// `quantize --server` prints what the in-process run prints for the same
// report, read from the fetched catq_report.json, and derives the same
// idempotency key on a rerun.
TEST_F(RemoteCliTest, QuantizeOnAServerPrintsTheInProcessSummary) {
  ASSERT_EQ(RunCatq(absl::StrCat("synth --preset tiny --out ", dir_.Join("m"))).exit_code, 0);
  const CommandResult local = RunCatq(
      absl::StrCat("quantize --quiet --model ", dir_.Join("m"), " --out ", dir_.Join("local")));
  ASSERT_EQ(local.exit_code, 0) << local.output;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.Join("local"))) {
    fake_.results[entry.path().filename().string()] = ReadFile(entry.path().string());
  }
  fake_.SetSucceededJob();
  WriteFile(dir_.Join("calib.txt"), "one\ntwo\n");

  const std::string remote_args =
      absl::StrCat("quantize --quiet --server ", server_.address(), " --model ", dir_.Join("m"),
                   " --calib-text ", dir_.Join("calib.txt"), " --eval-text ",
                   dir_.Join("calib.txt"), " --out ", dir_.Join("remote"));
  const CommandResult remote = RunCatq(remote_args);
  ASSERT_EQ(remote.exit_code, 0) << remote.output;
  EXPECT_EQ(remote.output,
            absl::StrReplaceAll(local.output, {{dir_.Join("local"), dir_.Join("remote")}}));
  EXPECT_EQ(ReadFile(dir_.Join("remote/catq_report.json")),
            ReadFile(dir_.Join("local/catq_report.json")));

  ASSERT_EQ(fake_.submits.size(), 1u);
  const v1::SubmitJobRequest request = fake_.submits[0];
  EXPECT_EQ(request.model_id(), "m-new");
  EXPECT_EQ(request.calibration_id(), "c-new");
  EXPECT_EQ(request.eval_calibration_id(), "c-new");
  EXPECT_EQ(request.recipe().method(), "rtn");
  EXPECT_EQ(request.idempotency_key().substr(0, 9), "quantize-");
  ASSERT_EQ(RunCatq(remote_args).exit_code, 0);
  ASSERT_EQ(fake_.submits.size(), 2u);
  EXPECT_EQ(fake_.submits[1].idempotency_key(), request.idempotency_key());
}

}  // namespace
}  // namespace catq
