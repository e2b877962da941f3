#include "core/tensor/float_encoding.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/tensor/half.h"

namespace catq {
namespace {

template <typename T, typename Convert>
std::string EncodeWith(absl::Span<const float> values, Convert convert) {
  std::string bytes(values.size() * sizeof(T), '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    const T v = convert(values[i]);
    std::memcpy(bytes.data() + i * sizeof(T), &v, sizeof(T));
  }
  return bytes;
}

}  // namespace

absl::StatusOr<std::string> EncodeFloats(absl::Span<const float> values, DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return std::string(reinterpret_cast<const char*>(values.data()),
                         values.size() * sizeof(float));
    case DType::kF64:
      return EncodeWith<double>(values, [](float v) { return static_cast<double>(v); });
    case DType::kF16:
      return EncodeWith<uint16_t>(values, FloatToHalf);
    case DType::kBF16:
      return EncodeWith<uint16_t>(values, FloatToBFloat16);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", DTypeName(dtype), " is not a float type (F64, F32, F16, BF16)"));
  }
}

}  // namespace catq
