// File: core/tensor/safetensors_file.h
//
// SafetensorsFile: one safetensors file, memory-mapped read-only and fully
// validated when opened, with zero-copy access to its tensors.
//
//   CATQ_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
//   CATQ_ASSIGN_OR_RETURN(TensorView w, file.Get("model.embed_tokens.weight"));
//   CATQ_ASSIGN_OR_RETURN(std::vector<float> values, w.ToFloat());
//
// Open checks everything ParseSafetensorsFile checks (framing, header JSON,
// dtypes, shapes, offsets that tile the data buffer exactly), so once it
// succeeds no tensor access can read outside the file. It never reads tensor
// data, so opening a 10 GB file costs one mmap and the header parse.
//
// Ownership: the object owns the mapping (through Env::MapFile); TensorViews
// point into it and must not outlive it. Movable, not copyable; moving keeps
// existing views valid. Thread-safe after Open: every method is const and the
// object is immutable.
#ifndef CATQ_CORE_TENSOR_SAFETENSORS_FILE_H_
#define CATQ_CORE_TENSOR_SAFETENSORS_FILE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"
#include "core/tensor/safetensors_header.h"
#include "core/tensor/tensor_view.h"

namespace catq {

class SafetensorsFile {
 public:
  // SafetensorsFile::Open()
  //
  // Maps and validates `path`. Errors name the path: NotFound for a missing
  // file (from Env), InvalidArgument for a malformed one, with the offset,
  // tensor or field at fault, e.g.
  //   "/m/model.safetensors: header length 123456 at offset 0 exceeds file size 100".
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path, Env* env = Env::Default());

  SafetensorsFile(SafetensorsFile&&) = default;
  SafetensorsFile& operator=(SafetensorsFile&&) = default;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // tensors: every tensor, sorted by data offset.
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // data_offset: where the data buffer starts in the file (8 + header length).
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return mapped_->bytes().size(); }

  bool Contains(absl::string_view name) const { return Find(name) != nullptr; }
  // Find: the tensor called `name`, or nullptr. The pointer lives as long as
  // this object (or the one it is moved into).
  const TensorInfo* Find(absl::string_view name) const;

  // SafetensorsFile::Get()
  //
  // A view of tensor `name`; NotFound naming the tensor and the file.
  absl::StatusOr<TensorView> Get(absl::string_view name) const;

  // View: the view of `info`. REQUIRES: `info` is an element of tensors().
  TensorView View(const TensorInfo& info) const;

  // ReleaseTensor: the bytes of tensor `info` leave this process's resident
  // memory until they are read again (MappedFile::Release). For readers that
  // visit each tensor once, such as a job quantizing a model larger than
  // memory layer by layer. REQUIRES: `info` is an element of tensors().
  void ReleaseTensor(const TensorInfo& info) const;

 private:
  SafetensorsFile() = default;

  std::string path_;
  std::unique_ptr<MappedFile> mapped_;
  SafetensorsHeader header_;
  uint64_t data_offset_ = 0;
  absl::flat_hash_map<std::string, size_t> by_name_;  // Index into header_.tensors.
};

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_SAFETENSORS_FILE_H_
