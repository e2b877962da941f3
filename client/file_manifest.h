// File: client/file_manifest.h
//
// What the client uploads and where fetched files may land. A manifest lists
// local files with the relative path, size and sha256 each gets in an
// UploadHeader; the default upload id is a digest of that header, so running
// the same upload again resumes it instead of starting over.
//
//   CATQ_ASSIGN_OR_RETURN(Manifest manifest, BuildDirectoryManifest(env, "models/llama"));
//   v1::UploadHeader header = ...;  // name, format, manifest entries
//   header.set_upload_id(DefaultUploadId(header));
//
// Relative paths use '/' and never hold "." or ".." components or a leading
// '/' (CheckRelativePath), on the way up and on the way down: a server cannot
// make `catq fetch` write outside its output directory.
//
// Thread-safe (no state).
#ifndef CATQ_CLIENT_FILE_MANIFEST_H_
#define CATQ_CLIENT_FILE_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "catq/v1/catq.pb.h"
#include "core/io/env.h"

namespace catq::client {

// One local file of an upload.
struct ManifestFile {
  std::string local_path;  // Where the bytes are read from.
  v1::FileEntry entry;     // The relative path, size and sha256 the server sees.
};

// Sorted by entry.path; paths are unique.
using Manifest = std::vector<ManifestFile>;

// BuildDirectoryManifest
//
// Every regular file under `dir` (recursively; symlinks to files are read
// through, entries whose name starts with '.' such as .git are skipped),
// named by its path relative to `dir` with '/' separators, sorted by that
// path, each with its size and sha256. InvalidArgument when `dir` is not a
// directory or holds no files; NotFound when it does not exist.
absl::StatusOr<Manifest> BuildDirectoryManifest(Env* env, const std::string& dir);

// BuildFilesManifest
//
// The files named by `paths`, each under its base name (a llama2.c checkpoint
// and its tokenizer), sorted by that name. InvalidArgument when `paths` is
// empty, names something that is not a regular file, or two files share a
// base name; NotFound for a missing file.
absl::StatusOr<Manifest> BuildFilesManifest(Env* env, const std::vector<std::string>& paths);

// TotalBytes: the sum of the manifest's file sizes.
uint64_t TotalBytes(const Manifest& manifest);

// DefaultUploadId
//
// "model-" or "calib-" (by whether header.calibration_kind is set) and 40 hex
// digits of a sha256 over the header's name, format, calibration kind and
// every file's path, size and sha256; header.upload_id is ignored. The same
// content under the same name gives the same id on every run and machine;
// any changed byte gives another. Matches [A-Za-z0-9._-]{1,64}.
std::string DefaultUploadId(const v1::UploadHeader& header);

// CheckRelativePath
//
// OK when `path` is a safe relative path: non-empty, components separated by
// single '/', none empty, "." or "..", no leading '/', no '\\' or NUL.
// InvalidArgument naming the path and the rule it breaks otherwise.
absl::Status CheckRelativePath(absl::string_view path);

}  // namespace catq::client

#endif  // CATQ_CLIENT_FILE_MANIFEST_H_
