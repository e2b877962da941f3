// File: core/tensor/safetensors_dir.h
//
// SafetensorsDir: the tensors of a model, whether a directory with
// model.safetensors.index.json and its shards, a directory with a single
// model.safetensors, or one given .safetensors (or .index.json) file. Every
// shard is opened (mapped and validated) up front.
//
//   CATQ_ASSIGN_OR_RETURN(SafetensorsDir model, SafetensorsDir::Open(model_dir));
//   for (const std::string& name : model.TensorNames()) {
//     CATQ_ASSIGN_OR_RETURN(TensorView t, model.Get(name));
//   }
//
// The index is untrusted: Open rejects (InvalidArgument, naming the index) a
// shard name that leaves the directory, a tensor the named shard lacks, a
// tensor in two shards, and a shard tensor the weight_map does not list.
//
// Ownership: owns the SafetensorsFiles and so the mappings; views and
// TensorInfo pointers live as long as this object (or the one it is moved
// into). Movable. Thread-safe after Open (immutable).
#ifndef CATQ_CORE_TENSOR_SAFETENSORS_DIR_H_
#define CATQ_CORE_TENSOR_SAFETENSORS_DIR_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"
#include "core/tensor/safetensors_file.h"
#include "core/tensor/tensor_view.h"

namespace catq {

class SafetensorsDir {
 public:
  // SafetensorsDir::Open()
  //
  // `path` is a directory (index preferred over model.safetensors), a
  // ".safetensors" file or a ".index.json" file. NotFound when a directory
  // has neither file, or a shard is missing.
  static absl::StatusOr<SafetensorsDir> Open(const std::string& path, Env* env = Env::Default());

  SafetensorsDir(SafetensorsDir&&) = default;
  SafetensorsDir& operator=(SafetensorsDir&&) = default;

  const std::string& path() const { return path_; }
  // TensorNames: every tensor of the model, sorted by name.
  std::vector<std::string> TensorNames() const;
  bool Contains(absl::string_view name) const { return file_of_.contains(name); }
  // Get: a view of tensor `name`; NotFound naming the tensor and the model.
  absl::StatusOr<TensorView> Get(absl::string_view name) const;
  absl::StatusOr<const TensorInfo*> Info(absl::string_view name) const;
  // ReleaseTensor: see SafetensorsFile::ReleaseTensor; NotFound as Get.
  absl::Status ReleaseTensor(absl::string_view name) const;
  // files: the opened shards (one for a single-file model).
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  SafetensorsDir() = default;
  absl::Status OpenIndexed(Env* env, const std::string& index_path, const std::string& dir);
  absl::Status OpenSingle(Env* env, const std::string& file_path);
  // CheckShardContents: every tensor of file `file` is listed by the index
  // for that file.
  absl::Status CheckShardContents(const std::string& index_path, size_t file) const;
  // Lookup: the file holding `name`, or NotFound.
  absl::StatusOr<const SafetensorsFile*> Lookup(absl::string_view name) const;

  std::string path_;
  std::vector<SafetensorsFile> files_;
  absl::flat_hash_map<std::string, size_t> file_of_;  // Tensor name -> index in files_.
};

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_SAFETENSORS_DIR_H_
