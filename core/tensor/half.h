// File: core/tensor/half.h
//
// Conversions between float and the two 16-bit float formats of safetensors:
// IEEE 754 binary16 ("F16": 1 sign, 5 exponent, 10 mantissa bits) and
// bfloat16 ("BF16": the top 16 bits of a float). Narrowing rounds to nearest,
// ties to even, exactly as IEEE hardware does; subnormals, infinities and
// signed zeros convert exactly; a NaN stays a NaN (quieted, sign and top
// payload bits kept). Widening is exact.
//
//   uint16_t h = FloatToHalf(1.0f);   // 0x3C00
//   float f = HalfToFloat(h);         // 1.0f
//   uint16_t b = FloatToBFloat16(f);  // 0x3F80
//
// Pure inline functions on bit patterns (no _Float16 needed): thread-safe.
#ifndef CATQ_CORE_TENSOR_HALF_H_
#define CATQ_CORE_TENSOR_HALF_H_

#include <bit>
#include <cstdint>

namespace catq {

// FloatToHalf
//
// The binary16 nearest to `value` (ties to even). Values of magnitude
// >= 65520 become infinity; magnitudes <= 2^-25 become (signed) zero.
inline uint16_t FloatToHalf(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t exponent = (bits >> 23) & 0xFFu;
  const uint32_t mantissa = bits & 0x7FFFFFu;
  if (exponent == 0xFFu) {
    if (mantissa == 0) return static_cast<uint16_t>(sign | 0x7C00u);
    // NaN: keep the top payload bits and set the quiet bit so that the result
    // can never collapse to infinity.
    return static_cast<uint16_t>(sign | 0x7E00u | (mantissa >> 13));
  }
  // float exponent e (bias 127) maps to half exponent e - 112 (bias 15).
  if (exponent >= 143) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 2^16
  if (exponent >= 113) {
    // Normal half: drop 13 mantissa bits with round-to-nearest-even. A carry
    // out of the mantissa correctly bumps the exponent (and may reach inf).
    uint32_t half = ((exponent - 112) << 10) | (mantissa >> 13);
    const uint32_t rest = mantissa & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  // Subnormal half (or zero): the result is round(|value| / 2^-24). With the
  // implicit bit, |value| = m * 2^(exponent - 150), so the quotient is
  // m >> (126 - exponent) rounded. A shift of 25 or more leaves less than 1/2.
  const uint32_t shift = 126 - exponent;
  if (exponent == 0 || shift >= 25) return sign;
  const uint32_t m = mantissa | 0x800000u;
  uint32_t half = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

// HalfToFloat
//
// The float equal to binary16 `half` (every binary16 value is a float).
inline float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1Fu;
  uint32_t mantissa = half & 0x3FFu;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // Inf or NaN, payload kept.
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;  // Signed zero.
  } else {
    // Subnormal half: normalize; 2^-14 has float exponent 113.
    uint32_t float_exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --float_exponent;
    }
    bits = sign | (float_exponent << 23) | ((mantissa & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// FloatToBFloat16
//
// The bfloat16 nearest to `value` (ties to even); overflow gives infinity.
inline uint16_t FloatToBFloat16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // Quiet NaN.
  }
  // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even;
  // it cannot overflow 32 bits because the exponent is not all ones here.
  const uint32_t rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

// BFloat16ToFloat
//
// The float equal to bfloat16 `value`.
inline float BFloat16ToFloat(uint16_t value) {
  return std::bit_cast<float>(static_cast<uint32_t>(value) << 16);
}

}  // namespace catq

#endif  // CATQ_CORE_TENSOR_HALF_H_
