#include "server/upload_receiver.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "core/util/status_macros.h"

namespace catq::server {
namespace {

bool IsValidUploadId(absl::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return id != "." && id != "..";
}

// A relative path with '/' separators and no empty, "." or ".." part.
bool IsSafeRelativePath(absl::string_view path) {
  if (path.empty() || path.size() > 512 || path.front() == '/') return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return path.find('\0') == absl::string_view::npos;
}

absl::Status ValidateHeader(const v1::UploadHeader& header, UploadKind kind,
                            const UploadLimits& limits) {
  if (!IsValidUploadId(header.upload_id())) {
    return absl::InvalidArgumentError(
        "header.upload_id: must be 1 to 64 characters of [A-Za-z0-9._-]");
  }
  if (header.name().empty() || header.name().size() > 256) {
    return absl::InvalidArgumentError("header.name: must be 1 to 256 bytes");
  }
  if (header.files().empty()) return absl::InvalidArgumentError("header.files: empty");
  if (kind == UploadKind::kCalibration && header.files_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "header.files: a calibration upload has exactly one file, got ", header.files_size()));
  }
  if (static_cast<size_t>(header.files_size()) > limits.max_files) {
    return absl::InvalidArgumentError(absl::StrCat("header.files: ", header.files_size(),
                                                   " files, the limit is ", limits.max_files));
  }
  uint64_t total = 0;
  std::set<std::string> paths;
  for (int i = 0; i < header.files_size(); ++i) {
    const v1::FileEntry& file = header.files(i);
    const std::string field = absl::StrCat("header.files[", i, "]");
    if (!IsSafeRelativePath(file.path())) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".path: '", file.path(), "' must be relative, '/'-separated, without '..'"));
    }
    if (!paths.insert(file.path()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".path: '", file.path(), "' appears twice"));
    }
    if (!IsSha256Hex(file.sha256())) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".sha256: must be 64 lowercase hex digits"));
    }
    if (file.size() > limits.max_upload_bytes || total + file.size() > limits.max_upload_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(field, ".size: the upload exceeds the server's limit of ",
                       limits.max_upload_bytes, " bytes"));
    }
    total += file.size();
  }
  return absl::OkStatus();
}

UploadRecord RecordOf(const std::string& tenant, UploadKind kind, const v1::UploadHeader& header) {
  UploadRecord record;
  record.tenant = tenant;
  record.id = header.upload_id();
  record.kind = kind;
  record.name = header.name();
  record.format = kind == UploadKind::kModel ? static_cast<int>(header.format())
                                             : static_cast<int>(header.calibration_kind());
  for (const v1::FileEntry& file : header.files()) {
    record.files.push_back({file.path(), file.size(), file.sha256()});
  }
  return record;
}

std::string PartPath(const std::string& dir, size_t index) {
  return absl::StrCat(dir, "/", index, ".part");
}

}  // namespace

UploadSession::UploadSession(UploadReceiver* receiver, UploadRecord record, std::string dir,
                             std::vector<uint64_t> received)
    : receiver_(receiver),
      record_(std::move(record)),
      dir_(std::move(dir)),
      received_(std::move(received)) {}

UploadSession::~UploadSession() {
  if (open_file_ != nullptr) open_file_->Close().IgnoreError();
  receiver_->EndSession(absl::StrCat(record_.tenant, "/", record_.id));
}

absl::Status UploadSession::Append(const v1::UploadChunk& chunk) {
  if (chunk.file_index() >= record_.files.size()) {
    return absl::InvalidArgumentError(absl::StrCat("chunk.file_index: ", chunk.file_index(),
                                                   " but the header lists ", record_.files.size(),
                                                   " files"));
  }
  const size_t index = chunk.file_index();
  const StoredFile& file = record_.files[index];
  if (chunk.data().size() > receiver_->limits().max_chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("chunk.data: ", chunk.data().size(),
                                                   " bytes, at most ",
                                                   receiver_->limits().max_chunk_bytes));
  }
  if (received_[index] == file.size && receiver_->blobs_->Contains(file.sha256)) {
    // The store already holds these bytes (another upload sent them), so the
    // chunk carries nothing new; a client that did not ask GetUpload first
    // may still send it.
    return absl::OkStatus();
  }
  if (chunk.offset() != received_[index]) {
    return absl::FailedPreconditionError(
        absl::StrCat("chunk: file '", file.path, "' offset ", chunk.offset(), ", expected ",
                     received_[index], " (chunks go in order; resume from GetUpload)"));
  }
  if (chunk.data().size() > file.size - received_[index]) {
    return absl::InvalidArgumentError(absl::StrCat("chunk: file '", file.path, "' offset ",
                                                   chunk.offset(), " + ", chunk.data().size(),
                                                   " bytes runs past its size ", file.size));
  }
  if (open_index_ != index) {
    if (open_file_ != nullptr) {
      CATQ_RETURN_IF_ERROR(receiver_->ForClient(open_file_->Close(), record_, open_index_));
      open_file_.reset();
      open_index_ = SIZE_MAX;
    }
    absl::StatusOr<std::unique_ptr<WritableFile>> opened =
        receiver_->env_->NewAppendableFile(PartPath(dir_, index));
    CATQ_RETURN_IF_ERROR(receiver_->ForClient(opened.status(), record_, index));
    open_file_ = std::move(*opened);
    open_index_ = index;
  }
  CATQ_RETURN_IF_ERROR(receiver_->ForClient(open_file_->Append(chunk.data()), record_, index));
  received_[index] += chunk.data().size();
  if (received_[index] == file.size) return FinishFile(index);
  return absl::OkStatus();
}

absl::Status UploadSession::FinishFile(size_t index) {
  absl::Status closed = open_file_->Sync();
  if (closed.ok()) {
    closed = open_file_->Close();
  } else {
    open_file_->Close().IgnoreError();
  }
  open_file_.reset();
  open_index_ = SIZE_MAX;
  CATQ_RETURN_IF_ERROR(receiver_->ForClient(closed, record_, index));
  const StoredFile& file = record_.files[index];
  const std::string part = PartPath(dir_, index);
  const absl::Status stored =
      receiver_->ForClient(receiver_->blobs_->PutFile(part, file.sha256), record_, index);
  if (stored.code() == absl::StatusCode::kInvalidArgument) {
    // The bytes are wrong somewhere; keeping them would make every resume
    // fail the same way, so the file starts over. The store's message reads
    // "<file>: content hashes to <actual>, expected <sha256>".
    receiver_->env_->RemoveFile(part).IgnoreError();
    received_[index] = 0;
    absl::string_view digests = stored.message();
    absl::ConsumePrefix(&digests, absl::StrCat(file.path, ": "));
    return absl::InvalidArgumentError(
        absl::StrCat("header.files[", index, "].sha256: the received bytes of '", file.path,
                     "' do not hash to it (", digests, "); the file must be sent again"));
  }
  return stored;
}

absl::Status UploadSession::CheckComplete() {
  for (size_t i = 0; i < record_.files.size(); ++i) {
    if (record_.files[i].size == 0 && !receiver_->blobs_->Contains(record_.files[i].sha256)) {
      // An empty file has no chunk to complete it.
      absl::StatusOr<std::string> stored = receiver_->blobs_->PutBytes("");
      CATQ_RETURN_IF_ERROR(receiver_->ForClient(stored.status(), record_, i));
      const std::string& empty = *stored;
      if (empty != record_.files[i].sha256) {
        return absl::InvalidArgumentError(absl::StrCat("header.files[", i, "].sha256: '",
                                                       record_.files[i].path,
                                                       "' is empty, whose sha256 is ", empty));
      }
    }
    if (!receiver_->blobs_->Contains(record_.files[i].sha256)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "upload '", record_.id, "': file '", record_.files[i].path, "' has ", received_[i],
          " of ", record_.files[i].size, " bytes; resume from GetUpload"));
    }
  }
  return absl::OkStatus();
}

absl::Status UploadReceiver::ForClient(const absl::Status& status, const UploadRecord& upload,
                                       size_t index) const {
  if (status.ok()) return status;
  const std::string what = index < upload.files.size() ? upload.files[index].path
                                                       : absl::StrCat("upload '", upload.id, "'");
  if (absl::IsResourceExhausted(status)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what,
                     ": no space left on the server's disk; resume from GetUpload once there "
                     "is room"));
  }
  // Longer names win where two start at the same place ("<dir>/1.part" and
  // "<dir>/10.part", "<dir>/0.part" and "<dir>").
  const std::string dir = UploadDir(upload.tenant, upload.id);
  std::vector<std::pair<std::string, std::string>> names;
  for (size_t i = 0; i < upload.files.size(); ++i) {
    names.emplace_back(PartPath(dir, i), upload.files[i].path);
  }
  names.emplace_back(dir, absl::StrCat("upload '", upload.id, "'"));
  names.emplace_back(uploads_dir_, "uploads");
  names.emplace_back(blobs_->root(), "blobs");
  return absl::Status(status.code(), absl::StrReplaceAll(status.message(), names));
}

std::string UploadReceiver::UploadDir(const std::string& tenant, const std::string& id) const {
  // The tenant's name is not a safe path component; its digest is.
  return absl::StrCat(uploads_dir_, "/", Sha256Hex(tenant).substr(0, 16), "/", id);
}

absl::StatusOr<std::unique_ptr<UploadSession>> UploadReceiver::Begin(
    const std::string& tenant, UploadKind kind, const v1::UploadHeader& header) {
  CATQ_RETURN_IF_ERROR(ValidateHeader(header, kind, limits_));
  CATQ_ASSIGN_OR_RETURN(UploadRecord record, store_->BeginUpload(RecordOf(tenant, kind, header)));
  const std::string key = absl::StrCat(tenant, "/", record.id);
  {
    absl::MutexLock lock(&mu_);
    if (!active_.insert(key).second) {
      return absl::AbortedError(
          absl::StrCat("upload '", record.id, "': another stream is sending it; retry later"));
    }
  }
  // From here the session owns the mark and ends it when destroyed.
  const std::string dir = UploadDir(tenant, record.id);
  std::vector<uint64_t> received;
  absl::Status ready = ForClient(env_->CreateDirs(dir), record, SIZE_MAX);
  if (ready.ok()) {
    absl::StatusOr<std::vector<uint64_t>> bytes = Received(record);
    if (bytes.ok()) received = std::move(*bytes);
    ready = bytes.status();
  }
  auto session = std::unique_ptr<UploadSession>(
      new UploadSession(this, std::move(record), dir, std::move(received)));
  CATQ_RETURN_IF_ERROR(ready);
  return session;
}

absl::StatusOr<std::vector<uint64_t>> UploadReceiver::Received(const UploadRecord& upload) {
  const std::string dir = UploadDir(upload.tenant, upload.id);
  std::vector<uint64_t> received;
  for (size_t i = 0; i < upload.files.size(); ++i) {
    const StoredFile& file = upload.files[i];
    if (blobs_->Contains(file.sha256)) {
      received.push_back(file.size);
      continue;
    }
    const std::string part = PartPath(dir, i);
    if (!env_->FileExists(part)) {
      received.push_back(0);
      continue;
    }
    absl::StatusOr<uint64_t> size = env_->GetFileSize(part);
    CATQ_RETURN_IF_ERROR(ForClient(size.status(), upload, i));
    if (*size > file.size) {
      // Only a crash between a write and its bookkeeping could leave this;
      // the file starts over.
      CATQ_RETURN_IF_ERROR(ForClient(env_->RemoveFile(part), upload, i));
      *size = 0;
    }
    received.push_back(*size);
  }
  return received;
}

void UploadReceiver::Discard(const UploadRecord& upload) {
  std::error_code ignored;
  std::filesystem::remove_all(UploadDir(upload.tenant, upload.id), ignored);
}

void UploadReceiver::EndSession(const std::string& key) {
  absl::MutexLock lock(&mu_);
  active_.erase(key);
}

}  // namespace catq::server
