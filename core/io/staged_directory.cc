#include "core/io/staged_directory.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {

absl::Status RemoveFlatDirectory(Env* env, const std::string& path) {
  if (!env->FileExists(path)) return absl::OkStatus();
  CATQ_ASSIGN_OR_RETURN(std::vector<std::string> names, env->ListDir(path));
  for (const std::string& name : names) {
    CATQ_RETURN_IF_ERROR(env->RemoveFile(absl::StrCat(path, "/", name)));
  }
  return env->RemoveDir(path);
}

absl::StatusOr<std::unique_ptr<StagedDirectory>> StagedDirectory::Create(
    Env* env, const std::string& final_path, bool replace) {
  if (env->FileExists(final_path) && !replace) {
    return absl::AlreadyExistsError(
        absl::StrCat(final_path, ": already exists; choose another path or replace it"));
  }
  std::unique_ptr<StagedDirectory> staged(new StagedDirectory(env, final_path));
  CATQ_RETURN_IF_ERROR(RemoveFlatDirectory(env, staged->staging_path_));
  CATQ_RETURN_IF_ERROR(env->CreateDirs(staged->staging_path_));
  return staged;
}

StagedDirectory::~StagedDirectory() {
  if (!published_) RemoveFlatDirectory(env_, staging_path_).IgnoreError();
}

absl::Status StagedDirectory::Publish() {
  CATQ_RETURN_IF_ERROR(env_->SyncDir(staging_path_));
  CATQ_RETURN_IF_ERROR(RemoveFlatDirectory(env_, final_path_));
  CATQ_RETURN_IF_ERROR(env_->RenameFile(staging_path_, final_path_));
  const std::filesystem::path parent = std::filesystem::path(final_path_).parent_path();
  CATQ_RETURN_IF_ERROR(env_->SyncDir(parent.empty() ? std::string(".") : parent.string()));
  published_ = true;
  return absl::OkStatus();
}

}  // namespace catq
