// File: core/quant/internal/grid.h
//
// The integer grids of architecture.md section 4, shared by the weight
// quantizer (rtn_ref.cc) and the activation fake quantizer so that both round
// the same way. Not a public API: use core/quant/rtn.h and activation_quant.h.
//
//   quant_internal::AsymmetricGrid grid = quant_internal::MakeAsymmetricGrid(lo, hi, 4);
//   if (grid.scale > 0) q_u = quant_internal::AsymmetricLevel(x, grid, 4);
//
// round is round-half-to-even: std::nearbyint under the default FE_TONEAREST
// mode (never std::round, which rounds ties away from zero).
//
// Thread-safety: pure functions.
#ifndef CATQ_CORE_QUANT_INTERNAL_GRID_H_
#define CATQ_CORE_QUANT_INTERNAL_GRID_H_

#include <cmath>

namespace catq::quant_internal {

// SymmetricMaxLevel: 2^(b-1) - 1, the largest |q| of the symmetric grid.
inline int SymmetricMaxLevel(int bits) { return (1 << (bits - 1)) - 1; }

// AsymmetricMaxLevel: 2^b - 1, the largest unsigned level of the asymmetric grid.
inline int AsymmetricMaxLevel(int bits) { return (1 << bits) - 1; }

// SignedOffset: 2^(b-1), subtracted from unsigned levels for signed storage.
inline int SignedOffset(int bits) { return 1 << (bits - 1); }

// RoundToLevel
//
// round-half-to-even(v), clamped to [lo, hi], as an int. Clamping happens in
// float before the conversion, so no input (NaN included, which gives lo) can
// make the conversion undefined.
inline int RoundToLevel(float v, int lo, int hi) {
  float r = std::nearbyint(v);
  r = std::fmax(r, static_cast<float>(lo));
  r = std::fmin(r, static_cast<float>(hi));
  return static_cast<int>(r);
}

// SymmetricScale
//
// amax / (2^(b-1) - 1) in float. 0 when amax is 0 or the quotient underflows:
// a zero scale means "every value of the group is 0".
inline float SymmetricScale(float amax, int bits) {
  return amax / static_cast<float>(SymmetricMaxLevel(bits));
}

// The asymmetric grid of one group or token: value = (q_u - zero_u) * scale
// with q_u, zero_u in [0, 2^b - 1].
struct AsymmetricGrid {
  float scale = 0.0f;
  int zero_u = 0;
};

// MakeAsymmetricGrid
//
// The grid over [min(lo, 0), max(hi, 0)]: scale = range / (2^b - 1) (range
// taken in double, so two huge finite values of opposite sign cannot overflow
// it, then rounded to float once), zero_u = clamp(round(-min / scale), 0,
// 2^b - 1). When the scale is 0 (all values 0) zero_u is 2^(b-1), so that the
// signed zero point is 0.
// `round_scale`, when given, maps the scale to the value it will be stored as
// (e.g. float16); the zero point and levels are then computed from that value.
inline AsymmetricGrid MakeAsymmetricGrid(float lo, float hi, int bits,
                                         float (*round_scale)(float) = nullptr) {
  const float min_value = std::fmin(lo, 0.0f);
  const float max_value = std::fmax(hi, 0.0f);
  const int max_level = AsymmetricMaxLevel(bits);
  const double range = static_cast<double>(max_value) - static_cast<double>(min_value);
  AsymmetricGrid grid;
  grid.scale = static_cast<float>(range / max_level);
  if (round_scale != nullptr) grid.scale = round_scale(grid.scale);
  if (grid.scale == 0.0f) {
    grid.zero_u = SignedOffset(bits);
    return grid;
  }
  grid.zero_u = RoundToLevel(-min_value / grid.scale, 0, max_level);
  return grid;
}

// SymmetricLevel
//
// clamp(round(x / scale), -(2^(b-1)-1), 2^(b-1)-1). REQUIRES: scale > 0.
inline int SymmetricLevel(float x, float scale, int bits) {
  const int max_level = SymmetricMaxLevel(bits);
  return RoundToLevel(x / scale, -max_level, max_level);
}

// AsymmetricLevel
//
// clamp(round(x / scale) + zero_u, 0, 2^b - 1): the zero point is added after
// rounding (adding it before could move a value across a tie in float), which
// is the same as clamping round(x / scale) to [-zero_u, 2^b - 1 - zero_u].
// REQUIRES: grid.scale > 0.
inline int AsymmetricLevel(float x, const AsymmetricGrid& grid, int bits) {
  const int max_level = AsymmetricMaxLevel(bits);
  return RoundToLevel(x / grid.scale, -grid.zero_u, max_level - grid.zero_u) + grid.zero_u;
}

}  // namespace catq::quant_internal

#endif  // CATQ_CORE_QUANT_INTERNAL_GRID_H_
