#include "core/io/staged_directory.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {

namespace {

absl::Status AppendFiles(Env* env, const std::string& dir, const std::string& prefix,
                         std::vector<std::string>* files) {
  CATQ_ASSIGN_OR_RETURN(std::vector<std::string> names, env->ListDir(dir));
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(dir, "/", name);
    if (env->IsDirectory(path)) {
      CATQ_RETURN_IF_ERROR(AppendFiles(env, path, absl::StrCat(prefix, name, "/"), files));
    } else {
      files->push_back(absl::StrCat(prefix, name));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RemoveDirectoryTree(Env* env, const std::string& path) {
  if (!env->FileExists(path)) return absl::OkStatus();
  CATQ_ASSIGN_OR_RETURN(std::vector<std::string> names, env->ListDir(path));
  for (const std::string& name : names) {
    const std::string child = absl::StrCat(path, "/", name);
    CATQ_RETURN_IF_ERROR(env->IsDirectory(child) ? RemoveDirectoryTree(env, child)
                                                 : env->RemoveFile(child));
  }
  return env->RemoveDir(path);
}

absl::StatusOr<std::vector<std::string>> ListFilesRecursively(Env* env, const std::string& dir) {
  std::vector<std::string> files;
  CATQ_RETURN_IF_ERROR(AppendFiles(env, dir, "", &files));
  // ListDir sorts each directory's names; "a/b" and "a.json" need one order.
  std::sort(files.begin(), files.end());
  return files;
}

absl::StatusOr<std::unique_ptr<StagedDirectory>> StagedDirectory::Create(
    Env* env, const std::string& final_path, bool replace) {
  if (env->FileExists(final_path) && !replace) {
    return absl::AlreadyExistsError(
        absl::StrCat(final_path, ": already exists; choose another path or replace it"));
  }
  std::unique_ptr<StagedDirectory> staged(new StagedDirectory(env, final_path));
  CATQ_RETURN_IF_ERROR(RemoveDirectoryTree(env, staged->staging_path_));
  CATQ_RETURN_IF_ERROR(env->CreateDirs(staged->staging_path_));
  return staged;
}

StagedDirectory::~StagedDirectory() {
  if (!published_) RemoveDirectoryTree(env_, staging_path_).IgnoreError();
}

absl::Status StagedDirectory::Publish() {
  CATQ_RETURN_IF_ERROR(env_->SyncDir(staging_path_));
  CATQ_RETURN_IF_ERROR(RemoveDirectoryTree(env_, final_path_));
  CATQ_RETURN_IF_ERROR(env_->RenameFile(staging_path_, final_path_));
  const std::filesystem::path parent = std::filesystem::path(final_path_).parent_path();
  CATQ_RETURN_IF_ERROR(env_->SyncDir(parent.empty() ? std::string(".") : parent.string()));
  published_ = true;
  return absl::OkStatus();
}

}  // namespace catq
