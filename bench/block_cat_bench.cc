// catq_bench_block_cat: the block CAT kernels on Llama-7B shapes, each next
// to OpenBLAS GEMM throughput measured in the same run:
//
//   solve      SolveBlockCat for one site (d = 4096 and 11008, k = 128) from
//              random SPD blocks; a block's solve is printed as a multiple of
//              one k x k x k DGEMM.
//   W T^-1     SiteTransform::TransformWeight (LU per block, two cblas_dtrsm,
//              a column permutation, then the mixing) on 4096 x 4096 and
//              11008 x 4096; the reference is the block DGEMM of the same
//              flops (what multiplying by a precomputed B^-1 would cost). The
//              same solves with Eigen's TRSM show why the library calls BLAS.
//   T x        SiteTransform::ApplyToActivations on 2048 tokens (d = 4096 and
//              11008), against the block SGEMM / DGEMM of the same flops.
//
//   catq_bench_block_cat            # the shapes above, about 40 s
//   catq_bench_block_cat --quick    # d = 1024, 512 rows, 256 tokens (or CATQ_BENCH_QUICK=1)
//   catq_bench_block_cat --reps=5
//
// Single thread: OpenBLAS is set to one thread, as catq's worker pool does.
// Figures, not tests; a failing call aborts the run.
#include <cblas.h>

#include <Eigen/Core>
#include <Eigen/LU>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "benchmark/benchmark.h"
#include "core/cat/block_cat.h"
#include "core/cat/mixing_matrix.h"
#include "core/cat/site_transform.h"
#include "core/math/eigen_types.h"

#ifndef CATQ_BENCH_BUILD_TYPE
#define CATQ_BENCH_BUILD_TYPE "unknown"
#endif

namespace catq {
namespace {

constexpr int64_t kBlock = 128;

struct Flags {
  bool quick = false;
  int reps = 3;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "catq_bench_block_cat: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T OrDie(absl::StatusOr<T> value, const char* what) {
  if (!value.ok()) Die(std::string(what) + ": " + value.status().ToString());
  return *std::move(value);
}

void OrDie(const absl::Status& status, const char* what) {
  if (!status.ok()) Die(std::string(what) + ": " + status.ToString());
}

// Best wall time of `reps` calls after one untimed warm-up. `setup` runs
// before each call, untimed (restores in-place inputs).
double BestSeconds(
    int reps, const std::function<void()>& fn, const std::function<void()>& setup = [] {}) {
  setup();
  fn();
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < reps; ++i) {
    setup();
    const auto start = std::chrono::steady_clock::now();
    fn();
    const auto stop = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(stop - start).count());
  }
  return best;
}

// Random SPD blocks shaped like second moments: A A^T / n plus a small ridge.
std::vector<Eigen::MatrixXd> RandomSpdBlocks(int64_t d, int64_t k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<Eigen::MatrixXd> blocks;
  for (int64_t begin = 0; begin < d; begin += k) {
    const int64_t n = std::min(k, d - begin);
    Eigen::MatrixXd a(n, 2 * n);
    for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = normal(rng);
    Eigen::MatrixXd s = a * a.transpose() / static_cast<double>(2 * n);
    s.diagonal().array() += 1e-3;
    blocks.push_back(std::move(s));
  }
  return blocks;
}

template <typename Matrix>
Matrix RandomMatrix(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    m.data()[i] = static_cast<typename Matrix::Scalar>(normal(rng));
  }
  return m;
}

void PrintHeader(const char* title) {
  std::printf("\n%s\n%-44s %10s %9s  %s\n", title, "stage", "best ms", "GFLOP/s",
              "vs same-run reference");
}

void PrintRow(const char* name, double seconds, double flops, double reference_seconds = 0,
              const char* reference = "") {
  std::printf("%-44s %10.2f", name, seconds * 1e3);
  if (flops > 0) {
    std::printf(" %9.2f", flops / seconds / 1e9);
  } else {
    std::printf(" %9s", "");
  }
  if (reference_seconds > 0) std::printf("  %.2fx %s", reference_seconds / seconds, reference);
  std::printf("\n");
}

// One k x k x k DGEMM, the unit a block solve is measured in.
double DgemmCubeSeconds(int64_t k, int reps) {
  const Eigen::MatrixXd a = RandomMatrix<Eigen::MatrixXd>(k, k, 1);
  const Eigen::MatrixXd b = RandomMatrix<Eigen::MatrixXd>(k, k, 2);
  Eigen::MatrixXd c(k, k);
  const int n = static_cast<int>(k);
  // Many calls per timing: one is a few microseconds.
  constexpr int kCalls = 200;
  return BestSeconds(reps,
                     [&] {
                       for (int i = 0; i < kCalls; ++i) {
                         cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0,
                                     a.data(), n, b.data(), n, 0.0, c.data(), n);
                         benchmark::DoNotOptimize(c.data());
                       }
                     }) /
         kCalls;
}

void BenchSolve(int64_t d, const Flags& flags) {
  const std::vector<Eigen::MatrixXd> sx = RandomSpdBlocks(d, kBlock, 10 + d);
  const std::vector<Eigen::MatrixXd> sw = RandomSpdBlocks(d, kBlock, 20 + d);
  const double cube = DgemmCubeSeconds(kBlock, flags.reps);
  const int64_t blocks = static_cast<int64_t>(sx.size());
  char title[128];
  std::snprintf(title, sizeof(title), "solve: one site, d = %lld, k = %lld, %lld blocks",
                static_cast<long long>(d), static_cast<long long>(kBlock),
                static_cast<long long>(blocks));
  PrintHeader(title);
  const double flops_cube = 2.0 * kBlock * kBlock * kBlock;
  PrintRow("DGEMM 128x128x128 (reference, per call)", cube, flops_cube);
  BlockCatReport report;
  const double solve = BestSeconds(flags.reps, [&] {
    BlockCatResult result = OrDie(SolveBlockCat(sx, sw, {}), "SolveBlockCat");
    report = result.report;
    benchmark::DoNotOptimize(result.blocks.data());
  });
  PrintRow("SolveBlockCat (whole site)", solve, 0);
  std::printf("%-44s %10.3f %9s  = %.0f DGEMM 128^3 per block\n", "  per block",
              solve / blocks * 1e3, "", solve / blocks / cube);
  std::printf("  report: max cond(T_b) %.3g, inverse residual %.2g, damped blocks %lld\n",
              report.max_condition, report.max_inverse_residual,
              static_cast<long long>(report.damped_blocks));
}

// W B^-1 with Eigen's own TRSM (no BLAS), the alternative to cblas_dtrsm.
void EigenSolveBlocks(const std::vector<Eigen::PartialPivLU<Eigen::MatrixXd>>& lus,
                      RowMatrixXd& w) {
  Eigen::VectorXd row(kBlock);
  int64_t begin = 0;
  for (const Eigen::PartialPivLU<Eigen::MatrixXd>& lu : lus) {
    const int64_t n = lu.matrixLU().rows();
    auto w_b = w.middleCols(begin, n);
    lu.matrixLU().triangularView<Eigen::Upper>().solveInPlace<Eigen::OnTheRight>(w_b);
    lu.matrixLU().triangularView<Eigen::UnitLower>().solveInPlace<Eigen::OnTheRight>(w_b);
    const Eigen::VectorXi& p = lu.permutationP().indices();
    for (Eigen::Index i = 0; i < w_b.rows(); ++i) {
      row.head(n) = w_b.row(i).transpose();
      for (int64_t c = 0; c < n; ++c) w_b(i, c) = row(p(c));
    }
    begin += n;
  }
}

// The same flops as a block-diagonal product: for each block, C_b = A_b B_b
// with A_b the rows x n column slice (strided), as cblas GEMMs.
template <typename Scalar>
double BlockGemmSeconds(int64_t rows, int64_t d, int reps) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Matrix a = RandomMatrix<Matrix>(rows, d, 3);
  const Matrix b = RandomMatrix<Matrix>(kBlock, kBlock, 4);
  Matrix c(rows, d);
  const int m = static_cast<int>(rows);
  const int n = static_cast<int>(kBlock);
  const int ld = static_cast<int>(d);
  return BestSeconds(reps, [&] {
    for (int64_t begin = 0; begin + kBlock <= d; begin += kBlock) {
      if constexpr (std::is_same_v<Scalar, double>) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, n, 1.0, a.data() + begin, ld,
                    b.data(), n, 0.0, c.data() + begin, ld);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, n, 1.0f, a.data() + begin, ld,
                    b.data(), n, 0.0f, c.data() + begin, ld);
      }
    }
    benchmark::DoNotOptimize(c.data());
  });
}

struct SiteTransforms {
  SiteTransform blocks_only;
  SiteTransform with_mixing;
  SiteTransform mixing_only;
};

SiteTransforms MakeTransforms(int64_t d) {
  BlockCatResult solved = OrDie(
      SolveBlockCat(RandomSpdBlocks(d, kBlock, 30 + d), RandomSpdBlocks(d, kBlock, 40 + d), {}),
      "SolveBlockCat");
  MixingMatrix m = OrDie(MixingMatrix::Create(d, {}), "MixingMatrix::Create");
  return {OrDie(SiteTransform::Create(d, solved.blocks, std::nullopt), "SiteTransform::Create"),
          OrDie(SiteTransform::Create(d, solved.blocks, m), "SiteTransform::Create"),
          OrDie(SiteTransform::Create(d, {}, m), "SiteTransform::Create")};
}

void BenchWeight(int64_t rows, int64_t d, const SiteTransforms& t, const Flags& flags) {
  char title[160];
  std::snprintf(title, sizeof(title), "W T^-1: W %lld x %lld, k = %lld, mixing H_%lld (x) Q_%lld",
                static_cast<long long>(rows), static_cast<long long>(d),
                static_cast<long long>(kBlock),
                static_cast<long long>(t.mixing_only.mixing()->pow2()),
                static_cast<long long>(t.mixing_only.mixing()->q()));
  PrintHeader(title);
  const double flops = 2.0 * rows * kBlock * d;
  const double gemm = BlockGemmSeconds<double>(rows, d, flags.reps);
  PrintRow("block DGEMM, same flops (reference)", gemm, flops);
  const RowMatrixXd w0 = RandomMatrix<RowMatrixXd>(rows, d, 5);
  RowMatrixXd w(rows, d);
  const auto restore = [&] { w = w0; };
  const double blocks = BestSeconds(
      flags.reps, [&] { OrDie(t.blocks_only.TransformWeightInPlace(w), "TransformWeight"); },
      restore);
  PrintRow("W B^-1: LU + 2x cblas_dtrsm + permutation", blocks, flops, gemm, "block DGEMM");
  std::vector<Eigen::PartialPivLU<Eigen::MatrixXd>> lus;
  for (const Eigen::MatrixXd& b : t.blocks_only.blocks()) lus.emplace_back(b);
  const double eigen = BestSeconds(
      flags.reps, [&] { EigenSolveBlocks(lus, w); }, restore);
  PrintRow("W B^-1 with Eigen TRSM instead (not used)", eigen, flops, gemm, "block DGEMM");
  const double mixing = BestSeconds(
      flags.reps, [&] { OrDie(t.mixing_only.TransformWeightInPlace(w), "TransformWeight"); },
      restore);
  PrintRow("W M^T (mixing only)", mixing, 0);
  const double both = BestSeconds(
      flags.reps, [&] { OrDie(t.with_mixing.TransformWeightInPlace(w), "TransformWeight"); },
      restore);
  PrintRow("TransformWeight f64 in place (B and M)", both, flops, gemm, "block DGEMM");
  const RowMatrixXf wf = w0.cast<float>();
  const double as_float = BestSeconds(flags.reps, [&] {
    RowMatrixXf out = OrDie(t.with_mixing.TransformWeight(wf), "TransformWeight");
    benchmark::DoNotOptimize(out.data());
  });
  PrintRow("TransformWeight f32 -> f32 (f64 inside)", as_float, flops, gemm, "block DGEMM");
}

void BenchActivations(int64_t tokens, int64_t d, const SiteTransforms& t, const Flags& flags) {
  char title[160];
  std::snprintf(title, sizeof(title), "T x: %lld tokens x %lld, k = %lld, mixing H_%lld (x) Q_%lld",
                static_cast<long long>(tokens), static_cast<long long>(d),
                static_cast<long long>(kBlock),
                static_cast<long long>(t.mixing_only.mixing()->pow2()),
                static_cast<long long>(t.mixing_only.mixing()->q()));
  PrintHeader(title);
  const double flops = 2.0 * tokens * kBlock * d;
  const double sgemm = BlockGemmSeconds<float>(tokens, d, flags.reps);
  const double dgemm = BlockGemmSeconds<double>(tokens, d, flags.reps);
  PrintRow("block SGEMM, same flops (reference)", sgemm, flops);
  PrintRow("block DGEMM, same flops (reference)", dgemm, flops);
  const RowMatrixXf x0 = RandomMatrix<RowMatrixXf>(tokens, d, 6);
  RowMatrixXf x(tokens, d);
  const auto restore = [&] { x = x0; };
  const double blocks = BestSeconds(
      flags.reps, [&] { OrDie(t.blocks_only.ApplyToActivations(x), "ApplyToActivations"); },
      restore);
  PrintRow("B x f32 (SGEMM per block + copy back)", blocks, flops, sgemm, "block SGEMM");
  const double mixing = BestSeconds(
      flags.reps, [&] { OrDie(t.mixing_only.ApplyToActivations(x), "ApplyToActivations"); },
      restore);
  PrintRow("M x f32 (mixing only)", mixing, 0);
  const double both = BestSeconds(
      flags.reps, [&] { OrDie(t.with_mixing.ApplyToActivations(x), "ApplyToActivations"); },
      restore);
  PrintRow("ApplyToActivations f32 (B then M)", both, flops, sgemm, "block SGEMM");
  const RowMatrixXd xd0 = x0.cast<double>();
  RowMatrixXd xd(tokens, d);
  const double both_d = BestSeconds(
      flags.reps, [&] { OrDie(t.with_mixing.ApplyToActivations(xd), "ApplyToActivations"); },
      [&] { xd = xd0; });
  PrintRow("ApplyToActivations f64 (B then M)", both_d, flops, dgemm, "block DGEMM");
}

void Usage() {
  std::printf(
      "usage: catq_bench_block_cat [--quick] [--reps=N]\n"
      "  --quick    d = 1024, 512 weight rows, 256 tokens (also CATQ_BENCH_QUICK=1)\n"
      "  --reps=N   timed runs per stage, best kept (default 3, at least 1)\n");
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  if (const char* env = std::getenv("CATQ_BENCH_QUICK");
      env != nullptr && *env != '\0' && std::string_view(env) != "0") {
    flags.quick = true;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--quick") {
      flags.quick = true;
    } else if (arg.starts_with("--reps=")) {
      const std::string value(arg.substr(7));
      char* end = nullptr;
      const long reps = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || reps < 1 || reps > 1000) {
        Die("--reps wants an integer in [1, 1000], got '" + value + "'");
      }
      flags.reps = static_cast<int>(reps);
    } else if (arg == "--help" || arg == "-h") {
      Usage();
      std::exit(0);
    } else {
      Usage();
      Die("unknown argument '" + std::string(arg) + "'");
    }
  }
  return flags;
}

}  // namespace
}  // namespace catq

int main(int argc, char** argv) {
  const catq::Flags flags = catq::ParseFlags(argc, argv);
  openblas_set_num_threads(1);
  std::printf(
      "catq_bench_block_cat: single thread (OpenBLAS 1 thread), best of %d runs after one "
      "warm-up, build %s\nGFLOP/s count 2*rows*k*d for block products and solves; ratios are "
      "reference time / stage time in this run\n",
      flags.reps, CATQ_BENCH_BUILD_TYPE);
  if (flags.quick) {
    catq::BenchSolve(1024, flags);
    const catq::SiteTransforms t = catq::MakeTransforms(1024);
    catq::BenchWeight(512, 1024, t, flags);
    catq::BenchActivations(256, 1024, t, flags);
    return 0;
  }
  catq::BenchSolve(4096, flags);
  catq::BenchSolve(11008, flags);
  {
    const catq::SiteTransforms t = catq::MakeTransforms(4096);
    catq::BenchWeight(4096, 4096, t, flags);
    catq::BenchWeight(11008, 4096, t, flags);
    catq::BenchActivations(2048, 4096, t, flags);
  }
  {
    const catq::SiteTransforms t = catq::MakeTransforms(11008);
    catq::BenchActivations(2048, 11008, t, flags);
  }
  return 0;
}
