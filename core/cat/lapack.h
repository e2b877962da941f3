// File: core/cat/lapack.h
//
// The LAPACK routines the CAT engine solves with, from the OpenBLAS it links
// for BLAS (Debian's libopenblas carries LAPACK; no lapacke.h is needed):
// symmetric eigendecompositions by divide and conquer (dsyevd, 1.5-2x faster
// than Eigen's SelfAdjointEigenSolver on 128 x 128) and singular values
// (dgesdd). Float64, column-major.
//
//   Eigen::MatrixXd vectors = s;  // lower triangle read
//   Eigen::VectorXd values;
//   CATQ_RETURN_IF_ERROR(SymmetricEigen(vectors, values, EigenJob::kVectors));
//   // s = vectors * values.asDiagonal() * vectors.transpose(), values ascending.
//
// Determinism: LAPACK's blocked code calls OpenBLAS level-2 kernels (dsymv,
// dgemv) that split their sums over the OpenBLAS threads, so the bits of a
// result would depend on the thread count. Every call here therefore runs
// with one OpenBLAS thread (SerialBlasScope), and gives the same bits on
// every run, whatever the thread count the process set.
//
// Thread-safety: the functions may run concurrently when the process keeps
// OpenBLAS at one thread (the server does); otherwise call them from one
// thread at a time, as the thread count is process-wide.
#ifndef CATQ_CORE_CAT_LAPACK_H_
#define CATQ_CORE_CAT_LAPACK_H_

#include <Eigen/Core>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/math/blas.h"

namespace catq {

// SerialBlasScope
//
// One OpenBLAS thread for its lifetime. Touches the process-wide setting only
// when it is above one, so in a process that keeps OpenBLAS at one thread (the
// server) it changes nothing and concurrent scopes are harmless.
class SerialBlasScope {
 public:
  SerialBlasScope() {
    if (BlasThreads() > 1) single_.emplace(1);
  }

 private:
  std::optional<ScopedBlasThreads> single_;
};

enum class EigenJob { kValuesOnly, kVectors };

// SymmetricEigen
//
// The eigendecomposition of the symmetric n x n `a` (only its lower triangle
// is read) by LAPACK dsyevd: `values` gets the n eigenvalues in ascending
// order and, with kVectors, `a` the orthonormal eigenvectors as columns (with
// kValuesOnly `a` is overwritten with scratch). InvalidArgument for a
// non-square `a` or n above INT_MAX; Internal when dsyevd reports an illegal
// argument or no convergence (its info is in the message).
absl::Status SymmetricEigen(Eigen::Ref<Eigen::MatrixXd> a, Eigen::VectorXd& values, EigenJob job);

// SingularValues
//
// The singular values of the m x n `a`, descending, by LAPACK dgesdd without
// vectors. Errors as SymmetricEigen.
absl::StatusOr<Eigen::VectorXd> SingularValues(Eigen::MatrixXd a);

}  // namespace catq

#endif  // CATQ_CORE_CAT_LAPACK_H_
