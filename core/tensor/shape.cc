#include "core/tensor/shape.h"

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace catq {

absl::StatusOr<int64_t> ShapeNumElements(absl::Span<const int64_t> shape) {
  int64_t nonzero_product = 1;
  bool has_zero = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t dim = shape[i];
    if (dim < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape ", FormatShape(shape), ": dimension ", i, " is negative"));
    }
    if (dim == 0) {
      has_zero = true;
      continue;
    }
    if (__builtin_mul_overflow(nonzero_product, dim, &nonzero_product)) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape ", FormatShape(shape), ": element count overflows int64"));
    }
  }
  return has_zero ? 0 : nonzero_product;
}

absl::StatusOr<uint64_t> ShapeNumBytes(absl::Span<const int64_t> shape, DType dtype) {
  absl::StatusOr<int64_t> elements = ShapeNumElements(shape);
  if (!elements.ok()) return elements.status();
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(*elements), DTypeSize(dtype), &bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("shape ", FormatShape(shape), " of ",
                                                   DTypeName(dtype), ": byte count overflows"));
  }
  return bytes;
}

std::string FormatShape(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace catq
