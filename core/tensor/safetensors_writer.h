// File: core/tensor/safetensors_writer.h
//
// SafetensorsWriter streams one safetensors file to disk. All tensors are
// declared up front, so the header goes first; then the caller appends the
// data of the tensors in declaration order, in chunks of any size, and
// Finish() publishes the file atomically (write path.tmp, fsync, rename,
// fsync the directory). A crash or an error never leaves a torn file at
// `path`.
//
//   std::vector<TensorSpec> specs = {{"w", DType::kF32, {2, 3}}, {"b", DType::kF32, {3}}};
//   CATQ_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::Create(env, path, specs));
//   CATQ_RETURN_IF_ERROR(writer->Append(w_bytes));   // 24 bytes
//   CATQ_RETURN_IF_ERROR(writer->Append(b_bytes));   // 12 bytes
//   CATQ_RETURN_IF_ERROR(writer->Finish());
//
// Tensors are laid out contiguously in declaration order and the data buffer
// starts 8-aligned; a tensor is aligned for TensorView::As<T>() when the
// tensors before it sum to a multiple of its element size (declare them by
// decreasing element size to be sure).
//
// Errors stick: after any failure the temp file is removed and every later
// call returns the first error. Not thread-safe; owns its temp file.
#ifndef CATQ_CORE_TENSOR_SAFETENSORS_WRITER_H_
#define CATQ_CORE_TENSOR_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/io/env.h"
#include "core/tensor/dtype.h"

namespace catq {

// A tensor to be written: its data is NumBytes() bytes, row-major, little-endian.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  // NumBytes: element count * dtype size. Meaningful once ValidateTensorSpecs
  // has accepted the spec; never undefined behaviour otherwise.
  uint64_t NumBytes() const;
};

// ValidateTensorSpecs
//
// InvalidArgument naming the tensor when a name is empty, "__metadata__", a
// duplicate or not valid UTF-8, when a dimension is negative, or when the
// element count or the total byte count overflows.
absl::Status ValidateTensorSpecs(absl::Span<const TensorSpec> specs);

class SafetensorsWriter {
 public:
  // SafetensorsWriter::Create()
  //
  // Validates `tensors` (ValidateTensorSpecs) and `metadata` (UTF-8), creates
  // `path + ".tmp"` through `env` and writes the header. `env` must outlive
  // the writer.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      Env* env, const std::string& path, std::vector<TensorSpec> tensors,
      std::map<std::string, std::string> metadata = {});

  // Without a successful Finish(), the destructor removes the temp file.
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // SafetensorsWriter::Append()
  //
  // The next `bytes` of tensor data, in declaration order, across tensor
  // boundaries. InvalidArgument naming the last tensor (and the writer fails)
  // when the data would exceed the declared total; I/O errors come from Env.
  absl::Status Append(absl::string_view bytes);

  // SafetensorsWriter::Finish()
  //
  // Publishes the file. FailedPrecondition naming the first short tensor when
  // data is missing (the temp file is removed; nothing appears at path()).
  absl::Status Finish();

  const std::string& path() const { return path_; }
  // data_size: the declared bytes of tensor data; bytes_written: appended so far.
  uint64_t data_size() const { return data_size_; }
  uint64_t bytes_written() const { return written_; }

 private:
  enum class State { kOpen, kFinished, kFailed };

  SafetensorsWriter(Env* env, std::string path, std::vector<TensorSpec> tensors);
  absl::Status Open(std::map<std::string, std::string> metadata);
  // Write: buffered append of raw bytes (header or data) to the temp file.
  absl::Status Write(absl::string_view bytes);
  absl::Status Flush();
  absl::Status Publish();
  // Fail: records the first error, drops and removes the temp file.
  absl::Status Fail(absl::Status status);
  // ShortTensorMessage: which tensor the first missing byte belongs to.
  std::string ShortTensorMessage() const;

  Env* const env_;
  const std::string path_;
  const std::string tmp_path_;
  const std::vector<TensorSpec> tensors_;
  uint64_t data_size_ = 0;
  uint64_t written_ = 0;
  std::unique_ptr<WritableFile> file_;
  bool tmp_exists_ = false;  // From NewWritableFile until the rename.
  std::string buffer_;
  State state_ = State::kOpen;
  absl::Status status_;
};

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_SAFETENSORS_WRITER_H_
