// catq_bench_statistics: throughput of SiteStatistics::Accumulate (the float64
// SYRK that sums x x^T over calibration tokens, cat-method.md section 2.4) in
// full and block mode (block mode's own kernel, core/cat/upper_gram.h, also
// alone), as GFLOP/s and as a ratio to OpenBLAS DGEMM and SGEMM of the same
// product X^T X, timed in the same run. Each figure is the best of --reps
// runs after one warm-up; the stages take turns, run by run.
//
//   catq_bench_statistics               # d = 4096: full, and blocks of k = 128
//   catq_bench_statistics --quick       # d = 1024 (or CATQ_BENCH_QUICK=1)
//   catq_bench_statistics --threads=2   # OpenBLAS threads (default 1)
//   catq_bench_statistics --cpu-clock   # process CPU time: steadier on a busy machine
//
// Flops: a SYRK of n columns over T tokens counts n (n + 1) T (the upper
// triangle's multiply-adds, two flops each), summed over the blocks; a GEMM
// counts 2 d^2 T. Figures, not tests: nothing here asserts on speed. A stage
// whose result is not OK aborts the run (exit 1).
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "benchmark/benchmark.h"
#include "core/cat/site_statistics.h"
#include "core/cat/upper_gram.h"
#include "core/math/blas.h"
#include "core/math/eigen_types.h"

#ifndef CATQ_BENCH_BUILD_TYPE
#define CATQ_BENCH_BUILD_TYPE "unknown"
#endif

namespace catq {
namespace {

struct Flags {
  bool quick = false;
  int reps = 3;
  int threads = 1;
  // CPU time of the process instead of wall time: on a shared, busy machine
  // it leaves out the time other processes hold the cores. With more than one
  // thread it sums the threads, so GFLOP/s become per core.
  bool cpu_clock = false;
};

double Now(bool cpu_clock) {
  if (!cpu_clock) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// One timed stage: `run` does the work once; `flops` is what it counts.
struct Stage {
  std::string name;
  double flops = 0;
  std::function<void()> run;
  bool reference = false;
  double seconds = std::numeric_limits<double>::infinity();  // best so far
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "catq_bench_statistics: %s\n", what.c_str());
  std::exit(1);
}

void CheckOk(const absl::Status& status, const char* what) {
  if (!status.ok()) Die(std::string(what) + ": " + status.ToString());
}

// Times every stage `reps` times, keeping the best, after one untimed warm-up
// each (buffers faulted in, OpenBLAS threads started). The stages take turns
// (round-robin) so that a stage and its references see the same machine when
// its load changes during the run.
void TimeInRounds(int reps, bool cpu_clock, std::vector<Stage>& stages) {
  for (Stage& stage : stages) stage.run();
  for (int i = 0; i < reps; ++i) {
    for (Stage& stage : stages) {
      const double start = Now(cpu_clock);
      stage.run();
      stage.seconds = std::min(stage.seconds, Now(cpu_clock) - start);
    }
  }
}

// Activations with per-channel scales and a shared per-token factor; the
// values do not change the speed of BLAS, only keep it honest.
RowMatrixXf MakeActivations(int64_t tokens, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> scale(static_cast<size_t>(dim));
  for (float& s : scale) s = std::exp(normal(rng));
  RowMatrixXf x(tokens, dim);
  for (int64_t t = 0; t < tokens; ++t) {
    const float shared = normal(rng);
    for (int64_t j = 0; j < dim; ++j) {
      x(t, j) = scale[static_cast<size_t>(j)] * (normal(rng) + 0.5f * shared);
    }
  }
  return x;
}

double GemmFlops(int64_t tokens, int64_t dim) {
  return 2.0 * static_cast<double>(dim) * static_cast<double>(dim) * static_cast<double>(tokens);
}

// n (n + 1) T summed over the blocks of `stats`.
double SyrkFlops(const SiteStatistics& stats, int64_t tokens) {
  double flops = 0.0;
  for (int64_t b = 0; b < stats.NumBlocks(); ++b) {
    const double n = static_cast<double>(stats.BlockRange(b).size);
    flops += n * (n + 1.0) * static_cast<double>(tokens);
  }
  return flops;
}

SiteStatistics CreateOrDie(int64_t dim, int64_t block_size) {
  absl::StatusOr<SiteStatistics> stats = SiteStatistics::Create(dim, {.block_size = block_size});
  CheckOk(stats.status(), "SiteStatistics::Create");
  return *std::move(stats);
}

// The buffers the stages work in; they outlive the stages' closures.
struct Buffers {
  RowMatrixXf x;     // full-mode batch
  RowMatrixXd x64;   // the same in float64
  RowMatrixXf xb;    // block-mode batch
  RowMatrixXd xb64;  // the same in float64
  RowMatrixXd c64;   // d x d GEMM and SYRK outputs
  RowMatrixXf c32;
  std::vector<RowMatrixXd> c_blocks;
};

// The kernel alone: one DSYRK per block of `shape` over `x64`, already in
// float64, in one call over all tokens (no chunks, no scan, no conversion).
void SyrkBlocks(const RowMatrixXd& x64, const SiteStatistics& shape, std::vector<RowMatrixXd>& c) {
  const int t = static_cast<int>(x64.rows());
  const int d = static_cast<int>(x64.cols());
  for (int64_t b = 0; b < shape.NumBlocks(); ++b) {
    const ChannelRange range = shape.BlockRange(b);
    const int n = static_cast<int>(range.size);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, t, 1.0, x64.data() + range.begin, d, 1.0,
                c[static_cast<size_t>(b)].data(), n);
  }
  benchmark::DoNotOptimize(c.data());
}

// The block kernel alone (core/cat/upper_gram.h), as Accumulate runs it but
// without the token scan: groups of 64 tokens through every block, panels of
// 32 tokens widened from float32 and summed. REQUIRES: upper_gram::Available().
void KernelBlocks(const RowMatrixXf& x, const SiteStatistics& shape, std::vector<double>& panel,
                  std::vector<RowMatrixXd>& c) {
  constexpr int64_t kGroup = 64;
  constexpr int64_t kPanelTokens = 32;
  double* p = panel.data();
  while (reinterpret_cast<uintptr_t>(p) % 32 != 0) ++p;
  for (int64_t g0 = 0; g0 < x.rows(); g0 += kGroup) {
    const int64_t g1 = std::min(x.rows(), g0 + kGroup);
    for (int64_t b = 0; b < shape.NumBlocks(); ++b) {
      const ChannelRange range = shape.BlockRange(b);
      for (int64_t t0 = g0; t0 < g1; t0 += kPanelTokens) {
        const int64_t m = std::min(kPanelTokens, g1 - t0);
        upper_gram::PackPanel(x.data() + t0 * x.cols() + range.begin, x.cols(), m, range.size, p);
        upper_gram::AddUpperGram(p, m, range.size, c[static_cast<size_t>(b)].data(), range.size);
      }
    }
  }
  benchmark::DoNotOptimize(c.data());
}

double GFlops(const Stage& stage) { return stage.flops / stage.seconds / 1e9; }

void PrintTable(const std::string& title, const std::vector<const Stage*>& rows, const Stage& dgemm,
                const Stage& sgemm, int64_t tokens, int64_t dim) {
  std::printf("\n%s: %lld tokens x d = %lld (float32 batch %.1f MB)\n", title.c_str(),
              static_cast<long long>(tokens), static_cast<long long>(dim),
              static_cast<double>(tokens * dim) * 4.0 / 1e6);
  std::printf("%-46s %8s %9s %8s %9s %9s %10s\n", "stage", "GFLOP", "best ms", "GFLOP/s",
              "vs DGEMM", "vs SGEMM", "ns/token");
  for (const Stage* row : rows) {
    std::printf("%-46s %8.2f %9.1f %8.2f", row->name.c_str(), row->flops / 1e9, row->seconds * 1e3,
                GFlops(*row));
    if (row->reference) {
      std::printf(" %9s %9s", "", "");
    } else {
      std::printf(" %8.3fx %8.3fx", GFlops(*row) / GFlops(dgemm), GFlops(*row) / GFlops(sgemm));
    }
    std::printf(" %10.0f\n", row->seconds * 1e9 / static_cast<double>(tokens));
  }
}

void Run(const Flags& flags) {
  const int64_t d = flags.quick ? 1024 : 4096;
  const int64_t k = 128;
  // Full mode costs d + 1 flops per channel and token, blocks k + 1: the block
  // batch gets more tokens so that its stages take a measurable time.
  const int64_t full_tokens = flags.quick ? 512 : 2048;
  const int64_t block_tokens = flags.quick ? 2048 : 8192;
  const int dd = static_cast<int>(d);
  const int tt = static_cast<int>(full_tokens);

  Buffers buf;
  buf.x = MakeActivations(full_tokens, d, 1);
  buf.x64 = buf.x.cast<double>();
  buf.xb = MakeActivations(block_tokens, d, 2);
  buf.xb64 = buf.xb.cast<double>();
  buf.c64 = RowMatrixXd::Zero(d, d);
  buf.c32 = RowMatrixXf::Zero(d, d);
  SiteStatistics full = CreateOrDie(d, 0);
  SiteStatistics blocks = CreateOrDie(d, k);
  for (int64_t b = 0; b < blocks.NumBlocks(); ++b) {
    const int64_t n = blocks.BlockRange(b).size;
    buf.c_blocks.push_back(RowMatrixXd::Zero(n, n));
  }
  const std::string ks = std::to_string(k);

  // Every stage adds into its output (beta = 1), as accumulation does.
  std::vector<Stage> stages;
  stages.push_back({"DGEMM X^T X (reference)", GemmFlops(full_tokens, d),
                    [&] {
                      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dd, dd, tt, 1.0,
                                  buf.x64.data(), dd, buf.x64.data(), dd, 1.0, buf.c64.data(), dd);
                      benchmark::DoNotOptimize(buf.c64.data());
                    },
                    true});
  stages.push_back({"SGEMM X^T X (reference)", GemmFlops(full_tokens, d),
                    [&] {
                      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dd, dd, tt, 1.0f,
                                  buf.x.data(), dd, buf.x.data(), dd, 1.0f, buf.c32.data(), dd);
                      benchmark::DoNotOptimize(buf.c32.data());
                    },
                    true});
  stages.push_back({"DSYRK full, X already float64", SyrkFlops(full, full_tokens), [&] {
                      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dd, tt, 1.0,
                                  buf.x64.data(), dd, 1.0, buf.c64.data(), dd);
                      benchmark::DoNotOptimize(buf.c64.data());
                    }});
  stages.push_back({"Accumulate full (f32 batch, all included)", SyrkFlops(full, full_tokens),
                    [&] { CheckOk(full.Accumulate(buf.x), "SiteStatistics::Accumulate"); }});
  stages.push_back({"DSYRK blocks k=" + ks + ", X already float64", SyrkFlops(blocks, block_tokens),
                    [&] { SyrkBlocks(buf.xb64, blocks, buf.c_blocks); }});
  // Without AVX2/FMA the kernel stage is left out (Accumulate uses DSYRK).
  const bool kernel = upper_gram::Available();
  std::vector<double> panel(32 * static_cast<size_t>(upper_gram::PanelStride(k)) + 4);
  if (kernel) {
    stages.push_back({"upper_gram kernel blocks k=" + ks + ", f32, no scan",
                      SyrkFlops(blocks, block_tokens),
                      [&] { KernelBlocks(buf.xb, blocks, panel, buf.c_blocks); }});
  }
  stages.push_back({"Accumulate blocks k=" + ks + " (f32 batch, all incl.)",
                    SyrkFlops(blocks, block_tokens),
                    [&] { CheckOk(blocks.Accumulate(buf.xb), "SiteStatistics::Accumulate"); }});
  TimeInRounds(flags.reps, flags.cpu_clock, stages);

  const Stage& dgemm = stages[0];
  const Stage& sgemm = stages[1];
  PrintTable("full matrix", {&stages[0], &stages[1], &stages[2], &stages[3]}, dgemm, sgemm,
             full_tokens, d);
  std::vector<const Stage*> block_rows;
  for (size_t i = 4; i < stages.size(); ++i) block_rows.push_back(&stages[i]);
  PrintTable("diagonal blocks, k = " + ks, block_rows, dgemm, sgemm, block_tokens, d);
}

void Usage() {
  std::printf(
      "usage: catq_bench_statistics [--quick] [--reps=N] [--threads=N] [--cpu-clock]\n"
      "  --quick      d = 1024 instead of 4096 (also when the environment sets\n"
      "               CATQ_BENCH_QUICK to anything but 0)\n"
      "  --reps=N     timed runs per stage, best kept (default 3, at least 1)\n"
      "  --threads=N  OpenBLAS threads for every stage (default 1)\n"
      "  --cpu-clock  time with the process CPU clock instead of the wall clock (steadier\n"
      "               on a busy machine; sums the threads when there are several)\n");
}

int ParseInt(std::string_view arg, std::string_view flag, int lo, int hi) {
  const std::string value(arg.substr(flag.size()));
  char* end = nullptr;
  const long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < lo || v > hi) {
    Die(std::string(flag) + " wants an integer in [" + std::to_string(lo) + ", " +
        std::to_string(hi) + "], got '" + value + "'");
  }
  return static_cast<int>(v);
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
      flags.reps = ParseInt(arg, "--reps=", 1, 1000);
    } else if (arg.starts_with("--threads=")) {
      flags.threads = ParseInt(arg, "--threads=", 1, 1024);
    } else if (arg == "--cpu-clock") {
      flags.cpu_clock = true;
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
  catq::CheckOk(catq::SetBlasThreads(flags.threads), "SetBlasThreads");
  std::printf(
      "catq_bench_statistics: %d OpenBLAS thread(s) (of %d), best of %d round-robin runs after one "
      "warm-up, %s clock, build %s\n%s\n"
      "SYRK flops: n (n + 1) per token per block of n channels; GEMM: 2 d^2 per token.\n"
      "Ratios are GFLOP/s over those of the same-run GEMMs of the full d x d product.\n",
      catq::BlasThreads(), catq::BlasMaxThreads(), flags.reps,
      flags.cpu_clock ? "process CPU" : "wall", CATQ_BENCH_BUILD_TYPE,
      catq::BlasDescription().c_str());
  catq::Run(flags);
  return 0;
}
