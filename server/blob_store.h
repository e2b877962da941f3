// File: server/blob_store.h
//
// Content-addressed file storage under the data dir: a blob is a file named
// by the sha256 of its bytes (`<root>/ab/abcdef...`), written once through a
// temporary and a rename, so a reader never sees a partial blob. Reads can
// verify the hash: a blob corrupted on disk is DataLoss, never served.
//
//   CATQ_ASSIGN_OR_RETURN(std::unique_ptr<BlobStore> blobs, BlobStore::Open(env, dir));
//   CATQ_ASSIGN_OR_RETURN(std::string sha, blobs->PutBytes(bytes));
//   CATQ_ASSIGN_OR_RETURN(std::string path, blobs->VerifiedPath(sha));
//
// Thread-safety: thread-safe. Writers of the same content race harmlessly
// (the same bytes land under the same name).
#ifndef CATQ_SERVER_BLOB_STORE_H_
#define CATQ_SERVER_BLOB_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"
#include "core/io/sha256.h"

namespace catq::server {

class BlobStore {
 public:
  // Open: creates `root` when absent.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Open(Env* env, const std::string& root);

  // PutBytes: stores `bytes` (durably: fsync, rename, fsync dir) and returns
  // their sha256. Storing existing content is a no-op.
  absl::StatusOr<std::string> PutBytes(absl::string_view bytes);
  // PutFile: moves the file at `path` (on the same filesystem) into the
  // store, after checking that its sha256 is `expected_sha256`
  // (InvalidArgument naming both digests otherwise; the file is left in
  // place then).
  absl::Status PutFile(const std::string& path, const std::string& expected_sha256);
  bool Contains(const std::string& sha256) const;
  // Path: where the blob lives (it may be absent). InvalidArgument for a
  // malformed digest.
  absl::StatusOr<std::string> Path(const std::string& sha256) const;
  // VerifiedPath: Path after re-hashing the file: NotFound when absent,
  // DataLoss ("blob <sha>: content hashes to <other>") when corrupted.
  absl::StatusOr<std::string> VerifiedPath(const std::string& sha256) const;
  absl::StatusOr<std::string> ReadVerified(const std::string& sha256) const;
  // Remove: deletes the blob; OK when absent.
  absl::Status Remove(const std::string& sha256);
  // A fresh path under the store's temporary directory (same filesystem as
  // the blobs), for a file to PutFile later.
  std::string NewTempPath();

  const std::string& root() const { return root_; }

 private:
  BlobStore(Env* env, std::string root) : env_(env), root_(std::move(root)) {}
  Env* const env_;
  const std::string root_;
};

}  // namespace catq::server

#endif  // CATQ_SERVER_BLOB_STORE_H_
