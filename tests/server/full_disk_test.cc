// The data dir on a full disk (issue 7, faults): a small tmpfs mounted for
// the test holds the server's data dir. An upload that does not fit and a
// job whose output does not fit fail with a clear reason (no space), leave
// nothing partial visible (no model, no output, no fetchable result), and
// once space is freed the same server runs the job to the same output as
// before. Mounting needs root: elsewhere the test skips, saying so.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/quantizer_client.h"
#include "core/io/env.h"
#include "server/catq_server.h"
#include "tests/util/status_matchers.h"
#include "tests/util/synthetic_inputs.h"
#include "tests/util/test_env.h"

namespace catq::server {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr uint64_t kDiskBytes = 4 << 20;

uint64_t FreeBytes(const std::string& path) {
  struct statvfs fs {};
  if (::statvfs(path.c_str(), &fs) != 0) return 0;
  return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
}

class FullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs for the data dir";
    disk_ = dir_.Join("disk");
    ASSERT_OK(Env::Default()->CreateDirs(disk_));
    const std::string size = absl::StrCat("size=", kDiskBytes);
    if (::mount("tmpfs", disk_.c_str(), "tmpfs", 0, size.c_str()) != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs at " << disk_ << " (" << std::strerror(errno) << ")";
    }
    mounted_ = true;
    ASSERT_OK(testing::WriteSyntheticJobInputs(dir_.Join("model"), dir_.Join("stats.safetensors")));
    CatqServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = disk_ + "/data";
    options.workers = 1;
    auto server = CatqServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
    client::ClientOptions client_options;
    client_options.server = absl::StrCat("127.0.0.1:", server_->port());
    auto client = client::QuantizerClient::Connect(client_options);
    ASSERT_OK(client);
    client_ = std::move(*client);
  }

  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    if (mounted_) ::umount2(disk_.c_str(), MNT_DETACH);
  }

  // Takes all but `leave` bytes of the disk's free space.
  void FillDisk(uint64_t leave) {
    const uint64_t free = FreeBytes(disk_);
    ASSERT_GT(free, leave);
    const int fd = ::open(Filler().c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::posix_fallocate(fd, 0, static_cast<off_t>(free - leave)), 0);
    ::close(fd);
  }
  std::string Filler() const { return disk_ + "/filler"; }

  v1::Job RunJob(const std::string& model_id) {
    v1::SubmitJobRequest request;
    request.set_model_id(model_id);
    auto submitted = client_->Submit(request);
    EXPECT_OK(submitted);
    auto job = client_->Watch(submitted->job().job_id(), nullptr);
    EXPECT_OK(job);
    return *job;
  }

  testing::TempDir dir_;
  std::string disk_;
  bool mounted_ = false;
  std::unique_ptr<CatqServer> server_;
  std::unique_ptr<client::QuantizerClient> client_;
};

TEST_F(FullDiskTest, AnUploadThatDoesNotFitIsRefusedAndLeavesNoModel) {
  // Room for the database's pages, not for the 600 KB model.
  FillDisk(200 << 10);
  auto model = client_->UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kResourceExhausted) << model.status();
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("model.safetensors"));
  auto models = client_->ListModels();
  ASSERT_OK(models);
  EXPECT_TRUE(models->empty());

  // With the space back, the same upload resumes and is accepted.
  ASSERT_OK(Env::Default()->RemoveFile(Filler()));
  EXPECT_OK(client_->UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF).status());
}

TEST_F(FullDiskTest, AJobWhoseOutputDoesNotFitFailsAndTheNextOneSucceeds) {
  auto model = client_->UploadModel(dir_.Join("model"), "tiny", v1::MODEL_FORMAT_HF);
  ASSERT_OK(model);
  FillDisk(120 << 10);  // the 310 KB output does not fit

  const v1::Job failed = RunJob(model->model_id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.error(), AnyOf(HasSubstr("No space"), HasSubstr("no space")));
  EXPECT_EQ(client_->Fetch(failed.job_id(), dir_.Join("failed")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(
      std::filesystem::exists(absl::StrCat(disk_, "/data/jobs/", failed.job_id(), "/output")));

  ASSERT_OK(Env::Default()->RemoveFile(Filler()));
  const v1::Job done = RunJob(model->model_id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_OK(client_->Fetch(done.job_id(), dir_.Join("fetched")).status());
}

}  // namespace
}  // namespace catq::server
