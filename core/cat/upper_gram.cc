// The AVX2/FMA kernels of upper_gram.h. Only this file is compiled for AVX2
// (a target pragma, not a flag for the whole library), and it includes no
// header with inline code besides the intrinsics, so that no AVX2 copy of a
// shared inline function can end up in code that runs on any CPU.
#include "core/cat/upper_gram.h"

#include <immintrin.h>

#include <cstdint>

namespace catq::upper_gram {

bool Available() {
  static const bool available = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return available;
}

// Everything below is compiled for AVX2 and FMA (callers check Available()
// first). GCC and clang spell that differently; clang ignores GCC's pragma.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace {

constexpr int64_t kTileRows = 4;    // i: broadcast from the panel
constexpr int64_t kVectorSize = 4;  // doubles per ymm register

// Adds to the kTileRows x (4 * kVectors) tile at `out` (row stride ldo), C's
// tile at (i0, j0), the sum over the panel's tokens of p_ti p_tj, the whole
// tile in registers. With 3 vectors:
// 12 accumulators, 3 loads and 4 broadcasts per 12 FMAs. With 1 vector the
// tokens alternate between two sets of accumulators, so that 4 chains of
// FMAs do not wait on their latency.
template <int kVectors>
__attribute__((always_inline)) inline void Tile(const double* panel, int64_t rows, int64_t ldp,
                                                int64_t i0, int64_t j0, double* out, int64_t ldo) {
  __m256d acc[kTileRows][kVectors];
#pragma GCC unroll 4
  for (int r = 0; r < kTileRows; ++r) {
#pragma GCC unroll 3
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_setzero_pd();
  }
  const double* p = panel;
  int64_t t = 0;
  if constexpr (kVectors == 1) {
    __m256d odd[kTileRows];
#pragma GCC unroll 4
    for (int r = 0; r < kTileRows; ++r) odd[r] = _mm256_setzero_pd();
    for (; t + 2 <= rows; t += 2, p += 2 * ldp) {
      const __m256d b0 = _mm256_load_pd(p + j0);
      const __m256d b1 = _mm256_load_pd(p + ldp + j0);
#pragma GCC unroll 4
      for (int r = 0; r < kTileRows; ++r) {
        acc[r][0] = _mm256_fmadd_pd(_mm256_broadcast_sd(p + i0 + r), b0, acc[r][0]);
        odd[r] = _mm256_fmadd_pd(_mm256_broadcast_sd(p + ldp + i0 + r), b1, odd[r]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < kTileRows; ++r) acc[r][0] = _mm256_add_pd(acc[r][0], odd[r]);
  }
  for (; t < rows; ++t, p += ldp) {
    __m256d b[kVectors];
#pragma GCC unroll 3
    for (int v = 0; v < kVectors; ++v) b[v] = _mm256_load_pd(p + j0 + kVectorSize * v);
#pragma GCC unroll 4
    for (int r = 0; r < kTileRows; ++r) {
      const __m256d a = _mm256_broadcast_sd(p + i0 + r);
#pragma GCC unroll 3
      for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_fmadd_pd(a, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < kTileRows; ++r) {
#pragma GCC unroll 3
    for (int v = 0; v < kVectors; ++v) {
      double* sum = out + r * ldo + kVectorSize * v;
      _mm256_storeu_pd(sum, _mm256_add_pd(_mm256_loadu_pd(sum), acc[r][v]));
    }
  }
}

// A tile that reaches past row or column n - 1 of C (whose padding would
// land outside the matrix): summed into a local tile, then only its part
// inside C added.
template <int kVectors>
void EdgeTile(const double* panel, int64_t rows, int64_t ldp, int64_t i0, int64_t j0, int64_t n,
              double* c, int64_t ldc) {
  constexpr int64_t kCols = kVectorSize * kVectors;
  alignas(32) double local[kTileRows * kCols] = {};
  Tile<kVectors>(panel, rows, ldp, i0, j0, local, kCols);
  for (int64_t r = 0; r < kTileRows && i0 + r < n; ++r) {
    for (int64_t v = 0; v < kCols && j0 + v < n; ++v) {
      c[(i0 + r) * ldc + j0 + v] += local[r * kCols + v];
    }
  }
}

template <int kVectors>
void AnyTile(const double* panel, int64_t rows, int64_t ldp, int64_t i0, int64_t j0, int64_t n,
             double* c, int64_t ldc) {
  if (i0 + kTileRows <= n && j0 + kVectorSize * kVectors <= n) {
    Tile<kVectors>(panel, rows, ldp, i0, j0, c + i0 * ldc + j0, ldc);
  } else {
    EdgeTile<kVectors>(panel, rows, ldp, i0, j0, n, c, ldc);
  }
}

}  // namespace

void PackPanel(const float* x, int64_t x_stride, int64_t rows, int64_t n, double* panel) {
  const int64_t ldp = PanelStride(n);
  for (int64_t t = 0; t < rows; ++t) {
    const float* in = x + t * x_stride;
    double* out = panel + t * ldp;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 v = _mm256_loadu_ps(in + j);
      _mm256_store_pd(out + j, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
      _mm256_store_pd(out + j + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    for (; j + 4 <= n; j += 4) _mm256_store_pd(out + j, _mm256_cvtps_pd(_mm_loadu_ps(in + j)));
    for (; j < n; ++j) out[j] = static_cast<double>(in[j]);
    for (; j < ldp; ++j) out[j] = 0.0;
  }
}

// The upper triangle in strips of 4 rows; strip i0 covers columns [i0, n)
// with 12-wide tiles, led by one 4- or 8-wide tile on the diagonal when the
// strip's width is not a multiple of 12.
void AddUpperGram(const double* panel, int64_t rows, int64_t n, double* c, int64_t ldc) {
  const int64_t ldp = PanelStride(n);
  for (int64_t i0 = 0; i0 < ldp; i0 += kTileRows) {
    int64_t j0 = i0;
    switch ((ldp - i0) % 12) {
      case 4:
        AnyTile<1>(panel, rows, ldp, i0, j0, n, c, ldc);
        j0 += 4;
        break;
      case 8:
        AnyTile<2>(panel, rows, ldp, i0, j0, n, c, ldc);
        j0 += 8;
        break;
      default:
        break;
    }
    for (; j0 < ldp; j0 += 12) AnyTile<3>(panel, rows, ldp, i0, j0, n, c, ldc);
  }
}

TokenScan ScanToken(const float* x, int64_t n, float* absmax) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 inf = _mm256_set1_ps(__builtin_inff());
  __m256 hi = _mm256_setzero_ps();
  __m256 lo = _mm256_setzero_ps();
  // All ones while every |x| < inf; a NaN compares false.
  __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    const __m256 magnitude = _mm256_andnot_ps(sign, v);
    hi = _mm256_max_ps(hi, v);
    lo = _mm256_min_ps(lo, v);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(magnitude, inf, _CMP_LT_OQ));
    _mm256_storeu_ps(absmax + j, _mm256_max_ps(_mm256_loadu_ps(absmax + j), magnitude));
  }
  alignas(32) float his[8];
  alignas(32) float los[8];
  _mm256_store_ps(his, hi);
  _mm256_store_ps(los, lo);
  TokenScan scan;
  scan.finite = _mm256_movemask_ps(finite) == 0xff;
  for (int i = 0; i < 8; ++i) {
    scan.hi = his[i] > scan.hi ? his[i] : scan.hi;
    scan.lo = los[i] < scan.lo ? los[i] : scan.lo;
  }
  for (; j < n; ++j) {
    const float v = x[j];
    const float magnitude = v < 0.0f ? -v : v;
    if (!(magnitude < __builtin_inff())) scan.finite = false;
    scan.hi = v > scan.hi ? v : scan.hi;
    scan.lo = v < scan.lo ? v : scan.lo;
    absmax[j] = magnitude > absmax[j] ? magnitude : absmax[j];
  }
  return scan;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

}  // namespace catq::upper_gram
