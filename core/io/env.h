// File: core/io/env.h
//
// Env is catq's one seam to the filesystem and the clock, in the manner of
// LevelDB's Env: production code calls Env::Default() (POSIX), tests wrap an Env
// to inject a full disk on the Nth write, a failed fsync or a torn write.
//
//   Env* env = Env::Default();
//   CATQ_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, env->NewWritableFile(tmp));
//   CATQ_RETURN_IF_ERROR(f->Append(bytes));
//   CATQ_RETURN_IF_ERROR(f->Sync());
//   CATQ_RETURN_IF_ERROR(f->Close());
//   CATQ_RETURN_IF_ERROR(env->RenameFile(tmp, final_path));
//
// Errors: a missing file is NotFound, a full disk (ENOSPC, EDQUOT) is
// ResourceExhausted, other OS failures are Internal; each message names the path
// and the OS error. All methods of Env are thread-safe; a WritableFile is not.
#ifndef CATQ_CORE_IO_ENV_H_
#define CATQ_CORE_IO_ENV_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace catq {

// A file being written sequentially. Not thread-safe.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual absl::Status Append(absl::string_view data) = 0;
  // Sync: flushes written data to stable storage (fsync).
  virtual absl::Status Sync() = 0;
  // Close: releases the descriptor. Destroying an unclosed file closes it and
  // drops any error.
  virtual absl::Status Close() = 0;
};

// A read-only memory mapping of a whole file. The bytes stay valid for the
// lifetime of the object. Thread-safe (immutable).
class MappedFile {
 public:
  virtual ~MappedFile() = default;
  virtual absl::string_view bytes() const = 0;
  virtual const std::string& path() const = 0;
  // Release: a hint that this process is done with `range` (a part of
  // bytes()) for now. Its pages leave the process's resident memory; they
  // stay in the page cache, and reading them again faults them back in with
  // the same contents. Streaming readers of files larger than memory (model
  // weights, uploads, results) call it on what they have consumed, so their
  // resident memory stays at what they hold, not at what they have read.
  // The default does nothing.
  virtual void Release(absl::string_view range) const { (void)range; }
};

class Env {
 public:
  virtual ~Env() = default;

  // Default: the process-wide POSIX Env. Never deleted.
  static Env* Default();

  // NewWritableFile: creates or truncates `path`.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) = 0;
  // NewAppendableFile: opens `path` for appending, creating it when absent
  // (a resumed upload continues its partial file).
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) = 0;
  // MapFile: maps `path` read-only. An empty file maps to an empty view.
  virtual absl::StatusOr<std::unique_ptr<MappedFile>> MapFile(const std::string& path) = 0;
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  virtual absl::StatusOr<uint64_t> GetFileSize(const std::string& path) = 0;
  virtual bool FileExists(const std::string& path) = 0;
  // IsDirectory: whether `path` is a directory; false for a symbolic link,
  // even to a directory (lstat(2)), so a recursive removal never follows one.
  virtual bool IsDirectory(const std::string& path) = 0;
  // RenameFile: atomically replaces `to` with `from` (rename(2)).
  virtual absl::Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // RemoveDir: removes an empty directory (rmdir(2)).
  virtual absl::Status RemoveDir(const std::string& path) = 0;
  // CreateDirs: like `mkdir -p`; OK when the directory exists.
  virtual absl::Status CreateDirs(const std::string& path) = 0;
  // SyncDir: fsyncs a directory so that renames in it are durable.
  virtual absl::Status SyncDir(const std::string& path) = 0;
  // ListDir: the names (not paths) of the entries of `path`, sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // GetFreeSpace: bytes available to this process on the filesystem of `path`.
  virtual absl::StatusOr<uint64_t> GetFreeSpace(const std::string& path) = 0;
  virtual uint64_t NowMicros() = 0;
};

// EnvWrapper forwards every call to another Env, so a test overrides just one.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    return target_->NewWritableFile(path);
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    return target_->NewAppendableFile(path);
  }
  absl::StatusOr<std::unique_ptr<MappedFile>> MapFile(const std::string& path) override {
    return target_->MapFile(path);
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    return target_->ReadFile(path);
  }
  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override {
    return target_->GetFileSize(path);
  }
  bool FileExists(const std::string& path) override { return target_->FileExists(path); }
  bool IsDirectory(const std::string& path) override { return target_->IsDirectory(path); }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    return target_->RenameFile(from, to);
  }
  absl::Status RemoveFile(const std::string& path) override { return target_->RemoveFile(path); }
  absl::Status RemoveDir(const std::string& path) override { return target_->RemoveDir(path); }
  absl::Status CreateDirs(const std::string& path) override { return target_->CreateDirs(path); }
  absl::Status SyncDir(const std::string& path) override { return target_->SyncDir(path); }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) override {
    return target_->ListDir(path);
  }
  absl::StatusOr<uint64_t> GetFreeSpace(const std::string& path) override {
    return target_->GetFreeSpace(path);
  }
  uint64_t NowMicros() override { return target_->NowMicros(); }

 private:
  Env* const target_;
};

// WriteFileAtomically: writes `data` to `path + ".tmp"`, syncs, renames it over
// `path` and syncs the directory. A crash leaves either the old file or the new
// one, never a torn file under `path`.
absl::Status WriteFileAtomically(Env* env, const std::string& path, absl::string_view data);

}  // namespace catq

#endif  // CATQ_CORE_IO_ENV_H_
