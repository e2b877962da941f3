#include "core/tensor/dtype.h"

#include <array>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/tensor/internal/text.h"

namespace catq {
namespace {

struct DTypeEntry {
  DType dtype;
  absl::string_view name;
  size_t size;
};

// One row per DType, in enum order, so DTypeName/DTypeSize index it directly.
constexpr std::array<DTypeEntry, 8> kDTypes = {{
    {DType::kF64, "F64", 8},
    {DType::kF32, "F32", 4},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kI64, "I64", 8},
    {DType::kI32, "I32", 4},
    {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},
}};

const DTypeEntry& Entry(DType dtype) {
  size_t index = static_cast<size_t>(dtype);
  // An out-of-range enum value can only come from a cast; map it somewhere
  // harmless rather than reading past the table.
  return kDTypes[index < kDTypes.size() ? index : 0];
}

}  // namespace

absl::string_view DTypeName(DType dtype) { return Entry(dtype).name; }

size_t DTypeSize(DType dtype) { return Entry(dtype).size; }

bool IsFloatDType(DType dtype) {
  return dtype == DType::kF64 || dtype == DType::kF32 || dtype == DType::kF16 ||
         dtype == DType::kBF16;
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (const DTypeEntry& entry : kDTypes) {
    if (entry.name == name) return entry.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype ", tensor_internal::Quote(name)));
}

}  // namespace catq
