// File: core/math/blas.h
//
// The one place catq includes OpenBLAS's <cblas.h>, plus the controls of the
// OpenBLAS thread pool. Kernels call the cblas_* functions directly; this
// header only adds what the C API leaves awkward.
//
//   ScopedBlasThreads single(1);  // BLAS calls in this scope use one thread
//   cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, n, k, 1.0, a, lda, 1.0, c, ldc);
//
// The thread count is process-wide state of OpenBLAS, not per calling thread.
// A program that runs its own pool sets it to 1 once at startup (style.md:
// all parallelism comes from the pool); ScopedBlasThreads is for programs that
// do not, such as benches and tests. OpenBLAS's own calls are thread-safe.
#ifndef CATQ_CORE_MATH_BLAS_H_
#define CATQ_CORE_MATH_BLAS_H_

#include <cblas.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace catq {

// BlasThreads
//
// The number of threads OpenBLAS uses for one call.
inline int BlasThreads() { return openblas_get_num_threads(); }

// BlasMaxThreads
//
// The number of processors OpenBLAS found; the count it starts with unless
// OPENBLAS_NUM_THREADS says otherwise.
inline int BlasMaxThreads() { return openblas_get_num_procs(); }

// SetBlasThreads
//
// Makes OpenBLAS use `threads` threads per call, process-wide. OpenBLAS caps
// the count at the size of the pool it started with. InvalidArgument for
// threads < 1 (OpenBLAS itself would silently read that as "all processors").
inline absl::Status SetBlasThreads(int threads) {
  if (threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("BLAS thread count must be at least 1, got ", threads));
  }
  openblas_set_num_threads(threads);
  return absl::OkStatus();
}

// BlasDescription
//
// OpenBLAS's build configuration and the kernel family it picked for this
// CPU, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64
// (core SkylakeX)". For the header of bench output.
inline std::string BlasDescription() {
  return absl::StrCat(openblas_get_config(), " (core ", openblas_get_corename(), ")");
}

// ScopedBlasThreads
//
// Sets the OpenBLAS thread count for its lifetime and restores the previous
// count on destruction. A count below 1 is taken as 1. Not for use while
// other threads call BLAS: the setting is process-wide.
class ScopedBlasThreads {
 public:
  explicit ScopedBlasThreads(int threads) : previous_(BlasThreads()) {
    openblas_set_num_threads(threads < 1 ? 1 : threads);
  }
  ~ScopedBlasThreads() { openblas_set_num_threads(previous_); }
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

 private:
  const int previous_;
};

}  // namespace catq

#endif  // CATQ_CORE_MATH_BLAS_H_
