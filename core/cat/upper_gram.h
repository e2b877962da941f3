// File: core/cat/upper_gram.h
//
// The kernel behind block-mode SiteStatistics: C += P^T P into the upper
// triangle of a small symmetric block, for P a panel of a few dozen tokens by
// one block of channels, converted from float32 to float64 on the way in.
//
// Why not OpenBLAS: its DSYRK on 128 columns walks the triangle in strips of
// 8 columns with small GEMM calls and a scalar add-back of each diagonal
// tile, and runs at about 0.64x of its DGEMM (bench/README.md,
// catq_bench_statistics). Here the panel stays in L1, every 4 x 12 tile of
// the upper triangle is summed in 12 AVX2 registers over the panel's tokens
// (3 loads and 4 broadcasts per 12 FMAs), and only the diagonal 4 x 4 parts
// do any wasted work.
//
//   if (upper_gram::Available()) {
//     const int64_t ld = upper_gram::PanelStride(n);
//     std::vector<double, ...> panel(rows * ld);            // 32-byte aligned
//     upper_gram::PackPanel(x, x_stride, rows, n, panel.data());
//     upper_gram::AddUpperGram(panel.data(), rows, n, c, n);
//   }
//
// Numerics: plain float64 FMAs, each entry C_ij summed over the panel's
// tokens in token order, then added to C: the same bits on every run and
// thread count. Lower-triangle entries of C are never read; some near the
// diagonal are written (with lower-triangle sums), which callers ignore.
//
// ScanToken, the per-token check and range scan that goes with the kernel,
// reads each value once where the portable code needs four passes.
//
// The functions need AVX2 and FMA: call them only when Available() says so
// (checked once, at run time); otherwise use cblas_dsyrk.
#ifndef CATQ_CORE_CAT_UPPER_GRAM_H_
#define CATQ_CORE_CAT_UPPER_GRAM_H_

#include <cstdint>

namespace catq::upper_gram {

// Available: whether this CPU runs the kernels (AVX2 and FMA).
bool Available();

// PanelStride: the row stride, in doubles, of a panel of n channels: n
// rounded up to a multiple of 4 (the padding holds zeros).
inline int64_t PanelStride(int64_t n) { return (n + 3) / 4 * 4; }

// PackPanel
//
// Writes the float64 panel of `rows` tokens by `n` channels of `x` (float32,
// row t at x + t * x_stride) to `panel` (row stride PanelStride(n), padding
// columns zero). REQUIRES: Available(); `panel` 32-byte aligned with room
// for rows * PanelStride(n) doubles.
void PackPanel(const float* x, int64_t x_stride, int64_t rows, int64_t n, double* panel);

// AddUpperGram
//
// C += P^T P on the upper triangle of the n x n row-major `c` (row stride
// ldc >= n), for the panel P written by PackPanel. REQUIRES: Available().
// Fastest when the panel fits in L1 (rows * PanelStride(n) * 8 bytes of
// 32 KB or less).
void AddUpperGram(const double* panel, int64_t rows, int64_t n, double* c, int64_t ldc);

// What SiteStatistics records of one token besides x x^T.
struct TokenScan {
  float hi = 0.0f;  // max(x, 0)
  float lo = 0.0f;  // min(x, 0)
  bool finite = true;
};

// ScanToken
//
// Scans the n floats of one token in a single pass: max(x, 0), min(x, 0),
// whether every value is finite, and absmax[j] = max(absmax[j], |x_j|). The
// same values as any other order (maxima and minima are exact); when a value
// is not finite, hi, lo and absmax are meaningless. REQUIRES: Available().
TokenScan ScanToken(const float* x, int64_t n, float* absmax);

}  // namespace catq::upper_gram

#endif  // CATQ_CORE_CAT_UPPER_GRAM_H_
