// The AVX2 row kernels of rtn_kernels.h.
//
// Every function that uses AVX2 carries __attribute__((target("avx2"))) rather
// than the file being built with -mavx2: the inline helpers of grid.h and the
// standard library are then compiled for the baseline CPU wherever the
// linker keeps an out-of-line copy, so a CPU without AVX2 never runs an AVX2
// instruction outside these functions (which it only reaches through
// Avx2RtnKernels(), after __builtin_cpu_supports).
//
// Bit-exactness with rtn_ref.cc, operation by operation:
//   |x| max        integer max of the sign-cleared bit patterns: the same
//                  order as float max on non-negative values, and any NaN or
//                  Inf shows as bits >= 0x7f800000 (one pass for both);
//   lo/hi          vminps/vmaxps with the running value second, so that a
//                  -0 never replaces +0, as with std::min/std::max; then the
//                  scale and zero point come from the grid.h scalar code;
//   x / scale      vdivps: IEEE division, correctly rounded like divss;
//   round          vroundps to nearest, ties to even (std::nearbyint);
//   clamp          vmaxps(r, lo) then vminps(r, hi), as RoundToLevel's
//                  fmax then fmin (vmaxps returns lo for NaN, like fmax),
//                  left out for a group whose extreme values round inside
//                  the grid (then no value of it can round outside);
//   to int         vcvttps2dq of an integral value in range: exact.
// Elements past the last multiple of 8 of a group go through grid.h itself.
#include <algorithm>
#include <bit>
#include <cstring>

#include "core/quant/internal/grid.h"
#include "core/quant/internal/nibbles.h"
#include "core/quant/internal/rtn_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define CATQ_QUANT_HAVE_AVX2_KERNELS 1
#include <immintrin.h>
#else
#define CATQ_QUANT_HAVE_AVX2_KERNELS 0
#endif

namespace catq::quant_internal {

#if CATQ_QUANT_HAVE_AVX2_KERNELS
namespace {

#define CATQ_AVX2 __attribute__((target("avx2")))

constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr uint32_t kInfBits = 0x7F800000u;  // |x| bits at or above: Inf or NaN

inline float Widen(float v) { return v; }
inline float Widen(uint16_t bf16) {
  return std::bit_cast<float>(static_cast<uint32_t>(bf16) << 16);
}
inline uint32_t AbsBits(float v) { return std::bit_cast<uint32_t>(v) & kAbsMask; }

CATQ_AVX2 inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
CATQ_AVX2 inline __m256 Load8(const uint16_t* p) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}

CATQ_AVX2 inline __m256i AbsBits8(__m256 v) {
  return _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(static_cast<int>(kAbsMask)));
}

// Horizontal reductions. The integer one is a signed max, exact for the
// sign-cleared bit patterns it is given (all below 2^31).
CATQ_AVX2 inline uint32_t MaxLane(__m256i v) {
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}
CATQ_AVX2 inline float MinLane(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = _mm_min_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtss_f32(m);
}
CATQ_AVX2 inline float MaxLane(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtss_f32(m);
}

// The largest |x| of x[0, n) as bits; >= kInfBits when one is NaN or Inf.
template <typename T>
CATQ_AVX2 uint32_t AbsMaxBits(const T* x, int64_t n) {
  __m256i m0 = _mm256_setzero_si256();
  __m256i m1 = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_epi32(m0, AbsBits8(Load8(x + i)));
    m1 = _mm256_max_epi32(m1, AbsBits8(Load8(x + i + 8)));
  }
  if (i + 8 <= n) {
    m0 = _mm256_max_epi32(m0, AbsBits8(Load8(x + i)));
    i += 8;
  }
  uint32_t bits = MaxLane(_mm256_max_epi32(m0, m1));
  for (; i < n; ++i) bits = std::max(bits, AbsBits(Widen(x[i])));
  return bits;
}

// bf16: the same on the 16-bit patterns, 16 per instruction. Widening puts
// them in the upper half of a float, so their order is the floats' order.
template <>
CATQ_AVX2 uint32_t AbsMaxBits<uint16_t>(const uint16_t* x, int64_t n) {
  const __m256i abs_mask = _mm256_set1_epi16(0x7FFF);
  __m256i m0 = _mm256_setzero_si256();
  __m256i m1 = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16));
    m0 = _mm256_max_epu16(m0, _mm256_and_si256(a, abs_mask));
    m1 = _mm256_max_epu16(m1, _mm256_and_si256(b, abs_mask));
  }
  if (i + 16 <= n) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    m0 = _mm256_max_epu16(m0, _mm256_and_si256(a, abs_mask));
    i += 16;
  }
  const __m256i m01 = _mm256_max_epu16(m0, m1);
  __m128i m = _mm_max_epu16(_mm256_castsi256_si128(m01), _mm256_extracti128_si256(m01, 1));
  // minpos finds the smallest of 8 u16: the largest of m is 0xFFFF - min(~m).
  m = _mm_minpos_epu16(_mm_xor_si128(m, _mm_set1_epi16(-1)));
  uint32_t bits = (0xFFFFu - static_cast<uint32_t>(_mm_extract_epi16(m, 0))) << 16;
  for (; i < n; ++i) bits = std::max(bits, AbsBits(Widen(x[i])));
  return bits;
}

struct ValueRange {
  float lo = 0.0f;  // min(0, min x), never -0
  float hi = 0.0f;  // max(0, max x), never -0
  uint32_t abs_bits = 0;
};

// lo, hi and the largest |x| bits of x[0, n).
template <typename T>
CATQ_AVX2 ValueRange MinMax(const T* x, int64_t n) {
  __m256 lo = _mm256_setzero_ps();
  __m256 hi = _mm256_setzero_ps();
  __m256i bits = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = Load8(x + i);
    lo = _mm256_min_ps(v, lo);  // The running value second: kept on ties and NaN.
    hi = _mm256_max_ps(v, hi);
    bits = _mm256_max_epi32(bits, AbsBits8(v));
  }
  ValueRange range;
  range.lo = MinLane(lo);
  range.hi = MaxLane(hi);
  range.abs_bits = MaxLane(bits);
  for (; i < n; ++i) {
    const float v = Widen(x[i]);
    range.lo = std::min(range.lo, v);
    range.hi = std::max(range.hi, v);
    range.abs_bits = std::max(range.abs_bits, AbsBits(v));
  }
  // The lanes may have met -0 and +0 in either order; the reference's running
  // min and max start at +0 and never become -0. x + 0 maps -0 to +0 only.
  range.lo += 0.0f;
  range.hi += 0.0f;
  return range;
}

// 32 consecutive elements as 4 float vectors. bf16 is widened by unpacking
// with zeros (the bits land in the upper half of each float), which takes
// elements 0-3 and 8-11 into one vector; ToElementOrder undoes the lane
// order of either load after the levels are packed to bytes (packs works
// within 128-bit lanes).
CATQ_AVX2 inline void Load32(const float* p, __m256* v) {
  v[0] = _mm256_loadu_ps(p);
  v[1] = _mm256_loadu_ps(p + 8);
  v[2] = _mm256_loadu_ps(p + 16);
  v[3] = _mm256_loadu_ps(p + 24);
}
CATQ_AVX2 inline void Load32(const uint16_t* p, __m256* v) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16));
  v[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, a));  // 0-3, 8-11
  v[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, a));  // 4-7, 12-15
  v[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, b));  // 16-19, 24-27
  v[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, b));  // 20-23, 28-31
}

// `bytes` = packs_epi16(packs_epi32(l0, l1), packs_epi32(l2, l3)) of the
// levels of Load32's vectors, as elements 0..31.
//   f32:  4-byte runs 0-3 8-11 16-19 24-27 4-7 12-15 20-23 28-31;
//   bf16: 8-byte runs 0-7 16-23 8-15 24-31.
CATQ_AVX2 inline __m256i ToElementOrder(const float*, __m256i bytes) {
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
CATQ_AVX2 inline __m256i ToElementOrder(const uint16_t*, __m256i bytes) {
  return _mm256_permute4x64_epi64(bytes, _MM_SHUFFLE(3, 1, 2, 0));
}

// One group's grid in lanes: level = clamp(round(x / scale), lo, hi) + add.
struct LaneGrid {
  __m256 scale;
  __m256 lo;
  __m256 hi;
  int add;
};

CATQ_AVX2 inline LaneGrid MakeLaneGrid(float scale, int lo, int hi, int add) {
  return {_mm256_set1_ps(scale), _mm256_set1_ps(static_cast<float>(lo)),
          _mm256_set1_ps(static_cast<float>(hi)), add};
}

// kClamp false: the caller has shown that no level of the group leaves
// [lo, hi] (GroupNeedsClamp), so the clamp would change nothing.
// The add is left to the caller.
template <bool kClamp>
CATQ_AVX2 inline __m256i Levels8(__m256 x, const LaneGrid& grid) {
  __m256 r =
      _mm256_round_ps(_mm256_div_ps(x, grid.scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  if constexpr (kClamp) {
    r = _mm256_max_ps(r, grid.lo);
    r = _mm256_min_ps(r, grid.hi);
  }
  return _mm256_cvttps_epi32(r);
}

// Whether a group whose values lie in [lo, hi] can round outside [level_lo,
// level_hi]. x / scale and round are monotone in x (scale > 0), so the
// extreme levels are those of lo and hi.
inline bool GroupNeedsClamp(float lo, float hi, float scale, int level_lo, int level_hi) {
  return std::nearbyint(lo / scale) < static_cast<float>(level_lo) ||
         std::nearbyint(hi / scale) > static_cast<float>(level_hi);
}

// Writes the levels of x[0, n) as int8; elements past the last multiple of 8
// get scalar_level(x), grid.h's own function. kAdd false: grid.add is 0.
// The add comes before the narrowing: asymmetric 8-bit levels before it
// reach 255.
template <bool kClamp, bool kAdd, typename T, typename ScalarLevel>
CATQ_AVX2 void WriteLevels(const T* x, int64_t n, const LaneGrid& grid, ScalarLevel scalar_level,
                           int8_t* q) {
  const __m256i add = _mm256_set1_epi32(grid.add);
  auto level8 = [&grid, &add](__m256 v) CATQ_AVX2 {
    const __m256i level = Levels8<kClamp>(v, grid);
    return kAdd ? _mm256_add_epi32(level, add) : level;
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256 v[4];
    Load32(x + i, v);
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(level8(v[0]), level8(v[1])),
                                             _mm256_packs_epi32(level8(v[2]), level8(v[3])));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), ToElementOrder(x, bytes));
  }
  for (; i + 8 <= n; i += 8) {
    const __m256i a = level8(Load8(x + i));
    const __m128i words =
        _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(words, words));
  }
  for (; i < n; ++i) q[i] = static_cast<int8_t>(scalar_level(Widen(x[i])));
}

template <typename T, typename ScalarLevel>
CATQ_AVX2 void WriteLevelsClampedIf(bool clamp, const T* x, int64_t n, const LaneGrid& grid,
                                    ScalarLevel scalar_level, int8_t* q) {
  if (grid.add == 0) {
    clamp ? WriteLevels<true, false>(x, n, grid, scalar_level, q)
          : WriteLevels<false, false>(x, n, grid, scalar_level, q);
  } else {
    clamp ? WriteLevels<true, true>(x, n, grid, scalar_level, q)
          : WriteLevels<false, true>(x, n, grid, scalar_level, q);
  }
}

// Words of the last 0..3 full or partial groups of 8 levels, padding 8.
void PackTailInt4(const int8_t* q, int64_t n, uint32_t* words) {
  for (int64_t w = 0; w < WordsFor(n); ++w) {
    uint32_t word = kAllNibbles8;
    for (int i = 0; i < kNibblesPerWord && w * kNibblesPerWord + i < n; ++i) {
      word = WithNibble(word, i, static_cast<uint32_t>(q[w * kNibblesPerWord + i] + 8));
    }
    words[w] = word;
  }
}

// Nibble pairs by vpmaddubsw: byte 2j + (byte 2j+1) * 16, j = 0..15, lowest
// element in the low nibble; stored little-endian, four bytes make a word
// with element 8w + i at bits 4i, as the layout wants.
CATQ_AVX2 void PackRowInt4Avx2(const int8_t* q, int64_t cols, uint32_t* words) {
  const __m256i eight = _mm256_set1_epi8(8);
  const __m256i low_high = _mm256_set1_epi16(0x1001);  // bytes 1, 16
  int64_t k = 0;
  uint32_t* out = words;
  for (; k + 64 <= cols; k += 64, out += 8) {
    const __m256i a =
        _mm256_add_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k)), eight);
    const __m256i b =
        _mm256_add_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k + 32)), eight);
    const __m256i bytes =
        _mm256_packus_epi16(_mm256_maddubs_epi16(a, low_high), _mm256_maddubs_epi16(b, low_high));
    // packus interleaves 64-bit halves: a.lo b.lo a.hi b.hi -> a.lo a.hi b.lo b.hi.
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                        _mm256_permute4x64_epi64(bytes, _MM_SHUFFLE(3, 1, 2, 0)));
  }
  for (; k + 32 <= cols; k += 32, out += 4) {
    const __m256i pairs = _mm256_maddubs_epi16(
        _mm256_add_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k)), eight),
        low_high);
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(out),
        _mm_packus_epi16(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1)));
  }
  PackTailInt4(q + k, cols - k, out);
}

// Where a row's levels go. LevelSink: int8 levels at q[column] (QuantizeRtn).
// NibbleSink: packed words straight from the level vectors, 32 levels per
// 16 bytes, for rows whose groups all start at a multiple of 32 (per channel
// or group_size % 32 == 0), so only the row's last group can end inside a
// word; its last n % 32 levels go through `tail` and PackRowInt4Avx2.
struct LevelSink {
  int8_t* q;

  template <typename T, typename ScalarLevel>
  CATQ_AVX2 void Levels(bool clamp, const T* x, int64_t begin, int64_t n, const LaneGrid& grid,
                        ScalarLevel scalar_level) const {
    WriteLevelsClampedIf(clamp, x, n, grid, scalar_level, q + begin);
  }
  void Constant(int64_t begin, int64_t n, int level) const {
    std::memset(q + begin, level, static_cast<size_t>(n));
  }
};

struct NibbleSink {
  uint32_t* words;
  int8_t* tail;  // at least 31 bytes

  // Levels of int4 grids before the add lie in [-15, 15], so the add (+ 8
  // for the nibble) can come after the narrowing to bytes: once per 32.
  template <bool kClamp, typename T>
  CATQ_AVX2 static void Nibbles(const T* x, int64_t n, const LaneGrid& grid, uint32_t* out) {
    const __m256i nibble_add = _mm256_set1_epi8(static_cast<char>(grid.add + 8));
    const __m256i low_high = _mm256_set1_epi16(0x1001);  // bytes 1, 16
    for (int64_t i = 0; i + 32 <= n; i += 32, out += 4) {
      __m256 v[4];
      Load32(x + i, v);
      const __m256i bytes = _mm256_packs_epi16(
          _mm256_packs_epi32(Levels8<kClamp>(v[0], grid), Levels8<kClamp>(v[1], grid)),
          _mm256_packs_epi32(Levels8<kClamp>(v[2], grid), Levels8<kClamp>(v[3], grid)));
      // Nibble values 0..15 in element order, then pairs into bytes as
      // PackRowInt4Avx2 does.
      const __m256i nibbles = _mm256_add_epi8(ToElementOrder(x, bytes), nibble_add);
      const __m256i pairs = _mm256_maddubs_epi16(nibbles, low_high);
      _mm_storeu_si128(
          reinterpret_cast<__m128i*>(out),
          _mm_packus_epi16(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1)));
    }
  }

  template <typename T, typename ScalarLevel>
  CATQ_AVX2 void Levels(bool clamp, const T* x, int64_t begin, int64_t n, const LaneGrid& grid,
                        ScalarLevel scalar_level) const {
    const int64_t body = n - n % 32;
    if (clamp) {
      Nibbles<true>(x, body, grid, words + begin / 8);
    } else {
      Nibbles<false>(x, body, grid, words + begin / 8);
    }
    if (body == n) return;
    WriteLevelsClampedIf(clamp, x + body, n - body, grid, scalar_level, tail);
    PackRowInt4Avx2(tail, n - body, words + (begin + body) / 8);
  }
  void Constant(int64_t begin, int64_t n, int level) const {
    const int64_t body = n - n % 32;
    const int nibble = level + 8;
    std::memset(reinterpret_cast<uint8_t*>(words + begin / 8), nibble * 0x11,
                static_cast<size_t>(body / 2));
    if (body == n) return;
    std::memset(tail, level, static_cast<size_t>(n - body));
    PackTailInt4(tail, n - body, words + (begin + body) / 8);
  }
};

// Symmetric rows group by group: |x| max, scale, levels. (Group after group
// rather than all maxima first: the next group's loads then overlap this
// group's arithmetic, which a separate sweep over the row would serialize.)
template <typename T, typename Sink>
CATQ_AVX2 bool QuantizeRowSymmetricAvx2(const T* row, const RtnRowSpec& spec, float* scales,
                                        const Sink& sink) {
  const int64_t groups = NumGroups(spec.cols, spec.group_size);
  const int bits = spec.bits;
  const int max_level = SymmetricMaxLevel(bits);
  for (int64_t g = 0; g < groups; ++g) {
    const ColumnRange span = GroupColumns(g, spec.cols, spec.group_size);
    const int64_t n = span.end - span.begin;
    const uint32_t amax_bits = AbsMaxBits(row + span.begin, n);
    if (amax_bits >= kInfBits) return false;
    const float amax = std::bit_cast<float>(amax_bits);
    float scale = SymmetricScale(amax, bits);
    if (spec.round_scale != nullptr) scale = spec.round_scale(scale);
    scales[g] = scale;
    if (scale > 0.0f) {
      sink.Levels(GroupNeedsClamp(-amax, amax, scale, -max_level, max_level), row + span.begin,
                  span.begin, n, MakeLaneGrid(scale, -max_level, max_level, 0),
                  [scale, bits](float v) { return SymmetricLevel(v, scale, bits); });
    } else {
      sink.Constant(span.begin, n, 0);
    }
  }
  return true;
}

// Asymmetric rows group by group: range, grid, levels.
template <typename T, typename Sink>
CATQ_AVX2 bool QuantizeRowAsymmetricAvx2(const T* row, const RtnRowSpec& spec, float* scales,
                                         int8_t* zeros, const Sink& sink) {
  const int64_t groups = NumGroups(spec.cols, spec.group_size);
  const int bits = spec.bits;
  const int offset = SignedOffset(bits);
  for (int64_t g = 0; g < groups; ++g) {
    const ColumnRange span = GroupColumns(g, spec.cols, spec.group_size);
    const T* x = row + span.begin;
    const int64_t n = span.end - span.begin;
    const ValueRange range = MinMax(x, n);
    if (range.abs_bits >= kInfBits) return false;
    const AsymmetricGrid grid = MakeAsymmetricGrid(range.lo, range.hi, bits, spec.round_scale);
    scales[g] = grid.scale;
    zeros[g] = static_cast<int8_t>(grid.zero_u - offset);
    if (grid.scale > 0.0f) {
      const int level_hi = AsymmetricMaxLevel(bits) - grid.zero_u;
      sink.Levels(
          GroupNeedsClamp(range.lo, range.hi, grid.scale, -grid.zero_u, level_hi), x, span.begin, n,
          MakeLaneGrid(grid.scale, -grid.zero_u, level_hi, grid.zero_u - offset),
          [grid, bits, offset](float v) { return AsymmetricLevel(v, grid, bits) - offset; });
    } else {
      sink.Constant(span.begin, n, grid.zero_u - offset);
    }
  }
  return true;
}

template <typename T>
CATQ_AVX2 bool QuantizeRowAvx2(const T* row, const RtnRowSpec& spec, int8_t* q, float* scales,
                               int8_t* zeros) {
  const LevelSink sink{q};
  return spec.symmetric ? QuantizeRowSymmetricAvx2(row, spec, scales, sink)
                        : QuantizeRowAsymmetricAvx2(row, spec, scales, zeros, sink);
}

template <typename T>
CATQ_AVX2 bool QuantizePackRowAvx2(const T* row, const RtnRowSpec& spec, int8_t* scratch,
                                   uint32_t* words, float* scales, int8_t* zeros) {
  if (spec.group_size > 0 && spec.group_size % 32 != 0) {
    // Groups end inside words: levels first, then whole words.
    if (!QuantizeRowAvx2(row, spec, scratch, scales, zeros)) return false;
    PackRowInt4Avx2(scratch, spec.cols, words);
    return true;
  }
  const NibbleSink sink{words, scratch};
  return spec.symmetric ? QuantizeRowSymmetricAvx2(row, spec, scales, sink)
                        : QuantizeRowAsymmetricAvx2(row, spec, scales, zeros, sink);
}

CATQ_AVX2 bool LevelsWithinAvx2(const int8_t* levels, int64_t n, int lo, int hi) {
  __m256i low = _mm256_set1_epi8(static_cast<char>(lo));
  __m256i high = _mm256_set1_epi8(static_cast<char>(hi));
  __m256i outside = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(levels + i));
    outside = _mm256_or_si256(outside, _mm256_cmpgt_epi8(low, v));
    outside = _mm256_or_si256(outside, _mm256_cmpgt_epi8(v, high));
  }
  if (!_mm256_testz_si256(outside, outside)) return false;
  for (; i < n; ++i) {
    if (levels[i] < lo || levels[i] > hi) return false;
  }
  return true;
}

constexpr RtnKernels kAvx2 = {"avx2",
                              QuantizeRowAvx2<float>,
                              QuantizeRowAvx2<uint16_t>,
                              QuantizePackRowAvx2<float>,
                              QuantizePackRowAvx2<uint16_t>,
                              PackRowInt4Avx2,
                              LevelsWithinAvx2};

}  // namespace

const RtnKernels* Avx2RtnKernels() {
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  return has_avx2 ? &kAvx2 : nullptr;
}

#else  // !CATQ_QUANT_HAVE_AVX2_KERNELS

const RtnKernels* Avx2RtnKernels() { return nullptr; }

#endif

}  // namespace catq::quant_internal
