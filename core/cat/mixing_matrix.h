// File: core/cat/mixing_matrix.h
//
// The orthogonal mixing H of cat-method.md section 2.2 for any dimension d.
// Write d = 2^a * q: q is the odd part of d (2^a the largest power of two
// dividing d), or an even q = d / 2^j when a Hadamard matrix of that order is
// constructed here (hadamard_construction.h; d = 12 gives 2^a = 1, q = 12,
// d = 24 gives 2^a = 2, q = 12). Then
//
//   H = H_(2^a) (x) Q_q,   index j = p * q + t  (p over H_(2^a), t over Q_q),
//
// H_(2^a) the normalized Sylvester Hadamard matrix (applied as a fast
// Walsh-Hadamard transform), Q_q an orthogonal q x q matrix: a Hadamard matrix
// of order q where one is constructed (normalized), else a seeded random
// orthogonal matrix. q = 1 means H is the pure FWHT.
//
// Applying H to a vector v views it as the [2^a, q] row-major matrix V
// (V(p, t) = v[p * q + t]) and computes H v = vec(H_(2^a) V Q_q^T): each row
// of V times Q_q^T (q multiply-adds per element), then a FWHT down each column
// (a adds per element).
//
//   CATQ_ASSIGN_OR_RETURN(MixingMatrix h, MixingMatrix::Create(172, {}));
//   h.ApplyToRows(x);           // each row x_i <- H x_i  (x is tokens x d)
//   h.ApplyTransposeToRows(w);  // each row w_i <- H^T w_i, i.e. W <- W H^T = W H^-1
//
// Thread-safety: const methods are safe to call concurrently. The q x q step
// runs through OpenBLAS and uses as many threads as OpenBLAS is set to (the
// worker pool sets one).
#ifndef CATQ_CORE_CAT_MIXING_MATRIX_H_
#define CATQ_CORE_CAT_MIXING_MATRIX_H_

#include <cstdint>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "core/math/eigen_types.h"

namespace catq {

struct MixingOptions {
  // Seed of the random orthogonal Q_q when no Hadamard matrix of order q is
  // used. The same (seed, q) gives the same Q_q on every platform. Default 0.
  uint64_t seed = 0;
  // Use a known Hadamard matrix of order q (12, 20, 28, ... where constructed)
  // instead of a random orthogonal one. Default true.
  bool prefer_hadamard_q = true;
  // A Hadamard Q_q of order q = d / 2^j is used only when q <= this ratio
  // times the odd part of d, since the q x q step costs q multiply-adds per
  // element where the random Q of the odd part costs odd(d). Among the orders
  // allowed, the smallest is taken (the largest 2^a). Default 4, which admits
  // only q = 4 * odd(d), the smallest order above 2 a Hadamard matrix can have
  // (d = 11008 = 256 * 43 keeps the random Q_43, not a Hadamard Q_5504).
  // At least 1.
  int64_t max_hadamard_q_ratio = 4;
};

class MixingMatrix {
 public:
  // kMaxQ: the largest q supported. Building a random Q_q costs O(q^3) and
  // q^2 doubles; LLM dimensions have odd parts below 100.
  static constexpr int64_t kMaxQ = 8192;

  // MixingMatrix::Create
  //
  // Chooses q as described above and builds Q_q. InvalidArgument for d < 1 or
  // d above INT_MAX, for max_hadamard_q_ratio < 1, and when q would exceed
  // kMaxQ (the message names d and q).
  static absl::StatusOr<MixingMatrix> Create(int64_t d, const MixingOptions& options);

  // kStoredOrthogonalityTolerance: the largest |(Q^T Q - I)(i, j)| FromStored
  // accepts. A stored rot_q is an orthogonal matrix rounded to float32, off by
  // about 1e-7; a producer computing Q in float32 may be off by q * 6e-8.
  // Anything further off is not the orthogonal factor the format promises.
  static constexpr double kStoredOrthogonalityTolerance = 1e-4;

  // MixingMatrix::FromStored
  //
  // The mixing matrix of dimension d as an output directory stores it
  // (architecture.md section 4): `rot_q` is the q x q factor Q_q of
  // H = H_(d/q) (x) Q_q; absent means q = 1 (H is the normalized Walsh-Hadamard
  // transform of order d). Q_q is used exactly as given (not re-orthogonalized),
  // so applying the result to float rows gives the same bits as the matrix
  // whose rot_q() was stored. q_is_hadamard() is true when every |Q(i, j)| is
  // 1/sqrt(q) to float precision. InvalidArgument when d < 1 or above INT_MAX,
  // rot_q is not square, q does not divide d or d / q is not a power of two,
  // q > kMaxQ, an element is not finite, Q is not orthogonal within
  // kStoredOrthogonalityTolerance (naming the element and its error), or a
  // 1 x 1 rot_q is not [1].
  static absl::StatusOr<MixingMatrix> FromStored(int64_t d, std::optional<Eigen::MatrixXd> rot_q);

  int64_t dim() const { return pow2_ * q_; }
  int64_t pow2() const { return pow2_; }  // 2^a
  int64_t q() const { return q_; }
  // Q_q (q x q, orthogonal); 1 x 1 identity when q == 1. Stored in the output
  // as `rot_q` when q > 1.
  const Eigen::MatrixXd& rot_q() const { return rot_q_; }
  // Whether Q_q is a (normalized) Hadamard matrix rather than a random one.
  bool q_is_hadamard() const { return q_is_hadamard_; }

  // x is [n, d] row-major: every row v becomes H v. Rows are done one at a
  // time with one scratch row of d values allocated per call.
  // REQUIRES: x.cols() == dim().
  void ApplyToRows(Eigen::Ref<RowMatrixXd> x) const;
  void ApplyToRows(Eigen::Ref<RowMatrixXf> x) const;
  // Every row v becomes H^T v (= H^-1 v).
  void ApplyTransposeToRows(Eigen::Ref<RowMatrixXd> x) const;
  void ApplyTransposeToRows(Eigen::Ref<RowMatrixXf> x) const;
  // The dense d x d matrix, H(p * q + t, p' * q + t') = H_(2^a)(p, p') *
  // Q_q(t, t'). For tests and small d: it holds d^2 doubles.
  Eigen::MatrixXd Dense() const;

 private:
  MixingMatrix(int64_t pow2, int64_t q, Eigen::MatrixXd rot_q, bool q_is_hadamard)
      : pow2_(pow2),
        q_(q),
        rot_q_(std::move(rot_q)),
        rot_q_f_(rot_q_.cast<float>()),
        q_is_hadamard_(q_is_hadamard) {}
  int64_t pow2_;
  int64_t q_;
  Eigen::MatrixXd rot_q_;
  // Q_q rounded to float once, for the float rows.
  Eigen::MatrixXf rot_q_f_;
  bool q_is_hadamard_;
};

// FastWalshHadamard
//
// In-place normalized fast Walsh-Hadamard transform of `n` values spaced
// `stride` apart: v <- H_n v with H_n(i, j) = (-1)^popcount(i & j) / sqrt(n),
// in n log2(n) adds and n multiplies. H_n is symmetric and orthogonal, so the
// transform is its own inverse. REQUIRES: n a power of two, stride >= 1.
void FastWalshHadamard(double* v, int64_t n, int64_t stride = 1);
void FastWalshHadamard(float* v, int64_t n, int64_t stride = 1);

// HadamardMatrix
//
// A normalized (orthogonal) Hadamard matrix of order n when one is
// constructed here (powers of two by Sylvester, Paley I and II and their
// products with Sylvester for other orders; hadamard_construction.h), else
// NotFound naming n. InvalidArgument for n < 1 or n > kMaxHadamardOrder
// (hadamard_construction.h).
absl::StatusOr<Eigen::MatrixXd> HadamardMatrix(int64_t n);

}  // namespace catq

#endif  // CATQ_CORE_CAT_MIXING_MATRIX_H_
