#include "core/tensor/safetensors_dir.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/tensor/internal/text.h"
#include "core/tensor/safetensors_index.h"
#include "core/tensor/safetensors_names.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

using tensor_internal::Quote;

std::string ParentDir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

absl::StatusOr<SafetensorsDir> SafetensorsDir::Open(const std::string& path, Env* env) {
  SafetensorsDir model;
  model.path_ = path;
  absl::Status status;
  const std::string index = absl::StrCat(path, "/", kSafetensorsIndexFileName);
  const std::string single = absl::StrCat(path, "/", kSafetensorsSingleFileName);
  if (absl::EndsWith(path, ".index.json")) {
    status = model.OpenIndexed(env, path, ParentDir(path));
  } else if (absl::EndsWith(path, ".safetensors")) {
    status = model.OpenSingle(env, path);
  } else if (env->FileExists(index)) {
    status = model.OpenIndexed(env, index, path);
  } else if (env->FileExists(single)) {
    status = model.OpenSingle(env, single);
  } else {
    status = absl::NotFoundError(
        absl::StrCat(path, ": no ", kSafetensorsIndexFileName, " or ", kSafetensorsSingleFileName));
  }
  if (!status.ok()) return status;
  return model;
}

absl::Status SafetensorsDir::OpenSingle(Env* env, const std::string& file_path) {
  CATQ_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(file_path, env));
  for (const TensorInfo& tensor : file.tensors()) file_of_.emplace(tensor.name, 0);
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::Status SafetensorsDir::OpenIndexed(Env* env, const std::string& index_path,
                                         const std::string& dir) {
  CATQ_ASSIGN_OR_RETURN(std::string text, env->ReadFile(index_path));
  absl::StatusOr<SafetensorsIndex> index = ParseSafetensorsIndex(text);
  if (!index.ok()) return Prefix(index_path, index.status());
  // Each shard is opened once, however many tensors name it.
  std::map<std::string, size_t> file_of_shard;
  for (const auto& [tensor, shard] : index->weight_map) file_of_shard.emplace(shard, 0);
  for (auto& [shard, file] : file_of_shard) {
    CATQ_ASSIGN_OR_RETURN(SafetensorsFile opened,
                          SafetensorsFile::Open(absl::StrCat(dir, "/", shard), env));
    file = files_.size();
    files_.push_back(std::move(opened));
  }
  for (const auto& [tensor, shard] : index->weight_map) {
    const size_t file = file_of_shard[shard];
    if (!files_[file].Contains(tensor)) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map puts tensor ",
                                                     Quote(tensor), " in ", Quote(shard),
                                                     ", which does not hold it"));
    }
    file_of_.emplace(tensor, file);
  }
  for (size_t file = 0; file < files_.size(); ++file) {
    CATQ_RETURN_IF_ERROR(CheckShardContents(index_path, file));
  }
  return absl::OkStatus();
}

absl::Status SafetensorsDir::CheckShardContents(const std::string& index_path, size_t file) const {
  const std::string shard = std::filesystem::path(files_[file].path()).filename().string();
  for (const TensorInfo& tensor : files_[file].tensors()) {
    auto it = file_of_.find(tensor.name);
    if (it == file_of_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": shard ", Quote(shard),
                                                     " holds tensor ", Quote(tensor.name),
                                                     ", which the weight_map does not list"));
    }
    if (it->second != file) {
      const std::string other =
          std::filesystem::path(files_[it->second].path()).filename().string();
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor ", Quote(tensor.name),
                                                     " is in two shards, ", Quote(other), " and ",
                                                     Quote(shard)));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> SafetensorsDir::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(file_of_.size());
  for (const auto& [name, file] : file_of_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<const SafetensorsFile*> SafetensorsDir::Lookup(absl::string_view name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", Quote(name)));
  }
  return &files_[it->second];
}

absl::StatusOr<TensorView> SafetensorsDir::Get(absl::string_view name) const {
  CATQ_ASSIGN_OR_RETURN(const SafetensorsFile* file, Lookup(name));
  return file->Get(name);
}

absl::Status SafetensorsDir::ReleaseTensor(absl::string_view name) const {
  CATQ_ASSIGN_OR_RETURN(const SafetensorsFile* file, Lookup(name));
  file->ReleaseTensor(*file->Find(name));
  return absl::OkStatus();
}

absl::StatusOr<const TensorInfo*> SafetensorsDir::Info(absl::string_view name) const {
  CATQ_ASSIGN_OR_RETURN(const SafetensorsFile* file, Lookup(name));
  return file->Find(name);
}

}  // namespace catq
