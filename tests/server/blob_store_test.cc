#include "server/blob_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq::server {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

// FIPS 180-2 test vectors.
constexpr char kEmptySha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbcSha[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<BlobStore>> blobs =
        BlobStore::Open(Env::Default(), dir_.Join("blobs"));
    ASSERT_OK(blobs);
    blobs_ = *std::move(blobs);
  }
  std::vector<std::string> TempFiles() { return *Env::Default()->ListDir(dir_.Join("blobs/tmp")); }
  // WriteTemp: a fresh temporary holding `bytes`, as an upload would leave it.
  std::string WriteTemp(const std::string& bytes) {
    const std::string path = blobs_->NewTempPath();
    EXPECT_OK(WriteFileAtomically(Env::Default(), path, bytes));
    return path;
  }

  testing::TempDir dir_;
  std::unique_ptr<BlobStore> blobs_;
};

TEST_F(BlobStoreTest, PutBytesStoresUnderTheDigest) {
  absl::StatusOr<std::string> sha = blobs_->PutBytes("abc");
  ASSERT_OK(sha);
  EXPECT_EQ(*sha, kAbcSha);
  EXPECT_TRUE(blobs_->Contains(kAbcSha));
  const std::string expected_path = dir_.Join(absl::StrCat("blobs/ba/", kAbcSha));
  EXPECT_EQ(*blobs_->Path(kAbcSha), expected_path);
  EXPECT_EQ(*blobs_->VerifiedPath(kAbcSha), expected_path);
  EXPECT_EQ(*blobs_->ReadVerified(kAbcSha), "abc");
  EXPECT_THAT(TempFiles(), IsEmpty());
  // The same content again is a no-op.
  EXPECT_EQ(*blobs_->PutBytes("abc"), kAbcSha);
  EXPECT_EQ(*blobs_->ReadVerified(kAbcSha), "abc");
}

TEST_F(BlobStoreTest, EmptyAndBinaryContent) {
  EXPECT_EQ(*blobs_->PutBytes(""), kEmptySha);
  EXPECT_EQ(*blobs_->ReadVerified(kEmptySha), "");
  const std::string binary("\0\xff\x01\n", 4);
  absl::StatusOr<std::string> sha = blobs_->PutBytes(binary);
  ASSERT_OK(sha);
  EXPECT_EQ(*blobs_->ReadVerified(*sha), binary);
}

TEST_F(BlobStoreTest, PutFileMovesAVerifiedFileIn) {
  const std::string tmp = WriteTemp("abc");
  EXPECT_THAT(tmp, StartsWith(dir_.Join("blobs/tmp/")));
  ASSERT_OK(blobs_->PutFile(tmp, kAbcSha));
  EXPECT_FALSE(Env::Default()->FileExists(tmp));
  EXPECT_EQ(*blobs_->ReadVerified(kAbcSha), "abc");
  // Moving in content the store already has replaces it with the same bytes.
  const std::string again = WriteTemp("abc");
  ASSERT_OK(blobs_->PutFile(again, kAbcSha));
  EXPECT_FALSE(Env::Default()->FileExists(again));
  EXPECT_OK(blobs_->VerifiedPath(kAbcSha));
}

TEST_F(BlobStoreTest, PutFileWithAWrongDigestLeavesTheFile) {
  const std::string tmp = WriteTemp("abd");
  absl::Status status = blobs_->PutFile(tmp, kAbcSha);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(kAbcSha));
  EXPECT_THAT(std::string(status.message()), HasSubstr(Sha256Hex("abd")));
  EXPECT_TRUE(Env::Default()->FileExists(tmp));
  EXPECT_FALSE(blobs_->Contains(kAbcSha));
  EXPECT_STATUS(blobs_->PutFile(tmp, "not-a-digest"), absl::StatusCode::kInvalidArgument,
                "not-a-digest");
  EXPECT_TRUE(Env::Default()->FileExists(tmp));
  EXPECT_STATUS(blobs_->PutFile(dir_.Join("missing"), kAbcSha), absl::StatusCode::kNotFound,
                "missing");
}

TEST_F(BlobStoreTest, CorruptedBlobIsDataLoss) {
  ASSERT_OK(blobs_->PutBytes("abc"));
  const std::string path = *blobs_->Path(kAbcSha);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(1);
    file.put('B');  // "aBc"
  }
  const std::string actual = Sha256Hex("aBc");
  EXPECT_STATUS(blobs_->VerifiedPath(kAbcSha), absl::StatusCode::kDataLoss,
                absl::StrCat("blob ", kAbcSha, ": content hashes to ", actual));
  EXPECT_STATUS(blobs_->ReadVerified(kAbcSha), absl::StatusCode::kDataLoss, actual);
}

TEST_F(BlobStoreTest, MissingAndMalformedDigests) {
  EXPECT_FALSE(blobs_->Contains(kAbcSha));
  EXPECT_FALSE(blobs_->Contains("../etc"));
  EXPECT_STATUS(blobs_->VerifiedPath(kAbcSha), absl::StatusCode::kNotFound,
                absl::StrCat("blob ", kAbcSha, ": not found"));
  EXPECT_STATUS(blobs_->ReadVerified(kAbcSha), absl::StatusCode::kNotFound, "not found");
  EXPECT_STATUS(blobs_->Path("ABC"), absl::StatusCode::kInvalidArgument, "blob digest 'ABC'");
  EXPECT_STATUS(blobs_->VerifiedPath("ABC"), absl::StatusCode::kInvalidArgument, "ABC");
  EXPECT_STATUS(blobs_->Remove("ABC"), absl::StatusCode::kInvalidArgument, "ABC");
}

TEST_F(BlobStoreTest, RemoveDeletesAndAbsentIsOk) {
  ASSERT_OK(blobs_->PutBytes("abc"));
  ASSERT_OK(blobs_->Remove(kAbcSha));
  EXPECT_FALSE(blobs_->Contains(kAbcSha));
  ASSERT_OK(blobs_->Remove(kAbcSha));
}

TEST_F(BlobStoreTest, OpenIsIdempotentAndKeepsBlobs) {
  ASSERT_OK(blobs_->PutBytes("abc"));
  absl::StatusOr<std::unique_ptr<BlobStore>> again =
      BlobStore::Open(Env::Default(), dir_.Join("blobs"));
  ASSERT_OK(again);
  EXPECT_EQ((*again)->root(), dir_.Join("blobs"));
  EXPECT_EQ(*(*again)->ReadVerified(kAbcSha), "abc");
}

// A disk whose fsync fails: the put fails and leaves neither a blob nor a
// temporary behind.
class FailingSyncEnv : public EnvWrapper {
 public:
  using EnvWrapper::EnvWrapper;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    class FailingSync : public WritableFile {
     public:
      explicit FailingSync(std::unique_ptr<WritableFile> real) : real_(std::move(real)) {}
      absl::Status Append(absl::string_view data) override { return real_->Append(data); }
      absl::Status Sync() override { return absl::ResourceExhaustedError("fsync: disk full"); }
      absl::Status Close() override { return real_->Close(); }

     private:
      std::unique_ptr<WritableFile> real_;
    };
    absl::StatusOr<std::unique_ptr<WritableFile>> real = target()->NewWritableFile(path);
    if (!real.ok()) return real.status();
    return std::unique_ptr<WritableFile>(new FailingSync(*std::move(real)));
  }
};

TEST_F(BlobStoreTest, FailedSyncLeavesNothingBehind) {
  FailingSyncEnv env(Env::Default());
  absl::StatusOr<std::unique_ptr<BlobStore>> blobs = BlobStore::Open(&env, dir_.Join("blobs"));
  ASSERT_OK(blobs);
  EXPECT_STATUS((*blobs)->PutBytes("abc"), absl::StatusCode::kResourceExhausted, "disk full");
  EXPECT_FALSE((*blobs)->Contains(kAbcSha));
  EXPECT_THAT(TempFiles(), IsEmpty());
}

TEST_F(BlobStoreTest, ConcurrentPutsAndTempPaths) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  absl::Mutex mu;
  std::set<std::string> temp_paths;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Every thread writes the shared content and some of its own.
        EXPECT_EQ(*blobs_->PutBytes("abc"), kAbcSha);
        EXPECT_OK(blobs_->PutBytes(absl::StrCat("thread ", t, " blob ", i)));
        std::string path = blobs_->NewTempPath();
        absl::MutexLock lock(&mu);
        temp_paths.insert(std::move(path));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(temp_paths.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(*blobs_->ReadVerified(kAbcSha), "abc");
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      EXPECT_OK(blobs_->VerifiedPath(Sha256Hex(absl::StrCat("thread ", t, " blob ", i))));
    }
  }
  EXPECT_THAT(TempFiles(), IsEmpty());
}

}  // namespace
}  // namespace catq::server
