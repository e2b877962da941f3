#include "core/tensor/safetensors_writer.h"

#include <filesystem>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/tensor/internal/text.h"
#include "core/tensor/safetensors_format.h"
#include "core/tensor/safetensors_header.h"
#include "core/tensor/shape.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

using tensor_internal::Quote;

// Small appends are gathered into one write(2) of up to this many bytes.
constexpr size_t kBufferSize = 1 << 20;

std::string ParentDir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

uint64_t TensorSpec::NumBytes() const {
  uint64_t elements = 1;  // Wraps rather than overflows on an unvalidated shape.
  for (int64_t dim : shape) elements *= static_cast<uint64_t>(dim);
  return elements * DTypeSize(dtype);
}

absl::Status ValidateTensorSpecs(absl::Span<const TensorSpec> specs) {
  absl::flat_hash_set<absl::string_view> names;
  uint64_t total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    if (spec.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", i, ": name is empty"));
    }
    if (tensor_internal::FindInvalidUtf8(spec.name) != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", i, ": name is not valid UTF-8"));
    }
    if (spec.name == "__metadata__") {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", i, ": name \"__metadata__\" is reserved"));
    }
    if (!names.insert(spec.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name ", Quote(spec.name)));
    }
    absl::StatusOr<uint64_t> bytes = ShapeNumBytes(spec.shape, spec.dtype);
    if (!bytes.ok()) return Prefix(absl::StrCat("tensor ", Quote(spec.name)), bytes.status());
    if (__builtin_add_overflow(total, *bytes, &total)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", Quote(spec.name), ": total data size overflows"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    Env* env, const std::string& path, std::vector<TensorSpec> tensors,
    std::map<std::string, std::string> metadata) {
  CATQ_RETURN_IF_ERROR(ValidateTensorSpecs(tensors));
  std::unique_ptr<SafetensorsWriter> writer(new SafetensorsWriter(env, path, std::move(tensors)));
  CATQ_RETURN_IF_ERROR(writer->Open(std::move(metadata)));
  return writer;
}

SafetensorsWriter::SafetensorsWriter(Env* env, std::string path, std::vector<TensorSpec> tensors)
    : env_(env), path_(std::move(path)), tmp_path_(path_ + ".tmp"), tensors_(std::move(tensors)) {}

SafetensorsWriter::~SafetensorsWriter() {
  if (state_ == State::kOpen) {
    Fail(absl::CancelledError("writer destroyed before Finish")).IgnoreError();
  }
}

absl::Status SafetensorsWriter::Open(std::map<std::string, std::string> metadata) {
  SafetensorsHeader header;
  header.metadata = std::move(metadata);
  header.tensors.reserve(tensors_.size());
  for (const TensorSpec& spec : tensors_) {
    const uint64_t begin = data_size_;
    data_size_ += spec.NumBytes();  // ValidateTensorSpecs ruled out overflow.
    header.tensors.push_back({spec.name, spec.dtype, spec.shape, begin, data_size_});
  }
  // Serialized before the temp file exists, so bad metadata creates no file.
  absl::StatusOr<std::string> json = SerializeSafetensorsHeader(header);
  if (!json.ok()) return Fail(Prefix(path_, json.status()));
  absl::StatusOr<std::unique_ptr<WritableFile>> file = env_->NewWritableFile(tmp_path_);
  if (!file.ok()) return Fail(file.status());
  file_ = *std::move(file);
  tmp_exists_ = true;
  absl::Status status = Write(EncodeSafetensorsLength(json->size()));
  if (status.ok()) status = Write(*json);
  if (!status.ok()) return Fail(status);
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Append(absl::string_view bytes) {
  if (state_ == State::kFailed) return status_;
  if (state_ == State::kFinished) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": Append after Finish"));
  }
  const uint64_t room = data_size_ - written_;
  if (bytes.size() > room) {
    // The excess runs past the last tensor, which the message names.
    const std::string past =
        tensors_.empty() ? std::string(" of a file with no tensors")
                         : absl::StrCat(", past the end of tensor ", Quote(tensors_.back().name));
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(path_, ": Append of ", bytes.size(), " bytes exceeds the declared data by ",
                     bytes.size() - room, " bytes", past, " (", data_size_, " declared, ", written_,
                     " written)")));
  }
  absl::Status status = Write(bytes);
  if (!status.ok()) return Fail(status);
  written_ += bytes.size();
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish() {
  if (state_ == State::kFailed) return status_;
  if (state_ == State::kFinished) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": Finish called twice"));
  }
  if (written_ < data_size_) return Fail(absl::FailedPreconditionError(ShortTensorMessage()));
  absl::Status status = Publish();
  if (!status.ok()) return Fail(status);
  state_ = State::kFinished;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Publish() {
  CATQ_RETURN_IF_ERROR(Flush());
  CATQ_RETURN_IF_ERROR(file_->Sync());
  CATQ_RETURN_IF_ERROR(file_->Close());
  CATQ_RETURN_IF_ERROR(env_->RenameFile(tmp_path_, path_));
  tmp_exists_ = false;
  // The file is published; a failure below only weakens durability.
  return env_->SyncDir(ParentDir(path_));
}

absl::Status SafetensorsWriter::Write(absl::string_view bytes) {
  if (buffer_.size() + bytes.size() <= kBufferSize) {
    buffer_.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  CATQ_RETURN_IF_ERROR(Flush());
  if (bytes.size() >= kBufferSize) return file_->Append(bytes);
  buffer_.assign(bytes.data(), bytes.size());
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Flush() {
  if (buffer_.empty()) return absl::OkStatus();
  absl::Status status = file_->Append(buffer_);
  buffer_.clear();
  return status;
}

absl::Status SafetensorsWriter::Fail(absl::Status status) {
  if (state_ == State::kFailed) return status_;
  state_ = State::kFailed;
  status_ = std::move(status);
  buffer_.clear();
  file_.reset();  // Closes the descriptor before the unlink.
  if (tmp_exists_) env_->RemoveFile(tmp_path_).IgnoreError();  // Best effort cleanup.
  tmp_exists_ = false;
  return status_;
}

std::string SafetensorsWriter::ShortTensorMessage() const {
  uint64_t begin = 0;
  for (const TensorSpec& spec : tensors_) {
    const uint64_t end = begin + spec.NumBytes();
    if (end > written_) {
      return absl::StrCat(path_, ": tensor ", Quote(spec.name), " is short: ", written_ - begin,
                          " of ", spec.NumBytes(), " bytes written (", written_, " of ", data_size_,
                          " data bytes in all)");
    }
    begin = end;
  }
  return absl::StrCat(path_, ": data is short");
}

}  // namespace catq
