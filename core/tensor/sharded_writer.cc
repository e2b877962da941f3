#include "core/tensor/sharded_writer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {

std::vector<std::vector<size_t>> PlanShards(const std::vector<TensorSpec>& tensors,
                                            uint64_t max_shard_bytes) {
  std::vector<std::vector<size_t>> plan;
  uint64_t current = 0;  // Data bytes in plan.back().
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = tensors[i].NumBytes();
    // Written so that nothing wraps when one tensor alone passes the limit.
    const bool fits = current <= max_shard_bytes && bytes <= max_shard_bytes - current;
    if (plan.empty() || (!plan.back().empty() && !fits)) {
      plan.emplace_back();
      current = 0;
    }
    plan.back().push_back(i);
    current += bytes;
  }
  return plan;
}

absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> ShardedSafetensorsWriter::Create(
    Env* env, const std::string& dir, std::vector<TensorSpec> tensors, Options options) {
  CATQ_RETURN_IF_ERROR(ValidateTensorSpecs(tensors));
  if (options.max_shard_bytes == 0) {
    return absl::InvalidArgumentError("max_shard_bytes must be positive");
  }
  if (!options.single_file_name.empty()) {
    CATQ_RETURN_IF_ERROR(Prefix("single_file_name", CheckShardFileName(options.single_file_name)));
  }
  CATQ_RETURN_IF_ERROR(env->CreateDirs(dir));
  std::unique_ptr<ShardedSafetensorsWriter> writer(
      new ShardedSafetensorsWriter(env, dir, std::move(tensors), std::move(options)));
  writer->Plan();
  CATQ_RETURN_IF_ERROR(writer->OpenShard(0));
  CATQ_RETURN_IF_ERROR(writer->FinishFullShards());
  return writer;
}

ShardedSafetensorsWriter::ShardedSafetensorsWriter(Env* env, std::string dir,
                                                   std::vector<TensorSpec> tensors, Options options)
    : env_(env), dir_(std::move(dir)), tensors_(std::move(tensors)), options_(std::move(options)) {}

ShardedSafetensorsWriter::~ShardedSafetensorsWriter() {
  if (state_ == State::kOpen) {
    Fail(absl::CancelledError("writer destroyed before Finish")).IgnoreError();
  }
}

void ShardedSafetensorsWriter::Plan() {
  plan_ = PlanShards(tensors_, options_.max_shard_bytes);
  if (plan_.empty()) plan_.emplace_back();  // No tensors: still one (empty) file.
  write_index_ = !(plan_.size() == 1 && !options_.single_file_name.empty());
  const int count = static_cast<int>(plan_.size());
  for (size_t shard = 0; shard < plan_.size(); ++shard) {
    file_names_.push_back(write_index_ ? ShardFileName(static_cast<int>(shard) + 1, count)
                                       : options_.single_file_name);
    uint64_t size = 0;
    for (size_t i : plan_[shard]) {
      size += tensors_[i].NumBytes();
      weight_map_[tensors_[i].name] = file_names_.back();
    }
    shard_sizes_.push_back(size);
    data_size_ += size;
  }
}

absl::Status ShardedSafetensorsWriter::OpenShard(size_t shard) {
  std::vector<TensorSpec> specs;
  specs.reserve(plan_[shard].size());
  for (size_t i : plan_[shard]) specs.push_back(tensors_[i]);
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer = SafetensorsWriter::Create(
      env_, absl::StrCat(dir_, "/", file_names_[shard]), std::move(specs), options_.metadata);
  if (!writer.ok()) return Fail(writer.status());
  writer_ = *std::move(writer);
  current_ = shard;
  shard_written_ = 0;
  return absl::OkStatus();
}

absl::Status ShardedSafetensorsWriter::FinishFullShards() {
  while (shard_written_ == shard_sizes_[current_] && current_ + 1 < plan_.size()) {
    absl::Status status = writer_->Finish();
    if (!status.ok()) return Fail(status);
    published_ = current_ + 1;
    CATQ_RETURN_IF_ERROR(OpenShard(current_ + 1));
  }
  return absl::OkStatus();
}

absl::Status ShardedSafetensorsWriter::Append(absl::string_view bytes) {
  if (state_ == State::kFailed) return status_;
  if (state_ == State::kFinished) {
    return absl::FailedPreconditionError(absl::StrCat(dir_, ": Append after Finish"));
  }
  if (bytes.size() > data_size_ - written_) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(dir_, ": Append of ", bytes.size(), " bytes exceeds the declared data by ",
                     bytes.size() - (data_size_ - written_), " bytes")));
  }
  while (!bytes.empty()) {
    const uint64_t room = shard_sizes_[current_] - shard_written_;
    // FinishFullShards leaves room whenever data remains.
    if (room == 0) return Fail(absl::InternalError("sharded writer: no room in the current shard"));
    const size_t n = static_cast<size_t>(std::min<uint64_t>(room, bytes.size()));
    absl::Status status = writer_->Append(bytes.substr(0, n));
    if (!status.ok()) return Fail(status);
    shard_written_ += n;
    written_ += n;
    bytes.remove_prefix(n);
    CATQ_RETURN_IF_ERROR(FinishFullShards());
  }
  return absl::OkStatus();
}

absl::Status ShardedSafetensorsWriter::Finish() {
  if (state_ == State::kFailed) return status_;
  if (state_ == State::kFinished) {
    return absl::FailedPreconditionError(absl::StrCat(dir_, ": Finish called twice"));
  }
  // With data missing the current shard is the short one, and its writer's
  // error names the tensor.
  absl::Status status = writer_->Finish();
  if (!status.ok()) return Fail(status);
  published_ = current_ + 1;
  if (write_index_) {
    status = WriteSafetensorsIndex(env_, dir_, data_size_, weight_map_);
    if (!status.ok()) return Fail(status);
  }
  state_ = State::kFinished;
  return absl::OkStatus();
}

absl::Status ShardedSafetensorsWriter::Fail(absl::Status status) {
  if (state_ == State::kFailed) return status_;
  state_ = State::kFailed;
  status_ = std::move(status);
  writer_.reset();  // Removes the temp file of an unfinished shard.
  for (size_t shard = 0; shard < published_; ++shard) {
    env_->RemoveFile(absl::StrCat(dir_, "/", file_names_[shard])).IgnoreError();  // Best effort.
  }
  published_ = 0;
  return status_;
}

}  // namespace catq
