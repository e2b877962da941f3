// File: core/tensor/tensor_view.h
//
// TensorView: a non-owning view of one tensor's bytes, usually inside a
// mapped safetensors file, with typed access and conversion to float32.
//
//   CATQ_ASSIGN_OR_RETURN(TensorView w, file.Get("model.layers.0.mlp.up_proj.weight"));
//   CATQ_ASSIGN_OR_RETURN(std::vector<float> values, w.ToFloat());   // F16/BF16/F32/F64
//   CATQ_ASSIGN_OR_RETURN(absl::Span<const int32_t> q, packed.As<int32_t>());  // zero-copy
//
// Ownership: the view points at a TensorInfo and at bytes that it does not
// own; both must outlive it (for a SafetensorsFile: the file object, or the
// object it was moved into). Thread-safe: a view is immutable.
#ifndef CATQ_CORE_TENSOR_TENSOR_VIEW_H_
#define CATQ_CORE_TENSOR_TENSOR_VIEW_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/tensor/dtype.h"
#include "core/tensor/safetensors_header.h"

namespace catq {

class TensorView {
 public:
  // REQUIRES: bytes.size() == info.NumBytes() and `info` has a validated shape
  // (as every TensorInfo from ParseSafetensorsHeader has).
  TensorView(const TensorInfo& info, absl::string_view bytes) : info_(&info), bytes_(bytes) {}

  const TensorInfo& info() const { return *info_; }
  const std::string& name() const { return info_->name; }
  DType dtype() const { return info_->dtype; }
  const std::vector<int64_t>& shape() const { return info_->shape; }
  int64_t NumElements() const { return info_->NumElements(); }
  // bytes: the raw little-endian data, info().NumBytes() long.
  absl::string_view bytes() const { return bytes_; }

  // TensorView::As<T>()
  //
  // The data as T elements, without copying. FailedPrecondition, naming the
  // tensor, when dtype() != DTypeOf<T>() or the data is not aligned for T (a
  // file whose writer did not align tensors: use ToFloat() or copy bytes()).
  template <typename T>
  absl::StatusOr<absl::Span<const T>> As() const {
    absl::Status status = CheckAs(DTypeOf<T>(), alignof(T));
    if (!status.ok()) return status;
    if (bytes_.empty()) return absl::Span<const T>();
    return absl::Span<const T>(reinterpret_cast<const T*>(bytes_.data()),
                               bytes_.size() / sizeof(T));
  }

  // TensorView::CopyAs<T>()
  //
  // A copy of the data as T elements, at any alignment (the safetensors
  // format does not align tensors: an I64 after an odd count of F32 or F16
  // elements starts at an offset that is not a multiple of 8).
  // FailedPrecondition, naming the tensor, when dtype() != DTypeOf<T>().
  template <typename T>
  absl::StatusOr<std::vector<T>> CopyAs() const {
    absl::Status status = CheckAs(DTypeOf<T>(), 1);
    if (!status.ok()) return status;
    std::vector<T> values(bytes_.size() / sizeof(T));
    if (!values.empty()) std::memcpy(values.data(), bytes_.data(), values.size() * sizeof(T));
    return values;
  }

  // TensorView::ToFloat()
  //
  // A float32 copy of an F32, F16, BF16 or F64 tensor (F64 rounds to nearest;
  // beyond the float range it becomes infinity). InvalidArgument for integer
  // dtypes. Works at any alignment.
  absl::StatusOr<std::vector<float>> ToFloat() const;

  // TensorView::CopyToFloat()
  //
  // ToFloat() into `out`, which must hold exactly NumElements() floats
  // (InvalidArgument otherwise).
  absl::Status CopyToFloat(absl::Span<float> out) const;

 private:
  absl::Status CheckAs(DType want, size_t alignment) const;

  const TensorInfo* info_;
  absl::string_view bytes_;
};

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_TENSOR_VIEW_H_
