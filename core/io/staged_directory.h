// File: core/io/staged_directory.h
//
// Builds a directory under a temporary name and renames it into place at the
// end, so a reader never sees a half-written output: either the previous
// state or the finished directory.
//
//   CATQ_ASSIGN_OR_RETURN(auto staged, StagedDirectory::Create(env, "out/q", false));
//   ...write files under staged->path()...
//   CATQ_RETURN_IF_ERROR(staged->Publish());
//
// Destroying an unpublished StagedDirectory removes what was written, files
// and subdirectories (an output's gptq/ export) alike. Not thread-safe.
#ifndef CATQ_CORE_IO_STAGED_DIRECTORY_H_
#define CATQ_CORE_IO_STAGED_DIRECTORY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/io/env.h"

namespace catq {

class StagedDirectory {
 public:
  // Starts staging `final_path` at `final_path` + ".partial" (cleared first,
  // it is a leftover of an interrupted run). AlreadyExists naming the path
  // when `final_path` exists and `replace` is false.
  static absl::StatusOr<std::unique_ptr<StagedDirectory>> Create(Env* env,
                                                                 const std::string& final_path,
                                                                 bool replace);
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  // Where to write files now.
  const std::string& path() const { return staging_path_; }
  const std::string& final_path() const { return final_path_; }

  // Syncs the staging directory, removes a replaced old directory, and
  // renames the staging directory to the final path.
  absl::Status Publish();

 private:
  StagedDirectory(Env* env, std::string final_path)
      : env_(env),
        final_path_(std::move(final_path)),
        staging_path_(absl::StrCat(final_path_, ".partial")) {}

  Env* const env_;
  const std::string final_path_;
  const std::string staging_path_;
  bool published_ = false;
};

// Removes directory `path` with its files and subdirectories; OK when
// absent. Symbolic links are removed, not followed.
absl::Status RemoveDirectoryTree(Env* env, const std::string& path);

// ListFilesRecursively: the files under directory `dir`, as paths relative to
// it with '/' between components ("config.json", "gptq/config.json"), sorted
// by path. Subdirectories themselves are not listed.
absl::StatusOr<std::vector<std::string>> ListFilesRecursively(Env* env, const std::string& dir);

}  // namespace catq

#endif  // CATQ_CORE_IO_STAGED_DIRECTORY_H_
