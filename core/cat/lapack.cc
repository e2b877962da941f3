#include "core/cat/lapack.h"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <vector>

#include "absl/strings/str_format.h"

// LAPACK's Fortran entry points in OpenBLAS (LP64: 32-bit integers). The
// trailing size_t arguments are the lengths of the character arguments that
// gfortran passes; a LAPACK built from C ignores them.
extern "C" {
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
             double* work, const int* lwork, int* iwork, const int* liwork, int* info,
             size_t jobz_len, size_t uplo_len);
void dgesdd_(const char* jobz, const int* m, const int* n, double* a, const int* lda, double* s,
             double* u, const int* ldu, double* vt, const int* ldvt, double* work, const int* lwork,
             int* iwork, int* info, size_t jobz_len);
}

namespace catq {
namespace {

absl::Status CheckInfo(const char* routine, int info) {
  if (info == 0) return absl::OkStatus();
  return absl::InternalError(info < 0
                                 ? absl::StrFormat("%s: argument %d is illegal", routine, -info)
                                 : absl::StrFormat("%s did not converge (info %d)", routine, info));
}

absl::Status CheckDimensions(Eigen::Index rows, Eigen::Index cols) {
  if (rows > INT_MAX || cols > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%dx%d is too large for LAPACK's 32-bit indices", rows, cols));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SymmetricEigen(Eigen::Ref<Eigen::MatrixXd> a, Eigen::VectorXd& values, EigenJob job) {
  if (a.rows() != a.cols()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("symmetric eigendecomposition of a %dx%d matrix", a.rows(), a.cols()));
  }
  if (absl::Status s = CheckDimensions(a.rows(), a.cols()); !s.ok()) return s;
  const int n = static_cast<int>(a.rows());
  const int lda = std::max(1, static_cast<int>(a.outerStride()));
  values.resize(n);
  if (n == 0) return absl::OkStatus();
  const char jobz = job == EigenJob::kVectors ? 'V' : 'N';
  const char uplo = 'L';
  const SerialBlasScope serial;
  // Workspace query first: dsyevd's optimal sizes depend on its block sizes.
  double work_size = 0.0;
  int iwork_size = 0;
  int query = -1;
  int info = 0;
  dsyevd_(&jobz, &uplo, &n, a.data(), &lda, values.data(), &work_size, &query, &iwork_size, &query,
          &info, 1, 1);
  if (absl::Status s = CheckInfo("dsyevd", info); !s.ok()) return s;
  std::vector<double> work(static_cast<size_t>(work_size));
  std::vector<int> iwork(std::max(1, iwork_size));
  const int lwork = static_cast<int>(work.size());
  const int liwork = static_cast<int>(iwork.size());
  dsyevd_(&jobz, &uplo, &n, a.data(), &lda, values.data(), work.data(), &lwork, iwork.data(),
          &liwork, &info, 1, 1);
  return CheckInfo("dsyevd", info);
}

absl::StatusOr<Eigen::VectorXd> SingularValues(Eigen::MatrixXd a) {
  if (absl::Status s = CheckDimensions(a.rows(), a.cols()); !s.ok()) return s;
  const int m = static_cast<int>(a.rows());
  const int n = static_cast<int>(a.cols());
  Eigen::VectorXd sigma(std::min(m, n));
  if (sigma.size() == 0) return sigma;
  const char jobz = 'N';
  const int lda = std::max(1, m);
  const int ldu = 1;
  const SerialBlasScope serial;
  std::vector<int> iwork(8 * static_cast<size_t>(sigma.size()));
  double work_size = 0.0;
  int query = -1;
  int info = 0;
  dgesdd_(&jobz, &m, &n, a.data(), &lda, sigma.data(), nullptr, &ldu, nullptr, &ldu, &work_size,
          &query, iwork.data(), &info, 1);
  if (absl::Status s = CheckInfo("dgesdd", info); !s.ok()) return s;
  std::vector<double> work(static_cast<size_t>(work_size));
  const int lwork = static_cast<int>(work.size());
  dgesdd_(&jobz, &m, &n, a.data(), &lda, sigma.data(), nullptr, &ldu, nullptr, &ldu, work.data(),
          &lwork, iwork.data(), &info, 1);
  if (absl::Status s = CheckInfo("dgesdd", info); !s.ok()) return s;
  return sigma;
}

}  // namespace catq
