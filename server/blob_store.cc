#include "server/blob_store.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq::server {
namespace {

absl::Status DigestMismatch(absl::string_view what, absl::string_view expected,
                            absl::string_view actual) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": content hashes to ", actual, ", expected ", expected));
}

// MoveIntoStore: renames the verified file `from` to `blob_path` and makes
// the rename durable. Renaming over an existing blob is harmless: the bytes
// are the same, and a reader that has the old file open keeps it.
absl::Status MoveIntoStore(Env* env, const std::string& root, const std::string& from,
                           const std::string& blob_path) {
  const std::string dir = blob_path.substr(0, blob_path.rfind('/'));
  if (!env->FileExists(dir)) {
    CATQ_RETURN_IF_ERROR(env->CreateDirs(dir));
    CATQ_RETURN_IF_ERROR(env->SyncDir(root));  // The new directory's entry.
  }
  CATQ_RETURN_IF_ERROR(env->RenameFile(from, blob_path));
  return env->SyncDir(dir);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(Env* env, const std::string& root) {
  CATQ_RETURN_IF_ERROR(env->CreateDirs(absl::StrCat(root, "/tmp")));
  return std::unique_ptr<BlobStore>(new BlobStore(env, root));
}

absl::StatusOr<std::string> BlobStore::PutBytes(absl::string_view bytes) {
  std::string sha256 = Sha256Hex(bytes);
  CATQ_ASSIGN_OR_RETURN(std::string blob_path, Path(sha256));
  if (env_->FileExists(blob_path)) return sha256;
  const std::string tmp = NewTempPath();
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env_->NewWritableFile(tmp));
  absl::Status status = file->Append(bytes);
  if (status.ok()) status = file->Sync();
  if (status.ok()) status = file->Close();
  if (status.ok()) status = MoveIntoStore(env_, root_, tmp, blob_path);
  if (!status.ok()) {
    env_->RemoveFile(tmp).IgnoreError();  // Best effort: a failed put leaves no temporary.
    return status;
  }
  return sha256;
}

absl::Status BlobStore::PutFile(const std::string& path, const std::string& expected_sha256) {
  CATQ_ASSIGN_OR_RETURN(std::string blob_path, Path(expected_sha256));
  CATQ_ASSIGN_OR_RETURN(std::string actual, Sha256OfFile(env_, path));
  if (actual != expected_sha256) return DigestMismatch(path, expected_sha256, actual);
  return MoveIntoStore(env_, root_, path, blob_path);
}

bool BlobStore::Contains(const std::string& sha256) const {
  absl::StatusOr<std::string> path = Path(sha256);
  return path.ok() && env_->FileExists(*path);
}

absl::StatusOr<std::string> BlobStore::Path(const std::string& sha256) const {
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob digest '", sha256, "': not 64 lowercase hex digits"));
  }
  return absl::StrCat(root_, "/", absl::string_view(sha256).substr(0, 2), "/", sha256);
}

absl::StatusOr<std::string> BlobStore::VerifiedPath(const std::string& sha256) const {
  CATQ_ASSIGN_OR_RETURN(std::string path, Path(sha256));
  absl::StatusOr<std::string> actual = Sha256OfFile(env_, path);
  if (absl::IsNotFound(actual.status())) {
    return absl::NotFoundError(absl::StrCat("blob ", sha256, ": not found"));
  }
  if (!actual.ok()) return actual.status();
  if (*actual != sha256) {
    return absl::DataLossError(absl::StrCat("blob ", sha256, ": content hashes to ", *actual));
  }
  return path;
}

absl::StatusOr<std::string> BlobStore::ReadVerified(const std::string& sha256) const {
  CATQ_ASSIGN_OR_RETURN(std::string path, Path(sha256));
  // One read, hashed in memory: verifying the file and then reading it again
  // could serve bytes that were never checked.
  absl::StatusOr<std::string> bytes = env_->ReadFile(path);
  if (absl::IsNotFound(bytes.status())) {
    return absl::NotFoundError(absl::StrCat("blob ", sha256, ": not found"));
  }
  if (!bytes.ok()) return bytes.status();
  const std::string actual = Sha256Hex(*bytes);
  if (actual != sha256) {
    return absl::DataLossError(absl::StrCat("blob ", sha256, ": content hashes to ", actual));
  }
  return bytes;
}

absl::Status BlobStore::Remove(const std::string& sha256) {
  CATQ_ASSIGN_OR_RETURN(std::string path, Path(sha256));
  absl::Status status = env_->RemoveFile(path);
  if (absl::IsNotFound(status)) return absl::OkStatus();
  return status;
}

std::string BlobStore::NewTempPath() {
  // The pid and counter make names unique among live processes; the random
  // part keeps a restarted server (same pid, counter from zero) off the names
  // its predecessor left behind.
  static std::atomic<uint64_t> counter{0};
  thread_local absl::BitGen random;
  return absl::StrCat(root_, "/tmp/", ::getpid(), "-", counter.fetch_add(1), "-",
                      absl::Hex(absl::Uniform<uint64_t>(random), absl::kZeroPad16), ".tmp");
}

}  // namespace catq::server
