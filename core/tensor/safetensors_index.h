// File: core/tensor/safetensors_index.h
//
// model.safetensors.index.json, the map from tensor name to shard file of a
// sharded Hugging Face model:
//
//   {"metadata": {"total_size": 123456}, "weight_map": {"lm_head.weight":
//   "model-00002-of-00002.safetensors", ...}}
//
// Encoder and decoder side by side. total_size is the sum of the tensors'
// data bytes, as Hugging Face writes it.
//
//   CATQ_RETURN_IF_ERROR(WriteSafetensorsIndex(env, dir, total, weight_map));
//   CATQ_ASSIGN_OR_RETURN(SafetensorsIndex index, ParseSafetensorsIndex(text));
//
// Pure functions except WriteSafetensorsIndex (I/O through Env); all are
// thread-safe.
#ifndef CATQ_CORE_TENSOR_SAFETENSORS_INDEX_H_
#define CATQ_CORE_TENSOR_SAFETENSORS_INDEX_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"

namespace catq {

struct SafetensorsIndex {
  std::optional<uint64_t> total_size;             // metadata.total_size, when present.
  std::map<std::string, std::string> weight_map;  // Tensor name -> shard file name.
};

// ParseSafetensorsIndex
//
// InvalidArgument naming the field when `json` is not a JSON object (strict:
// UTF-8, no duplicate keys), has no "weight_map" object of strings, names a
// shard that is not a plain file name (CheckShardFileName), or has a
// metadata.total_size that is not a non-negative integer. Other keys are
// ignored, as Hugging Face loaders do.
absl::StatusOr<SafetensorsIndex> ParseSafetensorsIndex(absl::string_view json);

// SerializeSafetensorsIndex
//
// The index text (indented like Hugging Face's, keys sorted). InvalidArgument
// for a name that is not valid UTF-8 or a shard name CheckShardFileName rejects.
absl::StatusOr<std::string> SerializeSafetensorsIndex(
    uint64_t total_size, const std::map<std::string, std::string>& weight_map);

// WriteSafetensorsIndex
//
// Writes `dir`/model.safetensors.index.json atomically (WriteFileAtomically).
absl::Status WriteSafetensorsIndex(Env* env, const std::string& dir, uint64_t total_size,
                                   const std::map<std::string, std::string>& weight_map);

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_SAFETENSORS_INDEX_H_
