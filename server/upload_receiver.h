// File: server/upload_receiver.h
//
// Receives the files of one upload stream (UploadModel, UploadCalibration)
// so that an interrupted upload resumes where it stopped: each file's bytes
// go to `<uploads_dir>/<tenant key>/<upload id>/<index>.part`, appended in
// order; what GetUpload reports as received is what is on disk. A file whose
// bytes are all there is checked against its sha256 and moved into the blob
// store (content-addressed: a file the store already holds counts as
// received at once, and is never sent again).
//
//   CATQ_ASSIGN_OR_RETURN(std::unique_ptr<UploadSession> session,
//                         receiver.Begin(tenant, UploadKind::kModel, header));
//   for (const v1::UploadChunk& chunk : chunks) CATQ_RETURN_IF_ERROR(session->Append(chunk));
//   CATQ_RETURN_IF_ERROR(session->CheckComplete());
//
// Errors name the field, file and offset: "chunk: file 'model.safetensors'
// offset 0, expected 4194304 (resume from GetUpload)", "files[1].sha256:
// received bytes hash to <...>"; never a path on the server (a full disk is
// ResourceExhausted "model.safetensors: no space left on the server's disk").
//
// Thread-safety: UploadReceiver is thread-safe; one upload id has at most one
// session at a time (a second is Aborted). An UploadSession is not.
#ifndef CATQ_SERVER_UPLOAD_RECEIVER_H_
#define CATQ_SERVER_UPLOAD_RECEIVER_H_

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "catq/v1/catq.pb.h"
#include "core/io/env.h"
#include "proto/wire_limits.h"
#include "server/blob_store.h"
#include "server/metadata_store.h"

namespace catq::server {

struct UploadLimits {
  uint64_t max_upload_bytes = uint64_t{64} << 30;  // all files of one upload
  size_t max_files = 256;
  size_t max_chunk_bytes = kMaxChunkBytes;
};

class UploadReceiver;

// One stream's view of an upload. Destroying it ends the session (a later
// stream with the same id resumes).
class UploadSession {
 public:
  ~UploadSession();
  UploadSession(const UploadSession&) = delete;
  UploadSession& operator=(const UploadSession&) = delete;

  const UploadRecord& record() const { return record_; }
  // Append: `chunk` must continue its file exactly where the received bytes
  // end. The file is verified and stored when complete.
  absl::Status Append(const v1::UploadChunk& chunk);
  // CheckComplete: OK when every file is in the blob store; else
  // FailedPrecondition naming the first short file and its received bytes.
  absl::Status CheckComplete();

 private:
  friend class UploadReceiver;
  UploadSession(UploadReceiver* receiver, UploadRecord record, std::string dir,
                std::vector<uint64_t> received);
  absl::Status FinishFile(size_t index);

  UploadReceiver* const receiver_;
  const UploadRecord record_;
  const std::string dir_;
  std::vector<uint64_t> received_;
  size_t open_index_ = SIZE_MAX;
  std::unique_ptr<WritableFile> open_file_;
};

class UploadReceiver {
 public:
  UploadReceiver(Env* env, MetadataStore* store, BlobStore* blobs, std::string uploads_dir,
                 UploadLimits limits)
      : env_(env),
        store_(store),
        blobs_(blobs),
        uploads_dir_(std::move(uploads_dir)),
        limits_(limits) {}

  // Begin: validates `header` (id, name, paths, sizes, digests, limits),
  // records it or finds the same upload recorded before, and opens a session.
  absl::StatusOr<std::unique_ptr<UploadSession>> Begin(const std::string& tenant, UploadKind kind,
                                                       const v1::UploadHeader& header);

  // Received: bytes on disk per file of a recorded upload.
  absl::StatusOr<std::vector<uint64_t>> Received(const UploadRecord& upload);

  // Discard: removes the upload's partial files (after it completed).
  void Discard(const UploadRecord& upload);

  const UploadLimits& limits() const { return limits_; }

 private:
  friend class UploadSession;
  std::string UploadDir(const std::string& tenant, const std::string& id) const;
  // ForClient: `status` of a file operation on the server's disk for file
  // `index` of `upload` (SIZE_MAX: the upload as a whole), told without the
  // server's paths: a part file is named as uploaded, a full disk
  // (ResourceExhausted) as "<file>: no space left on the server's disk".
  absl::Status ForClient(const absl::Status& status, const UploadRecord& upload,
                         size_t index) const;
  void EndSession(const std::string& key);

  Env* const env_;
  MetadataStore* const store_;
  BlobStore* const blobs_;
  const std::string uploads_dir_;
  const UploadLimits limits_;
  absl::Mutex mu_;
  std::set<std::string> active_ ABSL_GUARDED_BY(mu_);  // tenant key + '/' + id
};

}  // namespace catq::server

#endif  // CATQ_SERVER_UPLOAD_RECEIVER_H_
