// File: core/cat/mixing_matrix.h
//
// The orthogonal mixing H of cat-method.md section 2.2 for any dimension d.
// Write d = 2^a * q: q is the odd part of d (2^a the largest power of two
// dividing d), or a larger even q = d / 2^j when a Hadamard matrix of that
// order is constructed here (d = 12 gives 2^a = 1, q = 12). Then
//
//   H = H_(2^a) (x) Q_q,   index j = p * q + t  (p over H_(2^a), t over Q_q),
//
// H_(2^a) the normalized Sylvester Hadamard matrix (applied as a fast
// Walsh-Hadamard transform), Q_q an orthogonal q x q matrix: a Hadamard matrix
// of order q where one is constructed (normalized), else a seeded random
// orthogonal matrix. q = 1 means H is the pure FWHT.
//
//   CATQ_ASSIGN_OR_RETURN(MixingMatrix h, MixingMatrix::Create(172, {}));
//   h.ApplyToRows(x);           // each row x_i <- H x_i  (x is tokens x d)
//   h.ApplyTransposeToRows(w);  // each row w_i <- H^T w_i, i.e. W <- W H^T = W H^-1
//
// Thread-safety: const methods are safe to call concurrently.
#ifndef CATQ_CORE_CAT_MIXING_MATRIX_H_
#define CATQ_CORE_CAT_MIXING_MATRIX_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/math/eigen_types.h"

namespace catq {

struct MixingOptions {
  // Seed of the random orthogonal Q_q when no Hadamard matrix of order q is used.
  uint64_t seed = 0;
  // Use a known Hadamard matrix of order q (12, 20, 28, ... where constructed)
  // instead of a random orthogonal one. Default true.
  bool prefer_hadamard_q = true;
};

class MixingMatrix {
 public:
  // InvalidArgument for d < 1.
  static absl::StatusOr<MixingMatrix> Create(int64_t d, const MixingOptions& options);

  int64_t dim() const { return pow2_ * q_; }
  int64_t pow2() const { return pow2_; }  // 2^a
  int64_t q() const { return q_; }
  // Q_q (q x q, orthogonal); 1 x 1 identity when q == 1. Stored in the output
  // as `rot_q` when q > 1.
  const Eigen::MatrixXd& rot_q() const { return rot_q_; }

  // x is [n, d] row-major: every row v becomes H v.
  void ApplyToRows(Eigen::Ref<RowMatrixXd> x) const;
  void ApplyToRows(Eigen::Ref<RowMatrixXf> x) const;
  // Every row v becomes H^T v (= H^-1 v).
  void ApplyTransposeToRows(Eigen::Ref<RowMatrixXd> x) const;
  void ApplyTransposeToRows(Eigen::Ref<RowMatrixXf> x) const;
  // The dense d x d matrix (tests, small d).
  Eigen::MatrixXd Dense() const;

 private:
  MixingMatrix(int64_t pow2, int64_t q, Eigen::MatrixXd rot_q)
      : pow2_(pow2), q_(q), rot_q_(std::move(rot_q)) {}
  int64_t pow2_;
  int64_t q_;
  Eigen::MatrixXd rot_q_;
};

// In-place normalized fast Walsh-Hadamard transform of `n` values spaced
// `stride` apart (n a power of two): v <- H_n v with H_n = Sylvester / sqrt(n).
void FastWalshHadamard(double* v, int64_t n, int64_t stride = 1);
void FastWalshHadamard(float* v, int64_t n, int64_t stride = 1);

// A normalized Hadamard matrix of order n when one is constructed here
// (powers of two by Sylvester, Paley constructions for other orders), else
// NotFound naming n.
absl::StatusOr<Eigen::MatrixXd> HadamardMatrix(int64_t n);

}  // namespace catq

#endif  // CATQ_CORE_CAT_MIXING_MATRIX_H_
