#include <filesystem>

#include "core/io/env.h"
#include "core/util/status_macros.h"

namespace catq {

absl::Status WriteFileAtomically(Env* env, const std::string& path, absl::string_view data) {
  const std::string tmp = path + ".tmp";
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env->NewWritableFile(tmp));
  absl::Status status = file->Append(data);
  if (status.ok()) status = file->Sync();
  if (status.ok()) status = file->Close();
  if (status.ok()) status = env->RenameFile(tmp, path);
  if (!status.ok()) {
    env->RemoveFile(tmp).IgnoreError();  // Best effort: never leave a torn temp file.
    return status;
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  return env->SyncDir(dir.empty() ? "." : dir);
}

}  // namespace catq
