// File: core/tensor/safetensors_names.h
//
// The file names of a Hugging Face style model directory, in one place (in the
// manner of LevelDB's db/filename.h): the shards, the index, the single file.
//
//   ShardFileName(1, 3)   // "model-00001-of-00003.safetensors"
//   CATQ_RETURN_IF_ERROR(CheckShardFileName(name_from_index));
//
// Pure functions: thread-safe.
#ifndef CATQ_CORE_TENSOR_SAFETENSORS_NAMES_H_
#define CATQ_CORE_TENSOR_SAFETENSORS_NAMES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace catq {

inline constexpr char kSafetensorsIndexFileName[] = "model.safetensors.index.json";
inline constexpr char kSafetensorsSingleFileName[] = "model.safetensors";

// ShardFileName
//
// "model-%05d-of-%05d.safetensors" for shard `index` (1-based) of `count`.
std::string ShardFileName(int index, int count);

// CheckShardFileName
//
// OK when `name` is a plain file name that stays inside its directory:
// non-empty, no '/', '\\' or NUL, no "..". InvalidArgument quoting it
// otherwise. An index is untrusted input: "../../etc/passwd" must not open.
absl::Status CheckShardFileName(absl::string_view name);

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_SAFETENSORS_NAMES_H_
