// QuantizerClient::Fetch: each result file through `<path>.part`, resumed
// from the .part's size, checked chunk by chunk and by sha256 at the end,
// then renamed into place.
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "client/quantizer_client.h"
#include "client/rpc_status.h"
#include "core/io/sha256.h"
#include "core/util/status_macros.h"

namespace catq::client {
namespace {

absl::StatusOr<bool> IsComplete(Env* env, const std::string& path, const v1::FileEntry& file) {
  if (!env->FileExists(path)) return false;
  CATQ_ASSIGN_OR_RETURN(uint64_t size, env->GetFileSize(path));
  if (size != file.size()) return false;
  CATQ_ASSIGN_OR_RETURN(std::string sha256, Sha256OfFile(env, path));
  return sha256 == file.sha256();
}

// The .part's size when it can be resumed from, else 0 (absent, or longer
// than the file it should become).
absl::StatusOr<uint64_t> ResumeOffset(Env* env, const std::string& part, uint64_t size) {
  if (!env->FileExists(part)) return 0;
  CATQ_ASSIGN_OR_RETURN(uint64_t have, env->GetFileSize(part));
  return have <= size ? have : 0;
}

absl::StatusOr<std::unique_ptr<WritableFile>> OpenPart(Env* env, const std::string& part,
                                                       uint64_t offset) {
  if (offset == 0) return env->NewWritableFile(part);  // Creates or truncates.
  return env->NewAppendableFile(part);
}

// A chunk must continue exactly what was asked for; the first one of a file
// must describe the file as GetJob did.
absl::Status CheckChunk(const v1::FetchResultChunk& chunk, const v1::FileEntry& file,
                        uint64_t expected_offset, bool first) {
  const std::string& path = file.path();
  if (chunk.path() != path) {
    return absl::DataLossError(absl::StrCat("FetchResult: got a chunk of '", chunk.path(),
                                            "' while fetching '", path, "'"));
  }
  if (chunk.offset() != expected_offset) {
    return absl::DataLossError(absl::StrCat("FetchResult: ", path, ": chunk at offset ",
                                            chunk.offset(), ", expected ", expected_offset));
  }
  if (first && (chunk.file_size() != file.size() || chunk.sha256() != file.sha256())) {
    return absl::DataLossError(absl::StrCat(
        "FetchResult: ", path, ": first chunk gives ", chunk.file_size(), " bytes, sha256 '",
        chunk.sha256(), "'; GetJob gives ", file.size(), " bytes, sha256 '", file.sha256(), "'"));
  }
  if (chunk.data().size() > file.size() - expected_offset) {
    return absl::DataLossError(absl::StrCat("FetchResult: ", path, ": chunk at offset ",
                                            chunk.offset(), " runs past the file's ", file.size(),
                                            " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FetchStats> QuantizerClient::Fetch(absl::string_view job_id,
                                                  const std::string& out_dir,
                                                  const TransferProgress& progress) {
  FetchStats stats;
  CATQ_ASSIGN_OR_RETURN(stats.job, GetJob(job_id));
  if (stats.job.state() != v1::JOB_STATE_SUCCEEDED) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job_id, "' is ", v1::JobState_Name(stats.job.state()),
                     ", not JOB_STATE_SUCCEEDED: nothing to fetch"));
  }
  uint64_t total = 0;
  for (const v1::FileEntry& file : stats.job.result_files()) {
    CATQ_RETURN_IF_ERROR(
        Prefix(absl::StrCat("job '", job_id, "' result"), CheckRelativePath(file.path())));
    total += file.size();
  }
  CATQ_RETURN_IF_ERROR(env_->CreateDirs(out_dir));
  uint64_t done = 0;
  if (progress) progress(done, total);
  for (const v1::FileEntry& file : stats.job.result_files()) {
    const std::string path = absl::StrCat(out_dir, "/", file.path());
    CATQ_ASSIGN_OR_RETURN(bool complete, IsComplete(env_, path, file));
    if (complete) {
      ++stats.files_already_present;
    } else {
      CATQ_ASSIGN_OR_RETURN(uint64_t received,
                            FetchFile(job_id, file, path, done, total, progress));
      stats.bytes_received += received;
    }
    done += file.size();
    if (progress) progress(done, total);
  }
  return stats;
}

absl::StatusOr<uint64_t> QuantizerClient::FetchFile(absl::string_view job_id,
                                                    const v1::FileEntry& file,
                                                    const std::string& path, uint64_t done_before,
                                                    uint64_t total,
                                                    const TransferProgress& progress) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  CATQ_RETURN_IF_ERROR(env_->CreateDirs(dir));
  const std::string part = absl::StrCat(path, ".part");
  uint64_t received = 0;
  // A second pass from byte 0 when a resumed .part turns out corrupt.
  for (int pass = 0; pass < 2; ++pass) {
    uint64_t offset = 0;
    if (pass == 0) {
      CATQ_ASSIGN_OR_RETURN(offset, ResumeOffset(env_, part, file.size()));
    }
    CATQ_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> out, OpenPart(env_, part, offset));
    if (offset < file.size()) {
      CATQ_ASSIGN_OR_RETURN(
          uint64_t n, StreamResultFile(job_id, file, offset, *out, done_before, total, progress));
      received += n;
    }
    CATQ_RETURN_IF_ERROR(out->Sync());
    CATQ_RETURN_IF_ERROR(out->Close());
    CATQ_ASSIGN_OR_RETURN(std::string sha256, Sha256OfFile(env_, part));
    if (sha256 == file.sha256()) {
      CATQ_RETURN_IF_ERROR(env_->RenameFile(part, path));
      CATQ_RETURN_IF_ERROR(env_->SyncDir(dir));
      return received;
    }
    if (offset == 0) break;  // Fetched whole and still wrong: not a stale .part.
  }
  return absl::DataLossError(absl::StrCat("FetchResult: ", file.path(),
                                          ": received bytes hash to another sha256 than '",
                                          file.sha256(), "'"));
}

absl::StatusOr<uint64_t> QuantizerClient::StreamResultFile(absl::string_view job_id,
                                                           const v1::FileEntry& file,
                                                           uint64_t offset, WritableFile& part,
                                                           uint64_t done_before, uint64_t total,
                                                           const TransferProgress& progress) {
  std::unique_ptr<grpc::ClientContext> context = NewContext(/*unary=*/false);
  v1::FetchResultRequest request;
  request.set_job_id(std::string(job_id));
  request.set_path(file.path());
  request.set_offset(offset);
  std::unique_ptr<grpc::ClientReader<v1::FetchResultChunk>> reader =
      stub_->FetchResult(context.get(), request);
  v1::FetchResultChunk chunk;
  uint64_t at = offset;
  bool first = true;
  absl::Status local;
  while (reader->Read(&chunk)) {
    local = CheckChunk(chunk, file, at, first);
    first = false;
    if (local.ok()) local = part.Append(chunk.data());
    if (!local.ok()) {
      context->TryCancel();
      break;
    }
    at += chunk.data().size();
    if (progress) progress(done_before + at, total);
  }
  const grpc::Status finished = reader->Finish();
  CATQ_RETURN_IF_ERROR(local);
  CATQ_RETURN_IF_ERROR(RpcStatus("FetchResult", finished));
  if (at != file.size()) {
    return absl::DataLossError(absl::StrCat(
        "FetchResult: ", file.path(), ": the stream ended at byte ", at, " of ", file.size()));
  }
  return at - offset;
}

}  // namespace catq::client
