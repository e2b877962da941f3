#include "core/cat/mixing_matrix.h"

#include <cblas.h>

#include <Eigen/QR>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numbers>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/cat/hadamard_construction.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// ---------------------------------------------------------------------------
// Fast Walsh-Hadamard transform.
//
// The kernels work on a row-major [n, w] array and transform along n, for all
// w columns at once: for w = 1 that is the plain transform of n values, for
// w = q it is H_(2^a) applied down the columns of V. A butterfly of stage h
// then pairs rows j and j + h, and since rows i .. i + h - 1 are contiguous,
// one butterfly call covers two disjoint contiguous spans of h * w values.
// Simple loops over such spans are what the compiler vectorizes.

// Span lengths are cut into chunks of this many values with a fixed trip
// count, so that g++'s -O2 vectorizer (cost model "very cheap": no epilogue,
// no runtime alias checks) still turns each chunk into vector code.
constexpr int kChunk = 8;

// Stages whose butterflies fit in a block of this many bytes are run block by
// block, so the block stays in L1 across those stages; only the stages with a
// longer reach sweep the whole array.
constexpr int64_t kBlockBytes = 16 * 1024;

// (a, b) <- (a + b, a - b), times `scale` on the last stage. The spans never
// overlap; __restrict tells the compiler so.
template <typename T, bool kScale>
void Butterfly(T* __restrict a, T* __restrict b, int64_t len, T scale) {
  int64_t k = 0;
  for (; k + kChunk <= len; k += kChunk) {
    for (int j = 0; j < kChunk; ++j) {
      const T x = a[k + j];
      const T y = b[k + j];
      a[k + j] = kScale ? (x + y) * scale : x + y;
      b[k + j] = kScale ? (x - y) * scale : x - y;
    }
  }
  for (; k < len; ++k) {
    const T x = a[k];
    const T y = b[k];
    a[k] = kScale ? (x + y) * scale : x + y;
    b[k] = kScale ? (x - y) * scale : x - y;
  }
}

// One stage (reach h) over `rows` rows of width w.
template <typename T, bool kScale>
void Stage(T* v, int64_t rows, int64_t w, int64_t h, T scale) {
  const int64_t span = h * w;
  for (int64_t i = 0; i < rows; i += 2 * h) {
    Butterfly<T, kScale>(v + i * w, v + i * w + span, span, scale);
  }
}

// The first three stages (h = 1, 2, 4) for w = 1, where spans are shorter
// than a chunk: an 8-point transform per group of 8 values, in registers.
template <typename T, bool kScale>
void Radix8(T* v, int64_t n, T scale) {
  for (int64_t i = 0; i < n; i += 8) {
    T* x = v + i;
    const T a0 = x[0] + x[1], a1 = x[0] - x[1], a2 = x[2] + x[3], a3 = x[2] - x[3];
    const T a4 = x[4] + x[5], a5 = x[4] - x[5], a6 = x[6] + x[7], a7 = x[6] - x[7];
    const T b0 = a0 + a2, b1 = a1 + a3, b2 = a0 - a2, b3 = a1 - a3;
    const T b4 = a4 + a6, b5 = a5 + a7, b6 = a4 - a6, b7 = a5 - a7;
    const T s = kScale ? scale : T{1};
    x[0] = (b0 + b4) * s;
    x[1] = (b1 + b5) * s;
    x[2] = (b2 + b6) * s;
    x[3] = (b3 + b7) * s;
    x[4] = (b0 - b4) * s;
    x[5] = (b1 - b5) * s;
    x[6] = (b2 - b6) * s;
    x[7] = (b3 - b7) * s;
  }
}

// Runs the stages h = h_begin, 2 h_begin, ... while 2h <= rows on `rows` rows;
// the stage with reach n / 2 (the last of the whole transform) scales.
template <typename T>
void Stages(T* v, int64_t rows, int64_t w, int64_t n, int64_t h_begin, T scale) {
  int64_t h = h_begin;
  if (h == 1 && w == 1 && rows >= 8) {
    if (n == 8) {
      Radix8<T, true>(v, rows, scale);
    } else {
      Radix8<T, false>(v, rows, scale);
    }
    h = 8;
  }
  for (; 2 * h <= rows; h *= 2) {
    if (2 * h == n) {
      Stage<T, true>(v, rows, w, h, scale);
    } else {
      Stage<T, false>(v, rows, w, h, scale);
    }
  }
}

// The normalized transform along n of the row-major [n, w] array v.
template <typename T>
void FwhtRows(T* v, int64_t n, int64_t w) {
  if (n == 1) return;  // H_1 = [1].
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(n)));
  int64_t block = n;
  while (block > 2 && block * w * static_cast<int64_t>(sizeof(T)) > kBlockBytes) block /= 2;
  for (int64_t b = 0; b < n; b += block) Stages(v + b * w, block, w, n, 1, scale);
  if (block < n) Stages(v, n, w, n, block, scale);
}

template <typename T>
void FwhtStrided(T* v, int64_t n, int64_t stride) {
  assert(IsPowerOfTwo(n) && stride >= 1);
  if (stride == 1) {
    FwhtRows(v, n, 1);
    return;
  }
  if (n == 1) return;
  for (int64_t h = 1; h < n; h *= 2) {
    for (int64_t i = 0; i < n; i += 2 * h) {
      for (int64_t j = i; j < i + h; ++j) {
        const T x = v[j * stride];
        const T y = v[(j + h) * stride];
        v[j * stride] = x + y;
        v[(j + h) * stride] = x - y;
      }
    }
  }
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(n)));
  for (int64_t i = 0; i < n; ++i) v[i * stride] *= scale;
}

// ---------------------------------------------------------------------------
// H = H_(2^a) (x) Q_q on rows.

// out[m, q] = v[m, q] * R for row-major v and out, with R = Q^T (transpose
// false) or R = Q (transpose true), Q the column-major q x q matrix at `rot`.
// Read as row-major, Q's storage is Q^T, hence NoTrans for R = Q^T. BLAS
// rather than an Eigen product: OpenBLAS picks kernels for the CPU it runs
// on, where Eigen is held to the baseline ISA of the build; with [64 x 43]
// blocks the whole apply ran about 2x (float) and 5x (double) faster.
void GemmRowMajor(int64_t m, int64_t q, const float* v, const float* rot, bool transpose,
                  float* out) {
  const int mi = static_cast<int>(m);
  const int qi = static_cast<int>(q);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, transpose ? CblasTrans : CblasNoTrans, mi, qi, qi, 1.0f,
              v, qi, rot, qi, 0.0f, out, qi);
}

void GemmRowMajor(int64_t m, int64_t q, const double* v, const double* rot, bool transpose,
                  double* out) {
  const int mi = static_cast<int>(m);
  const int qi = static_cast<int>(q);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, transpose ? CblasTrans : CblasNoTrans, mi, qi, qi, 1.0,
              v, qi, rot, qi, 0.0, out, qi);
}

// Every row v (length pow2 * q, rows `row_stride` apart) becomes
// vec(H_(2^a) V R) with V the [pow2, q] view of v: R = Q^T for H, R = Q for
// H^T. The q x q product goes into a scratch row (it cannot be done in place),
// the column transforms run there, and the row is copied back. One row at a
// time keeps the working set at two rows, in cache for LLM dimensions.
template <typename T>
void ApplyRows(T* x, int64_t rows, int64_t row_stride, int64_t pow2, int64_t q,
               const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& rot, bool transpose) {
  const int64_t d = pow2 * q;
  if (q == 1) {
    for (int64_t i = 0; i < rows; ++i) FwhtRows(x + i * row_stride, pow2, 1);
    return;
  }
  std::vector<T> scratch(static_cast<size_t>(d));
  for (int64_t i = 0; i < rows; ++i) {
    T* row = x + i * row_stride;
    GemmRowMajor(pow2, q, row, rot.data(), transpose, scratch.data());
    FwhtRows(scratch.data(), pow2, q);
    std::memcpy(row, scratch.data(), static_cast<size_t>(d) * sizeof(T));
  }
}

// ---------------------------------------------------------------------------
// Random orthogonal Q_q.

// SplitMix64 (Vigna): a fixed, portable 64-bit generator, so that Q_q does
// not depend on the standard library's distributions.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t state) : state_(state) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// A q x q matrix of independent standard normals, filled row by row, two at
// a time by Box-Muller from 53-bit uniforms (the first in (0, 1], so that its
// log is finite). The generator starts from (seed, q), so Q_3 and Q_43 of one
// seed come from unrelated streams.
Eigen::MatrixXd GaussianMatrix(int64_t q, uint64_t seed) {
  SplitMix64 gen(seed ^ SplitMix64(static_cast<uint64_t>(q)).Next());
  constexpr double kTwoPi = 2.0 * std::numbers::pi;
  constexpr double kUlp53 = 1.0 / 9007199254740992.0;  // 2^-53
  Eigen::MatrixXd g(q, q);
  const int64_t count = q * q;
  for (int64_t k = 0; k < count; k += 2) {
    const double u1 = static_cast<double>((gen.Next() >> 11) + 1) * kUlp53;
    const double u2 = static_cast<double>(gen.Next() >> 11) * kUlp53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    g(k / q, k % q) = r * std::cos(kTwoPi * u2);
    if (k + 1 < count) g((k + 1) / q, (k + 1) % q) = r * std::sin(kTwoPi * u2);
  }
  return g;
}

// Q of the QR decomposition of a Gaussian matrix, with column j negated where
// R(j, j) < 0. Householder QR leaves the signs of R's diagonal to the
// algorithm (Eigen's makes R(0, 0) = -sign(G(0, 0)) |g_0|, so Q(0, 0) would
// always be negative); fixing R's diagonal positive makes the decomposition
// unique and Q Haar distributed.
Eigen::MatrixXd RandomOrthogonal(int64_t q, uint64_t seed) {
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(GaussianMatrix(q, seed));
  Eigen::MatrixXd result = qr.householderQ();
  for (int64_t j = 0; j < q; ++j) {
    if (qr.matrixQR()(j, j) < 0) result.col(j) *= -1.0;
  }
  return result;
}

// CheckStoredRotQ: `rot_q` can be the Q_q of a mixing matrix of dimension d
// (see MixingMatrix::FromStored).
absl::Status CheckStoredRotQ(int64_t d, const Eigen::MatrixXd& rot_q) {
  const int64_t q = rot_q.rows();
  if (q < 1 || rot_q.cols() != q) {
    return absl::InvalidArgumentError(
        absl::StrCat("rot_q is ", rot_q.rows(), "x", rot_q.cols(), ", expected a square matrix"));
  }
  if (q > MixingMatrix::kMaxQ) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rot_q is ", q, "x", q, ", above the largest supported q, ", MixingMatrix::kMaxQ));
  }
  if (d % q != 0 || !IsPowerOfTwo(d / q)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rot_q is ", q, "x", q, ", but d / q must be a power of two (d = ", d, ")"));
  }
  for (int64_t i = 0; i < q; ++i) {
    for (int64_t j = 0; j < q; ++j) {
      if (!std::isfinite(rot_q(i, j))) {
        return absl::InvalidArgumentError(
            absl::StrCat("rot_q[", i, ", ", j, "] is not finite (", rot_q(i, j), ")"));
      }
    }
  }
  if (q == 1 && std::abs(rot_q(0, 0) - 1.0) > MixingMatrix::kStoredOrthogonalityTolerance) {
    // The q = 1 path is the plain FWHT, which ignores Q: only [1] means that.
    return absl::InvalidArgumentError(
        absl::StrCat("rot_q is 1x1 holding ", rot_q(0, 0), "; q = 1 needs [1]"));
  }
  const Eigen::MatrixXd error = rot_q.transpose() * rot_q - Eigen::MatrixXd::Identity(q, q);
  Eigen::Index row = 0, col = 0;
  const double max_error = error.cwiseAbs().maxCoeff(&row, &col);
  if (!(max_error <= MixingMatrix::kStoredOrthogonalityTolerance)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rot_q (", q, "x", q, ") is not orthogonal: (Q^T Q - I)[", row, ", ", col,
        "] = ", error(row, col), ", tolerance ", MixingMatrix::kStoredOrthogonalityTolerance));
  }
  return absl::OkStatus();
}

// HasHadamardMagnitudes: every |Q(i, j)| is 1/sqrt(q) to float precision, as
// in a normalized Hadamard matrix.
bool HasHadamardMagnitudes(const Eigen::MatrixXd& rot_q) {
  const double expected = 1.0 / std::sqrt(static_cast<double>(rot_q.rows()));
  return ((rot_q.cwiseAbs().array() - expected).abs() <= 1e-6 * expected).all();
}

int64_t OddPart(int64_t d) {
  while (d % 2 == 0) d /= 2;
  return d;
}

}  // namespace

absl::StatusOr<MixingMatrix> MixingMatrix::Create(int64_t d, const MixingOptions& options) {
  if (d < 1) {
    return absl::InvalidArgumentError(absl::StrCat("mixing dimension d = ", d, " must be >= 1"));
  }
  if (options.max_hadamard_q_ratio < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_hadamard_q_ratio = ", options.max_hadamard_q_ratio, " must be >= 1"));
  }
  if (d > std::numeric_limits<int>::max()) {
    // The q x q step hands [2^a, q] blocks to BLAS, whose sizes are int.
    return absl::InvalidArgumentError(
        absl::StrCat("mixing dimension d = ", d, " is above ", std::numeric_limits<int>::max()));
  }
  const int64_t odd = OddPart(d);
  int64_t q = odd;
  bool hadamard = false;
  // Hadamard orders above 2 are multiples of 4, so the candidates are
  // 4 odd, 8 odd, ...; the first one constructed is the cheapest. An odd part
  // of 1 keeps q = 1: H is then the Sylvester matrix itself.
  if (options.prefer_hadamard_q && odd > 1 && d % 4 == 0) {
    for (int64_t candidate = 4 * odd; candidate / odd <= options.max_hadamard_q_ratio;
         candidate *= 2) {
      if (IsConstructedHadamardOrder(candidate)) {
        q = candidate;
        hadamard = true;
        break;
      }
      if (candidate > d / 2 || d % (2 * candidate) != 0) break;
    }
  }
  if (q > kMaxQ) {
    return absl::InvalidArgumentError(absl::StrCat("mixing dimension d = ", d, ": q = ", q,
                                                   " is above the largest supported q, ", kMaxQ));
  }
  Eigen::MatrixXd rot;
  if (hadamard) {
    CATQ_ASSIGN_OR_RETURN(rot, HadamardMatrix(q));
  } else if (q == 1) {
    rot = Eigen::MatrixXd::Identity(1, 1);
  } else {
    rot = RandomOrthogonal(q, options.seed);
  }
  return MixingMatrix(d / q, q, std::move(rot), hadamard);
}

absl::StatusOr<MixingMatrix> MixingMatrix::FromStored(int64_t d,
                                                      std::optional<Eigen::MatrixXd> rot_q) {
  if (d < 1 || d > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("mixing dimension d = ", d, " is outside [1, ",
                                                   std::numeric_limits<int>::max(), "]"));
  }
  if (!rot_q.has_value()) {
    if (!IsPowerOfTwo(d)) {
      return absl::InvalidArgumentError(absl::StrCat("no rot_q means q = 1, but d = ", d,
                                                     " is not a power of two: rot_q is required"));
    }
    return MixingMatrix(d, 1, Eigen::MatrixXd::Identity(1, 1), /*q_is_hadamard=*/false);
  }
  CATQ_RETURN_IF_ERROR(CheckStoredRotQ(d, *rot_q));
  const int64_t q = rot_q->rows();
  const bool hadamard = q > 1 && HasHadamardMagnitudes(*rot_q);
  return MixingMatrix(d / q, q, *std::move(rot_q), hadamard);
}

void MixingMatrix::ApplyToRows(Eigen::Ref<RowMatrixXd> x) const {
  assert(x.cols() == dim());
  ApplyRows<double>(x.data(), x.rows(), x.outerStride(), pow2_, q_, rot_q_, /*transpose=*/false);
}

void MixingMatrix::ApplyToRows(Eigen::Ref<RowMatrixXf> x) const {
  assert(x.cols() == dim());
  ApplyRows<float>(x.data(), x.rows(), x.outerStride(), pow2_, q_, rot_q_f_, /*transpose=*/false);
}

void MixingMatrix::ApplyTransposeToRows(Eigen::Ref<RowMatrixXd> x) const {
  assert(x.cols() == dim());
  ApplyRows<double>(x.data(), x.rows(), x.outerStride(), pow2_, q_, rot_q_, /*transpose=*/true);
}

void MixingMatrix::ApplyTransposeToRows(Eigen::Ref<RowMatrixXf> x) const {
  assert(x.cols() == dim());
  ApplyRows<float>(x.data(), x.rows(), x.outerStride(), pow2_, q_, rot_q_f_, /*transpose=*/true);
}

Eigen::MatrixXd MixingMatrix::Dense() const {
  const Eigen::MatrixXd sylvester =
      SylvesterSignMatrix(pow2_) / std::sqrt(static_cast<double>(pow2_));
  Eigen::MatrixXd h(dim(), dim());
  for (int64_t b = 0; b < pow2_; ++b) {
    for (int64_t a = 0; a < pow2_; ++a) h.block(a * q_, b * q_, q_, q_) = sylvester(a, b) * rot_q_;
  }
  return h;
}

void FastWalshHadamard(double* v, int64_t n, int64_t stride) { FwhtStrided(v, n, stride); }

void FastWalshHadamard(float* v, int64_t n, int64_t stride) { FwhtStrided(v, n, stride); }

absl::StatusOr<Eigen::MatrixXd> HadamardMatrix(int64_t n) {
  CATQ_ASSIGN_OR_RETURN(Eigen::MatrixXd h, HadamardSignMatrix(n));
  h /= std::sqrt(static_cast<double>(n));
  return h;
}

}  // namespace catq
