#include "core/tensor/dtype.h"

#include <gtest/gtest.h>

#include "tests/util/status_matchers.h"

namespace catq {
namespace {

TEST(DType, NamesRoundTripAndSizesMatchTheFormat) {
  const struct {
    DType dtype;
    const char* name;
    size_t size;
  } kCases[] = {{DType::kF64, "F64", 8},   {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
                {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
                {DType::kI8, "I8", 1},     {DType::kU8, "U8", 1}};
  for (const auto& c : kCases) {
    EXPECT_EQ(DTypeName(c.dtype), c.name);
    EXPECT_EQ(DTypeSize(c.dtype), c.size);
    absl::StatusOr<DType> parsed = ParseDType(c.name);
    ASSERT_OK(parsed);
    EXPECT_EQ(*parsed, c.dtype);
  }
}

TEST(DType, UnknownNameIsInvalidArgumentQuotingIt) {
  EXPECT_STATUS(ParseDType("F8_E4M3"), absl::StatusCode::kInvalidArgument,
                "unknown dtype \"F8_E4M3\"");
  EXPECT_STATUS(ParseDType("f32"), absl::StatusCode::kInvalidArgument, "\"f32\"");
  EXPECT_STATUS(ParseDType(""), absl::StatusCode::kInvalidArgument, "unknown dtype");
}

TEST(DType, DTypeOfMapsCppTypes) {
  static_assert(DTypeOf<float>() == DType::kF32);
  static_assert(DTypeOf<double>() == DType::kF64);
  static_assert(DTypeOf<int32_t>() == DType::kI32);
  static_assert(DTypeOf<int64_t>() == DType::kI64);
  static_assert(DTypeOf<int8_t>() == DType::kI8);
  static_assert(DTypeOf<uint8_t>() == DType::kU8);
  EXPECT_TRUE(IsFloatDType(DType::kBF16));
  EXPECT_FALSE(IsFloatDType(DType::kI8));
}

}  // namespace
}  // namespace catq
