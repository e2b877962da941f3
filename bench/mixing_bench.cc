// catq_bench_mixing: per-token cost of the orthogonal mixing H of
// cat-method.md section 2.2 (core/cat/mixing_matrix.h) on a batch of tokens,
// against a dense OpenBLAS SGEMM of tokens by a d x d matrix timed in the same
// run: what H would cost if it were applied as an unstructured rotation.
// Single thread (OpenBLAS is set to one thread); each figure is the best of
// --reps runs after one warm-up run.
//
//   catq_bench_mixing            # d = 4096 (pure FWHT) and d = 11008 (H_256 (x) Q_43)
//   catq_bench_mixing --quick    # d = 1024 and d = 2752 (H_64 (x) Q_43), fewer tokens
//   catq_bench_mixing --reps=9
//
// Figures, not tests: nothing here asserts on speed. A Create that fails
// aborts the run (exit 1).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmark/benchmark.h"
#include "core/cat/mixing_matrix.h"
#include "core/math/eigen_types.h"

#ifndef CATQ_BENCH_BUILD_TYPE
#define CATQ_BENCH_BUILD_TYPE "unknown"
#endif

namespace catq {
namespace {

struct Flags {
  bool quick = false;
  int reps = 5;
};

struct Row {
  std::string name;
  int64_t tokens = 0;      // tokens per timed run
  double bytes = 0;        // input bytes per token
  double flops = 0;        // floating-point operations per token, as done
  double seconds = 0;      // best time of a run
  bool is_sgemm = false;   // the reference row
  bool show_dense = true;  // print the dense-equivalent GFLOP/s and the ratio
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "catq_bench_mixing: %s\n", what.c_str());
  std::exit(1);
}

// The best (smallest) wall time of `reps` calls of `fn`, after one untimed
// warm-up call (page faults of the buffers, cold caches and code).
double BestSeconds(int reps, const std::function<void()>& fn) {
  fn();
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    const auto stop = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(stop - start).count());
  }
  return best;
}

// Deterministic activations, roughly Gaussian (sum of four uniforms).
RowMatrixXf MakeTokens(int64_t tokens, int64_t d, uint64_t seed) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&state]() {  // xorshift64*
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1Dull;
  };
  auto uniform = [&next]() {  // [-1, 1)
    return static_cast<float>(static_cast<int64_t>(next() >> 11) - (int64_t{1} << 52)) /
           static_cast<float>(int64_t{1} << 52);
  };
  RowMatrixXf x(tokens, d);
  for (int64_t i = 0; i < x.size(); ++i) {
    x.data()[i] = 0.5f * (uniform() + uniform() + uniform() + uniform());
  }
  return x;
}

MixingMatrix CreateOrDie(int64_t d) {
  absl::StatusOr<MixingMatrix> h = MixingMatrix::Create(d, {});
  if (!h.ok()) Die("MixingMatrix::Create: " + h.status().ToString());
  return *std::move(h);
}

double SecondsPerToken(const Row& row) { return row.seconds / static_cast<double>(row.tokens); }

void PrintTable(int64_t d, const MixingMatrix& h, const std::vector<Row>& rows) {
  const Row* sgemm = nullptr;
  for (const Row& row : rows) {
    if (row.is_sgemm) sgemm = &row;
  }
  std::printf("\nd = %lld = %lld x %lld (H_%lld (x) %s Q_%lld)\n", static_cast<long long>(d),
              static_cast<long long>(h.pow2()), static_cast<long long>(h.q()),
              static_cast<long long>(h.pow2()),
              h.q() == 1 ? "identity" : (h.q_is_hadamard() ? "Hadamard" : "random"),
              static_cast<long long>(h.q()));
  std::printf("%-34s %7s %10s %8s %9s %11s  %s\n", "stage", "tokens", "us/token", "GB/s", "GFLOP/s",
              "dense-eq GF", "vs same-run SGEMM (time per token)");
  const double dense_flops = 2.0 * static_cast<double>(d) * static_cast<double>(d);
  for (const Row& row : rows) {
    const double per_token = SecondsPerToken(row);
    std::printf("%-34s %7lld %10.2f %8.2f %9.2f", row.name.c_str(),
                static_cast<long long>(row.tokens), per_token * 1e6, row.bytes / per_token / 1e9,
                row.flops / per_token / 1e9);
    if (row.show_dense) {
      std::printf(" %11.1f", dense_flops / per_token / 1e9);
      if (sgemm != nullptr && !row.is_sgemm) {
        std::printf("  %.1fx faster", SecondsPerToken(*sgemm) / per_token);
      }
    }
    std::printf("\n");
  }
}

void RunDim(int64_t d, int64_t tokens, int64_t gemm_tokens, const Flags& flags) {
  const MixingMatrix h = CreateOrDie(d);
  const double dd = static_cast<double>(d);
  const double log2_pow2 = std::log2(static_cast<double>(h.pow2()));
  // Operations as done: the q x q step is 2 q flops per element (none when
  // q = 1), the FWHT log2(2^a) adds and one multiply per element.
  const double h_flops =
      (h.q() > 1 ? 2.0 * dd * static_cast<double>(h.q()) : 0.0) + dd * (log2_pow2 + 1.0);
  const RowMatrixXf x = MakeTokens(tokens, d, static_cast<uint64_t>(d));
  const RowMatrixXd x64 = x.cast<double>();
  std::vector<Row> rows;

  // The reference: X[gemm_tokens, d] * M[d, d] with a dense M. Its time per
  // token hardly depends on the token count once it is in the hundreds, so
  // it runs on a slice of the batch to keep the run short.
  {
    const RowMatrixXf m = MakeTokens(d, d, 7);
    RowMatrixXf y(gemm_tokens, d);
    const int n = static_cast<int>(d);
    const int k = static_cast<int>(gemm_tokens);
    rows.push_back({"SGEMM tokens x dense d x d (ref)", gemm_tokens, dd * sizeof(float),
                    2.0 * dd * dd,
                    BestSeconds(flags.reps,
                                [&] {
                                  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, k, n, n,
                                              1.0f, x.data(), n, m.data(), n, 0.0f, y.data(), n);
                                  benchmark::DoNotOptimize(y.data());
                                  benchmark::ClobberMemory();
                                }),
                    /*is_sgemm=*/true});
  }
  // Bandwidth context: copying the batch once.
  {
    RowMatrixXf y(tokens, d);
    rows.push_back({"memcpy f32 batch", tokens, dd * sizeof(float), 0.0,
                    BestSeconds(flags.reps,
                                [&] {
                                  std::memcpy(y.data(), x.data(), x.size() * sizeof(float));
                                  benchmark::DoNotOptimize(y.data());
                                  benchmark::ClobberMemory();
                                }),
                    false, /*show_dense=*/false});
  }
  // Each transform runs in place on a copy of the batch; the copy back from
  // the pristine batch is not timed (values would otherwise drift across
  // runs, which does not change the work but keeps the input the same).
  RowMatrixXf work(tokens, d);
  RowMatrixXd work64(tokens, d);
  auto timed_f32 = [&](const std::function<void(RowMatrixXf&)>& fn) {
    double best = std::numeric_limits<double>::infinity();
    for (int i = 0; i <= flags.reps; ++i) {  // run 0 is the warm-up
      work = x;
      const auto start = std::chrono::steady_clock::now();
      fn(work);
      benchmark::DoNotOptimize(work.data());
      benchmark::ClobberMemory();
      const auto stop = std::chrono::steady_clock::now();
      if (i > 0) best = std::min(best, std::chrono::duration<double>(stop - start).count());
    }
    return best;
  };
  auto timed_f64 = [&](const std::function<void(RowMatrixXd&)>& fn) {
    double best = std::numeric_limits<double>::infinity();
    for (int i = 0; i <= flags.reps; ++i) {
      work64 = x64;
      const auto start = std::chrono::steady_clock::now();
      fn(work64);
      benchmark::DoNotOptimize(work64.data());
      benchmark::ClobberMemory();
      const auto stop = std::chrono::steady_clock::now();
      if (i > 0) best = std::min(best, std::chrono::duration<double>(stop - start).count());
    }
    return best;
  };

  if (h.q() == 1) {
    const double fwht_flops = dd * (log2_pow2 + 1.0);
    rows.push_back({"FastWalshHadamard f32, per row", tokens, dd * sizeof(float), fwht_flops,
                    timed_f32([&](RowMatrixXf& w) {
                      for (int64_t i = 0; i < w.rows(); ++i) FastWalshHadamard(w.row(i).data(), d);
                    })});
    rows.push_back({"FastWalshHadamard f64, per row", tokens, dd * sizeof(double), fwht_flops,
                    timed_f64([&](RowMatrixXd& w) {
                      for (int64_t i = 0; i < w.rows(); ++i) FastWalshHadamard(w.row(i).data(), d);
                    })});
  }
  rows.push_back({"H ApplyToRows f32", tokens, dd * sizeof(float), h_flops,
                  timed_f32([&](RowMatrixXf& w) { h.ApplyToRows(w); })});
  rows.push_back({"H ApplyTransposeToRows f32", tokens, dd * sizeof(float), h_flops,
                  timed_f32([&](RowMatrixXf& w) { h.ApplyTransposeToRows(w); })});
  rows.push_back({"H ApplyToRows f64", tokens, dd * sizeof(double), h_flops,
                  timed_f64([&](RowMatrixXd& w) { h.ApplyToRows(w); })});
  if (h.q() > 1) {
    // Where the time of the f32 apply goes: the q x q step alone, the same
    // BLAS call MixingMatrix makes per token, into a scratch row.
    const Eigen::MatrixXf q_f = h.rot_q().cast<float>();
    RowMatrixXf scratch(h.pow2(), h.q());
    const int m = static_cast<int>(h.pow2());
    const int q = static_cast<int>(h.q());
    rows.push_back({"  of which: q x q step alone f32", tokens, dd * sizeof(float),
                    2.0 * dd * static_cast<double>(h.q()), timed_f32([&](RowMatrixXf& w) {
                      for (int64_t i = 0; i < w.rows(); ++i) {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, q, q, 1.0f,
                                    w.row(i).data(), q, q_f.data(), q, 0.0f, scratch.data(), q);
                        benchmark::DoNotOptimize(scratch.data());
                      }
                    }),
                    false, /*show_dense=*/false});
  }
  PrintTable(d, h, rows);
}

void Usage() {
  std::printf(
      "usage: catq_bench_mixing [--quick] [--reps=N]\n"
      "  --quick    d = 1024 and 2752 on 256 tokens instead of d = 4096 and 11008 on 2048\n"
      "             (also when the environment sets CATQ_BENCH_QUICK to anything but 0)\n"
      "  --reps=N   timed runs per stage, best kept (default 5, at least 1)\n");
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
  // Single thread on both sides of every ratio.
  openblas_set_num_threads(1);
  const int64_t tokens = flags.quick ? 256 : 2048;
  const int64_t gemm_tokens = flags.quick ? 128 : 512;
  std::printf(
      "catq_bench_mixing: single thread, best of %d runs after one warm-up, build %s\n"
      "OpenBLAS %s (kernels: %s)\n"
      "us/token and GB/s (input bytes) per token; GFLOP/s counts the operations each stage does;\n"
      "dense-eq GF counts 2 d^2 per token, the work of applying a dense d x d matrix\n",
      flags.reps, CATQ_BENCH_BUILD_TYPE, openblas_get_config(), openblas_get_corename());
  if (flags.quick) {
    catq::RunDim(1024, tokens, gemm_tokens, flags);
    catq::RunDim(2752, tokens, gemm_tokens, flags);
  } else {
    catq::RunDim(4096, tokens, gemm_tokens, flags);
    catq::RunDim(11008, tokens, gemm_tokens, flags);
  }
  return 0;
}
