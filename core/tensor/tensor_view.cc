#include "core/tensor/tensor_view.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/tensor/half.h"
#include "core/tensor/internal/text.h"

namespace catq {
namespace {

std::string Context(const TensorInfo& info) {
  return absl::StrCat("tensor ", tensor_internal::Quote(info.name));
}

// DoubleToFloat: IEEE round-to-nearest-even narrowing, spelled out because a
// plain cast of a finite double outside the float range is undefined in C++.
float DoubleToFloat(double value) {
  if (std::isnan(value)) {
    return std::copysign(std::numeric_limits<float>::quiet_NaN(),
                         std::signbit(value) ? -1.0f : 1.0f);
  }
  // FLT_MAX plus half an ulp (2^104): from there on the rounded value is inf
  // (the tie rounds to inf, because FLT_MAX has an odd mantissa).
  constexpr double kOverflow = 0x1.ffffffp127;
  const double magnitude = std::fabs(value);
  if (magnitude >= kOverflow) return std::copysign(std::numeric_limits<float>::infinity(), value);
  if (magnitude > std::numeric_limits<float>::max()) {
    return std::copysign(std::numeric_limits<float>::max(), value);
  }
  return static_cast<float>(value);
}

// Load: reads element i of type T from unaligned little-endian bytes.
template <typename T>
T Load(const char* data, size_t i) {
  T value;
  std::memcpy(&value, data + i * sizeof(T), sizeof(T));
  return value;
}

}  // namespace

absl::Status TensorView::CheckAs(DType want, size_t alignment) const {
  if (dtype() != want) {
    return absl::FailedPreconditionError(absl::StrCat(
        Context(*info_), ": dtype is ", DTypeName(dtype()), ", not ", DTypeName(want)));
  }
  const auto address = reinterpret_cast<uintptr_t>(bytes_.data());
  if (!bytes_.empty() && address % alignment != 0) {
    return absl::FailedPreconditionError(absl::StrCat(Context(*info_), ": data at offset ",
                                                      info_->data_begin, " is not aligned to ",
                                                      alignment, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> TensorView::ToFloat() const {
  if (!IsFloatDType(dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(Context(*info_), ": dtype ", DTypeName(dtype()), " is not a float type"));
  }
  std::vector<float> out(bytes_.size() / DTypeSize(dtype()));
  absl::Status status = CopyToFloat(absl::MakeSpan(out));
  if (!status.ok()) return status;
  return out;
}

absl::Status TensorView::CopyToFloat(absl::Span<float> out) const {
  if (!IsFloatDType(dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(Context(*info_), ": dtype ", DTypeName(dtype()), " is not a float type"));
  }
  // Counted from the bytes rather than the shape: the two agree for validated
  // tensors, and the bytes bound every read below.
  const size_t count = bytes_.size() / DTypeSize(dtype());
  if (out.size() != count) {
    return absl::InvalidArgumentError(absl::StrCat(Context(*info_), ": output holds ", out.size(),
                                                   " floats, tensor has ", count, " elements"));
  }
  const char* data = bytes_.data();
  switch (dtype()) {
    case DType::kF32:
      if (count > 0) std::memcpy(out.data(), data, count * sizeof(float));
      break;
    case DType::kF16:
      for (size_t i = 0; i < count; ++i) out[i] = HalfToFloat(Load<uint16_t>(data, i));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) out[i] = BFloat16ToFloat(Load<uint16_t>(data, i));
      break;
    case DType::kF64:
      for (size_t i = 0; i < count; ++i) out[i] = DoubleToFloat(Load<double>(data, i));
      break;
    default:
      break;  // Integer dtypes were rejected above.
  }
  return absl::OkStatus();
}

}  // namespace catq
