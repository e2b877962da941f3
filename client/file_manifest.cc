#include "client/file_manifest.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/io/sha256.h"
#include "core/util/status_macros.h"

namespace catq::client {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<ManifestFile> DescribeFile(Env* env, const std::string& local_path,
                                          const std::string& relative_path) {
  ManifestFile file;
  file.local_path = local_path;
  file.entry.set_path(relative_path);
  CATQ_ASSIGN_OR_RETURN(uint64_t size, env->GetFileSize(local_path));
  file.entry.set_size(size);
  CATQ_ASSIGN_OR_RETURN(*file.entry.mutable_sha256(), Sha256OfFile(env, local_path));
  return file;
}

void SortByPath(Manifest& manifest) {
  std::sort(manifest.begin(), manifest.end(), [](const ManifestFile& a, const ManifestFile& b) {
    return a.entry.path() < b.entry.path();
  });
}

absl::Status CheckIsDirectory(const std::string& dir) {
  std::error_code error;
  const fs::file_status status = fs::status(dir, error);
  if (status.type() == fs::file_type::not_found) {
    return absl::NotFoundError(absl::StrCat(dir, ": no such directory"));
  }
  if (error) return absl::InternalError(absl::StrCat(dir, ": ", error.message()));
  if (!fs::is_directory(status)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": not a directory"));
  }
  return absl::OkStatus();
}

// The local and relative paths of every regular file under `dir`, skipping
// dot entries.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListRegularFiles(
    const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> files;
  std::error_code error;
  fs::recursive_directory_iterator it(dir, error);
  for (; !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    const fs::path& path = it->path();
    if (path.filename().string().starts_with(".")) {
      if (it->is_directory(error)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(error)) continue;
    files.emplace_back(path.string(), path.lexically_relative(dir).generic_string());
  }
  if (error) return absl::InternalError(absl::StrCat(dir, ": listing failed: ", error.message()));
  return files;
}

}  // namespace

absl::StatusOr<Manifest> BuildDirectoryManifest(Env* env, const std::string& dir) {
  CATQ_RETURN_IF_ERROR(CheckIsDirectory(dir));
  CATQ_ASSIGN_OR_RETURN(auto files, ListRegularFiles(dir));
  if (files.empty()) return absl::InvalidArgumentError(absl::StrCat(dir, ": holds no files"));
  Manifest manifest;
  for (const auto& [local, relative] : files) {
    CATQ_RETURN_IF_ERROR(CheckRelativePath(relative));
    CATQ_ASSIGN_OR_RETURN(ManifestFile file, DescribeFile(env, local, relative));
    manifest.push_back(std::move(file));
  }
  SortByPath(manifest);
  return manifest;
}

absl::StatusOr<Manifest> BuildFilesManifest(Env* env, const std::vector<std::string>& paths) {
  if (paths.empty()) return absl::InvalidArgumentError("no files to upload");
  Manifest manifest;
  std::set<std::string> names;
  for (const std::string& path : paths) {
    std::error_code error;
    const fs::file_status status = fs::status(path, error);
    if (status.type() == fs::file_type::not_found) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    }
    if (!fs::is_regular_file(status)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
    }
    const std::string name = fs::path(path).filename().string();
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": another file is also named '", name, "'"));
    }
    CATQ_ASSIGN_OR_RETURN(ManifestFile file, DescribeFile(env, path, name));
    manifest.push_back(std::move(file));
  }
  SortByPath(manifest);
  return manifest;
}

uint64_t TotalBytes(const Manifest& manifest) {
  uint64_t total = 0;
  for (const ManifestFile& file : manifest) total += file.entry.size();
  return total;
}

std::string DefaultUploadId(const v1::UploadHeader& header) {
  std::string canonical =
      absl::StrCat("catq-upload-v1\n", header.name(), "\n", static_cast<int>(header.format()), "\n",
                   static_cast<int>(header.calibration_kind()), "\n");
  for (const v1::FileEntry& file : header.files()) {
    absl::StrAppend(&canonical, file.path(), "\t", file.size(), "\t", file.sha256(), "\n");
  }
  const char* prefix =
      header.calibration_kind() != v1::CALIBRATION_KIND_UNSPECIFIED ? "calib-" : "model-";
  return absl::StrCat(prefix, Sha256Hex(canonical).substr(0, 40));
}

absl::Status CheckRelativePath(absl::string_view path) {
  auto bad = [path](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("path '", path, "': ", why));
  };
  if (path.empty()) return bad("is empty");
  if (path.front() == '/') return bad("is absolute");
  if (path.find('\\') != absl::string_view::npos) return bad("holds a backslash");
  if (path.find('\0') != absl::string_view::npos) return bad("holds a NUL byte");
  for (absl::string_view component : absl::StrSplit(path, '/')) {
    if (component.empty()) return bad("has an empty component");
    if (component == "." || component == "..") return bad("has a '.' or '..' component");
  }
  return absl::OkStatus();
}

}  // namespace catq::client
