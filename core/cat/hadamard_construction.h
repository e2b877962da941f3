// File: core/cat/hadamard_construction.h
//
// Hadamard matrices in their +-1 form: H H^T = n I, every entry +1 or -1.
// MixingMatrix (mixing_matrix.h) normalizes them by 1/sqrt(n) and uses one as
// Q_q when d has a suitable even factor q. Orders built here:
//
//   - Sylvester: n = 2^k, H(i, j) = (-1)^popcount(i & j), the ordering the
//     fast Walsh-Hadamard transform computes.
//   - Paley I:   n = p + 1, p prime, p = 3 mod 4 (12, 20, 24, 44, 48, ...).
//   - Paley II:  n = 2 (p + 1), p prime, p = 1 mod 4 (12, 28, 36, 60, 76, ...).
//   - Sylvester (x) Paley: n = 2^j m, m of one of the two Paley orders.
//
// Prime powers (Paley over GF(p^k)) and Williamson-type orders are not built,
// so some orders that exist (92, 172, ...) report NotFound.
//
//   if (IsConstructedHadamardOrder(n)) {
//     CATQ_ASSIGN_OR_RETURN(Eigen::MatrixXd signs, HadamardSignMatrix(n));
//   }
//
// Thread-safety: plain functions without state.
#ifndef CATQ_CORE_CAT_HADAMARD_CONSTRUCTION_H_
#define CATQ_CORE_CAT_HADAMARD_CONSTRUCTION_H_

#include <Eigen/Core>
#include <cstdint>

#include "absl/status/statusor.h"

namespace catq {

// kMaxHadamardOrder
//
// The largest order HadamardSignMatrix builds (a dense n x n double matrix of
// 2 GiB at this size); larger orders are InvalidArgument.
inline constexpr int64_t kMaxHadamardOrder = int64_t{1} << 14;

// IsPowerOfTwo: n = 2^k for some k >= 0.
bool IsPowerOfTwo(int64_t n);

// IsConstructedHadamardOrder
//
// Whether HadamardSignMatrix(n) succeeds for an order n <= kMaxHadamardOrder,
// answered from the arithmetic of n alone (cheap; builds no matrix).
bool IsConstructedHadamardOrder(int64_t n);

// SylvesterSignMatrix
//
// The n x n Sylvester matrix, H(i, j) = (-1)^popcount(i & j).
// REQUIRES: n is a power of two, n <= kMaxHadamardOrder.
Eigen::MatrixXd SylvesterSignMatrix(int64_t n);

// HadamardSignMatrix
//
// A +-1 Hadamard matrix of order n from the constructions above.
// InvalidArgument for n < 1 or n > kMaxHadamardOrder; NotFound naming n when
// none of them gives order n (every odd n > 1, and orders such as 92).
absl::StatusOr<Eigen::MatrixXd> HadamardSignMatrix(int64_t n);

}  // namespace catq

#endif  // CATQ_CORE_CAT_HADAMARD_CONSTRUCTION_H_
