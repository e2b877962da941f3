// File: core/tensor/sharded_writer.h
//
// ShardedSafetensorsWriter streams a model's tensors into Hugging Face style
// shards, model-00001-of-0000N.safetensors, each a complete safetensors file
// (SafetensorsWriter), then writes model.safetensors.index.json. Shards are
// planned up front (PlanShards: greedy, in declaration order) and written one
// after the other as the data arrives.
//
//   ShardedSafetensorsWriter::Options options;
//   options.max_shard_bytes = 2ull << 30;
//   options.single_file_name = kSafetensorsSingleFileName;  // small models: one file
//   CATQ_ASSIGN_OR_RETURN(auto writer,
//                         ShardedSafetensorsWriter::Create(env, out_dir, specs, options));
//   for (...) CATQ_RETURN_IF_ERROR(writer->Append(bytes));  // declaration order
//   CATQ_RETURN_IF_ERROR(writer->Finish());
//
// Every file is published atomically and the index comes last, so a reader
// never sees an index naming a missing shard. Errors stick; after a failure,
// or when destroyed without a successful Finish, the writer removes the shards
// it published. `dir` should hold no other model. Not thread-safe.
#ifndef CATQ_CORE_TENSOR_SHARDED_WRITER_H_
#define CATQ_CORE_TENSOR_SHARDED_WRITER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"
#include "core/tensor/safetensors_index.h"  // WriteSafetensorsIndex
#include "core/tensor/safetensors_names.h"  // ShardFileName, kSafetensorsIndexFileName
#include "core/tensor/safetensors_writer.h"

namespace catq {

// PlanShards
//
// Splits `tensors`, in order, into shards of at most `max_shard_bytes` data
// bytes each: a tensor goes into the current shard if it fits, else opens the
// next one; a tensor larger than the limit gets a shard of its own. Returns
// the indices of the tensors of each shard; no shards for no tensors.
// REQUIRES: ValidateTensorSpecs(tensors) is OK.
std::vector<std::vector<size_t>> PlanShards(const std::vector<TensorSpec>& tensors,
                                            uint64_t max_shard_bytes);

class ShardedSafetensorsWriter {
 public:
  struct Options {
    // max_shard_bytes: the most tensor data per shard (default 5 GiB, as
    // transformers' default max_shard_size). Must be positive.
    uint64_t max_shard_bytes = 5ull << 30;
    // single_file_name: when non-empty and everything fits in one shard, the
    // tensors go to this file in `dir` and no index is written.
    std::string single_file_name;
    // metadata: the "__metadata__" of every shard (e.g. {"format": "pt"}).
    std::map<std::string, std::string> metadata;
  };

  // ShardedSafetensorsWriter::Create()
  //
  // Validates the specs (ValidateTensorSpecs) and options, creates `dir` if
  // needed and opens the first shard. `env` must outlive the writer.
  static absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> Create(
      Env* env, const std::string& dir, std::vector<TensorSpec> tensors, Options options);

  ~ShardedSafetensorsWriter();
  ShardedSafetensorsWriter(const ShardedSafetensorsWriter&) = delete;
  ShardedSafetensorsWriter& operator=(const ShardedSafetensorsWriter&) = delete;

  // Append: the next bytes of tensor data in declaration order, across tensor
  // and shard boundaries. InvalidArgument when more than declared.
  absl::Status Append(absl::string_view bytes);

  // Finish: publishes the last shard, then the index. FailedPrecondition naming
  // the tensor when data is missing.
  absl::Status Finish();

  // file_names: the shard file names (in `dir`), in order.
  const std::vector<std::string>& file_names() const { return file_names_; }
  // weight_map: tensor name -> shard file name, as the index records it.
  const std::map<std::string, std::string>& weight_map() const { return weight_map_; }
  // data_size: total tensor data bytes (the index's total_size).
  uint64_t data_size() const { return data_size_; }

 private:
  enum class State { kOpen, kFinished, kFailed };

  ShardedSafetensorsWriter(Env* env, std::string dir, std::vector<TensorSpec> tensors,
                           Options options);
  void Plan();
  absl::Status OpenShard(size_t shard);
  // FinishFullShards: publishes the current shard and opens the next while the
  // current one is complete and not the last.
  absl::Status FinishFullShards();
  // Fail: records the first error and removes everything written.
  absl::Status Fail(absl::Status status);

  Env* const env_;
  const std::string dir_;
  const std::vector<TensorSpec> tensors_;
  const Options options_;
  std::vector<std::vector<size_t>> plan_;
  std::vector<std::string> file_names_;
  std::vector<uint64_t> shard_sizes_;
  std::map<std::string, std::string> weight_map_;
  uint64_t data_size_ = 0;
  bool write_index_ = true;

  size_t current_ = 0;          // Shard being written.
  size_t published_ = 0;        // Shards [0, published_) are on disk.
  uint64_t shard_written_ = 0;  // Bytes of the current shard appended.
  uint64_t written_ = 0;        // Bytes appended in all.
  std::unique_ptr<SafetensorsWriter> writer_;
  State state_ = State::kOpen;
  absl::Status status_;
};

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_SHARDED_WRITER_H_
