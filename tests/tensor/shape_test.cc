#include "core/tensor/shape.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "tests/util/status_matchers.h"

namespace catq {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TEST(Shape, NumElements) {
  EXPECT_EQ(*ShapeNumElements({}), 1);  // A scalar.
  EXPECT_EQ(*ShapeNumElements({4096, 11008}), 45088768);
  EXPECT_EQ(*ShapeNumElements({0, 5}), 0);
  EXPECT_EQ(*ShapeNumElements({kMax}), kMax);
  EXPECT_EQ(*ShapeNumElements({1, kMax, 1}), kMax);
}

TEST(Shape, NegativeDimensionIsRejected) {
  EXPECT_STATUS(ShapeNumElements({2, -1}), absl::StatusCode::kInvalidArgument,
                "shape [2, -1]: dimension 1 is negative");
}

TEST(Shape, OverflowIsRejectedEvenWithAZeroDimension) {
  EXPECT_STATUS(ShapeNumElements({int64_t{1} << 32, int64_t{1} << 31}),
                absl::StatusCode::kInvalidArgument, "overflows int64");
  // Any subset of dimensions must multiply safely, so a zero does not excuse it.
  EXPECT_STATUS(ShapeNumElements({int64_t{1} << 40, int64_t{1} << 40, 0}),
                absl::StatusCode::kInvalidArgument, "overflows int64");
}

TEST(Shape, NumBytesChecksTheByteCount) {
  EXPECT_EQ(*ShapeNumBytes({4096, 11008}, DType::kF16), 90177536u);
  EXPECT_EQ(*ShapeNumBytes({kMax}, DType::kU8), static_cast<uint64_t>(kMax));
  EXPECT_STATUS(ShapeNumBytes({kMax}, DType::kF64), absl::StatusCode::kInvalidArgument,
                "byte count overflows");
}

TEST(Shape, Format) {
  EXPECT_EQ(FormatShape({}), "[]");
  EXPECT_EQ(FormatShape({4096, 11008}), "[4096, 11008]");
}

}  // namespace
}  // namespace catq
