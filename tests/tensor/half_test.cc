#include "core/tensor/half.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

namespace catq {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t Bits(float value) { return std::bit_cast<uint32_t>(value); }
float FromBits(uint32_t bits) { return std::bit_cast<float>(bits); }

// The value of binary16 `half`, computed independently of HalfToFloat.
double ReferenceHalfValue(uint16_t half) {
  const double sign = (half & 0x8000) ? -1.0 : 1.0;
  const int exponent = (half >> 10) & 0x1F;
  const int mantissa = half & 0x3FF;
  if (exponent == 0x1F) {
    return mantissa == 0 ? sign * std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::quiet_NaN();
  }
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// The binary16 value nearest `value` (ties to even), as a double, computed
// in double arithmetic: the quantum at |value| is 2^(e - 10), where e is the
// binade (at least -14, the subnormal binade).
double ReferenceRoundToHalf(float value) {
  const double magnitude = std::fabs(static_cast<double>(value));
  if (magnitude >= 65520.0) return std::copysign(std::numeric_limits<double>::infinity(), value);
  int binary_exponent = 0;
  std::frexp(magnitude, &binary_exponent);  // magnitude = m * 2^binary_exponent, m in [0.5, 1).
  const int e = std::max(binary_exponent - 1, -14);
  const double quantum = std::ldexp(1.0, e - 10);
  // nearbyint rounds ties to even in the default rounding mode; the division
  // by a power of two is exact.
  return std::copysign(std::nearbyint(magnitude / quantum) * quantum, value);
}

TEST(Half, KnownValues) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(FloatToHalf(0.5f), 0x3800);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14)), 0x0400);  // Smallest normal.
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);  // Smallest subnormal.
  EXPECT_EQ(FloatToHalf(3.14159265f), 0x4248);
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x03FF), std::ldexp(1023.0f, -24));  // Largest subnormal.
  EXPECT_EQ(Bits(HalfToFloat(0x8000)), Bits(-0.0f));
}

TEST(Half, InfinityOverflowAndUnderflow) {
  EXPECT_EQ(FloatToHalf(kInf), 0x7C00);
  EXPECT_EQ(FloatToHalf(-kInf), 0xFC00);
  EXPECT_EQ(HalfToFloat(0x7C00), kInf);
  EXPECT_EQ(HalfToFloat(0xFC00), -kInf);
  // 65520 is the midpoint between 65504 and 2^16: the tie goes to the even
  // pattern 0x7C00, infinity.
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::nextafter(65520.0f, 0.0f)), 0x7BFF);
  EXPECT_EQ(FloatToHalf(-65520.0f), 0xFC00);
  EXPECT_EQ(FloatToHalf(1e10f), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::max()), 0x7C00);
  // 2^-25 is half the smallest subnormal: the tie goes to zero (even).
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(FloatToHalf(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(FloatToHalf(-std::ldexp(1.0f, -26)), 0x8000);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToHalf(-std::numeric_limits<float>::denorm_min()), 0x8000);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::min()), 0x0000);
  // 1.5 * 2^-24 is a tie between subnormals 1 and 2: goes to 2 (even).
  EXPECT_EQ(FloatToHalf(std::ldexp(1.5f, -24)), 0x0002);
  EXPECT_EQ(FloatToHalf(std::ldexp(2.5f, -24)), 0x0002);
}

TEST(Half, NanStaysNanWithSignAndPayload) {
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::quiet_NaN()) & 0x7E00, 0x7E00);
  // A signalling NaN whose payload lies only in bits that are dropped must not
  // become infinity.
  EXPECT_EQ(FloatToHalf(FromBits(0x7F800001u)), 0x7E00);
  EXPECT_EQ(FloatToHalf(FromBits(0xFF800001u)), 0xFE00);
  EXPECT_EQ(FloatToHalf(FromBits(0x7FC02000u)), 0x7E01);  // Top payload bits kept.
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7C01)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0xFE00)));
  EXPECT_TRUE(std::signbit(HalfToFloat(0xFE00)));
}

TEST(Half, ExhaustiveRoundTripOfAll65536Values) {
  for (uint32_t i = 0; i <= 0xFFFF; ++i) {
    const uint16_t half = static_cast<uint16_t>(i);
    const float value = HalfToFloat(half);
    const double reference = ReferenceHalfValue(half);
    if (std::isnan(reference)) {
      ASSERT_TRUE(std::isnan(value)) << std::hex << i;
      ASSERT_EQ(std::signbit(value), (half & 0x8000) != 0) << std::hex << i;
      // Back to a quiet NaN with the same sign and payload.
      ASSERT_EQ(FloatToHalf(value), half | 0x0200) << std::hex << i;
      continue;
    }
    ASSERT_EQ(static_cast<double>(value), reference) << std::hex << i;
    ASSERT_EQ(std::signbit(value), (half & 0x8000) != 0) << std::hex << i;
    ASSERT_EQ(FloatToHalf(value), half) << std::hex << i;
  }
}

// Every midpoint between two adjacent halves is a float: it must round to the
// even one, and the floats just below and above it to the nearer one.
TEST(Half, ExhaustiveTiesRoundToEven) {
  for (uint16_t low = 0; low < 0x7C00; ++low) {
    const uint16_t high = low + 1;
    const double high_value = high == 0x7C00 ? 65536.0 : ReferenceHalfValue(high);
    const float mid = static_cast<float>((ReferenceHalfValue(low) + high_value) / 2);
    ASSERT_EQ(static_cast<double>(mid), (ReferenceHalfValue(low) + high_value) / 2);
    const uint16_t even = (low & 1) ? high : low;
    for (const uint16_t sign : {uint16_t{0}, uint16_t{0x8000}}) {
      const float s = sign ? -1.0f : 1.0f;
      ASSERT_EQ(FloatToHalf(s * mid), sign | even) << std::hex << low;
      ASSERT_EQ(FloatToHalf(s * std::nextafter(mid, 0.0f)), sign | low) << std::hex << low;
      ASSERT_EQ(FloatToHalf(s * std::nextafter(mid, kInf)), sign | high) << std::hex << low;
    }
  }
}

TEST(Half, RandomFloatsMatchTheReferenceRounding) {
  std::mt19937 rng(20240611);
  for (int i = 0; i < 1 << 20; ++i) {
    // Half the draws near the half range, so that most hit interesting binades.
    uint32_t bits = rng();
    if (i % 2 == 0) bits = (bits & 0x807FFFFFu) | ((96u + (bits >> 23) % 52u) << 23);
    const float value = FromBits(bits);
    if (std::isnan(value)) continue;
    const float rounded = HalfToFloat(FloatToHalf(value));
    const double reference = ReferenceRoundToHalf(value);
    ASSERT_EQ(static_cast<double>(rounded), reference) << std::hex << bits;
    ASSERT_EQ(std::signbit(rounded), std::signbit(value)) << std::hex << bits;
  }
}

TEST(BFloat16, KnownValues) {
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBFloat16(-2.0f), 0xC000);
  EXPECT_EQ(FloatToBFloat16(3.14159265f), 0x4049);
  EXPECT_EQ(FloatToBFloat16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBFloat16(kInf), 0x7F80);
  EXPECT_EQ(FloatToBFloat16(-kInf), 0xFF80);
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::max()), 0x7F80);  // Rounds up to inf.
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(BFloat16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(0x0001), FromBits(0x00010000u));  // Subnormal.
  EXPECT_EQ(BFloat16ToFloat(0x7F80), kInf);
}

TEST(BFloat16, NanStaysNan) {
  EXPECT_EQ(FloatToBFloat16(FromBits(0x7F800001u)), 0x7FC0);  // Would truncate to inf.
  EXPECT_EQ(FloatToBFloat16(FromBits(0xFF800001u)), 0xFFC0);
  EXPECT_EQ(FloatToBFloat16(FromBits(0x7FFFFFFFu)), 0x7FFF);  // Must not carry into the sign.
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(0x7F81)));
}

TEST(BFloat16, ExhaustiveRoundTripAndTies) {
  for (uint32_t i = 0; i <= 0xFFFF; ++i) {
    const uint16_t b = static_cast<uint16_t>(i);
    const float value = BFloat16ToFloat(b);
    ASSERT_EQ(Bits(value), i << 16);
    if (std::isnan(value)) {
      ASSERT_EQ(FloatToBFloat16(value), b | 0x0040) << std::hex << i;
      continue;
    }
    ASSERT_EQ(FloatToBFloat16(value), b) << std::hex << i;
    if ((b & 0x7FFF) >= 0x7F80) continue;  // Infinity has no upper neighbour.
    // Magnitude up by one pattern (towards infinity) for either sign.
    const uint16_t next = b + 1;
    const uint16_t even = (b & 1) ? next : b;
    const uint32_t mid = (i << 16) | 0x8000u;
    ASSERT_EQ(FloatToBFloat16(FromBits(mid)), even) << std::hex << i;
    ASSERT_EQ(FloatToBFloat16(FromBits(mid - 1)), b) << std::hex << i;
    ASSERT_EQ(FloatToBFloat16(FromBits(mid + 1)), next) << std::hex << i;
  }
}

}  // namespace
}  // namespace catq
