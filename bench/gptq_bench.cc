// catq_bench_gptq: time of GPTQ weight quantization (core/quant/gptq.h) on
// Llama-7B-like weight shapes, printed as nominal GFLOP/s next to OpenBLAS
// dgemm on the shape of GPTQ's own lazy batch update, timed in the same run,
// and as a multiple of QuantizeRtn's time on the same weight.
//
//   catq_bench_gptq                # 4096 x 4096 and 11008 x 4096
//   catq_bench_gptq --quick        # 1024 x 1024 (or CATQ_BENCH_QUICK=1)
//   catq_bench_gptq --reps=3 --threads=2
//
// Figures, not tests: nothing here asserts on speed. A stage whose result is
// not OK aborts the run (exit 1), since its timing would mean nothing.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmark/benchmark.h"
#include "core/math/eigen_types.h"
#include "core/quant/gptq.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/rtn.h"
#include "core/quant/weight_quant_options.h"

#ifndef CATQ_BENCH_BUILD_TYPE
#define CATQ_BENCH_BUILD_TYPE "unknown"
#endif

namespace catq {
namespace {

struct Shape {
  int64_t rows;  // out
  int64_t cols;  // in
  const char* what;
};

struct Flags {
  bool quick = false;
  int64_t rows = 0;  // --shape=OUTxIN, 0 when not given
  int64_t cols = 0;
  int reps = 2;
  int threads = 1;
};

// Wall and process CPU time of one run. On a loaded machine the CPU time
// says what the run cost; with one OpenBLAS thread the two agree when idle.
struct Timing {
  double seconds = 0;
  double cpu_seconds = 0;
};

struct Row {
  std::string name;
  double flops = 0;  // nominal, per run; 0 when not counted
  Timing time;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "catq_bench_gptq: %s\n", what.c_str());
  std::exit(1);
}

// The run with the best (smallest) wall time of `reps` calls of `fn`, after
// one untimed warm-up call (page faults of reused buffers, OpenBLAS threads).
Timing Best(int reps, const std::function<void()>& fn) {
  fn();
  Timing best{std::numeric_limits<double>::infinity(), 0};
  for (int i = 0; i < reps; ++i) {
    const std::clock_t cpu_start = std::clock();
    const auto start = std::chrono::steady_clock::now();
    fn();
    const auto stop = std::chrono::steady_clock::now();
    const std::clock_t cpu_stop = std::clock();
    const double seconds = std::chrono::duration<double>(stop - start).count();
    if (seconds < best.seconds) {
      best = {seconds, static_cast<double>(cpu_stop - cpu_start) / CLOCKS_PER_SEC};
    }
  }
  return best;
}

// Deterministic weights: roughly Gaussian (sum of four uniforms) with a
// per-row scale spread over a decade, as in catq_bench_quant_pack.
RowMatrixXf MakeWeights(int64_t rows, int64_t cols) {
  RowMatrixXf w(rows, cols);
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto uniform = [&state]() {  // xorshift64*, [-1, 1)
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    const uint64_t bits = state * 0x2545F4914F6CDD1Dull;
    return static_cast<float>(static_cast<int64_t>(bits >> 11) - (int64_t{1} << 52)) /
           static_cast<float>(int64_t{1} << 52);
  };
  for (int64_t r = 0; r < rows; ++r) {
    const float row_scale = 0.005f + 0.045f * static_cast<float>(r % 97) / 96.0f;
    for (int64_t c = 0; c < cols; ++c) {
      w(r, c) = 0.5f * (uniform() + uniform() + uniform() + uniform()) * row_scale;
    }
  }
  return w;
}

// A positive definite second moment with correlated neighbours, built in
// O(d^2) instead of summing calibration inputs: H[i, j] = s_i s_j 0.5^|i-j|
// (a Kac-Murdock-Szego matrix scaled by channel gains s between 0.5 and 4).
Eigen::MatrixXd MakeHessian(int64_t d) {
  Eigen::VectorXd gain(d);
  for (int64_t i = 0; i < d; ++i) gain(i) = 0.5 * std::pow(8.0, static_cast<double>(i % 61) / 60);
  Eigen::MatrixXd h(d, d);
  for (int64_t j = 0; j < d; ++j) {
    double decay = 1.0;
    for (int64_t i = j; i < d; ++i) {
      h(i, j) = h(j, i) = gain(i) * gain(j) * decay;
      decay *= 0.5;
    }
  }
  return h;
}

// Nominal flops of QuantizeGptq: in^3 / 3 each for the Cholesky factor and
// the triangular inverse, plus 2 out (block size) (columns after the block)
// per lazy batch and 2 out per update inside a block.
double GptqFlops(int64_t rows, int64_t cols, int block_size) {
  const double d = static_cast<double>(cols);
  double flops = 2.0 * d * d * d / 3.0;
  for (int64_t i1 = 0; i1 < cols; i1 += block_size) {
    const int64_t i2 = std::min<int64_t>(i1 + block_size, cols);
    flops += 2.0 * static_cast<double>(rows) * static_cast<double>((i2 - i1) * (cols - i2));
    const double b = static_cast<double>(i2 - i1);
    flops += static_cast<double>(rows) * b * (b - 1);
  }
  return flops;
}

QuantizedWeight GptqOrDie(const Eigen::Ref<const RowMatrixXf>& w, const Eigen::MatrixXd& h,
                          const WeightQuantOptions& options, const GptqOptions& gptq) {
  absl::StatusOr<QuantizedWeight> qw = QuantizeGptq(w, h, options, gptq);
  if (!qw.ok()) Die("QuantizeGptq: " + qw.status().ToString());
  return *std::move(qw);
}

// printf("%.*f") into a std::string, for table cells that may be "-".
std::string Fixed(double v, int decimals, const char* suffix = "") {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f%s", decimals, v, suffix);
  return buffer;
}

// rows[0] is the dgemm reference, rows[1] QuantizeRtn. Rates and ratios use
// wall time.
void PrintTable(const Shape& shape, const std::vector<Row>& rows) {
  const double gemm_rate = rows[0].flops / rows[0].time.seconds / 1e9;
  const double rtn_seconds = rows[1].time.seconds;
  std::printf("\nshape %lld x %lld (%s)\n", static_cast<long long>(shape.rows),
              static_cast<long long>(shape.cols), shape.what);
  std::printf("%-40s %10s %10s %8s %8s %9s %7s\n", "stage", "best ms", "cpu ms", "GFLOP", "GFLOP/s",
              "vs dgemm", "vs RTN");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    const bool counted = row.flops > 0;
    const double rate = counted ? row.flops / row.time.seconds / 1e9 : 0;
    std::printf("%-40s %10.1f %10.1f %8s %8s %9s %7s\n", row.name.c_str(), row.time.seconds * 1e3,
                row.time.cpu_seconds * 1e3, counted ? Fixed(row.flops / 1e9, 1).c_str() : "-",
                counted ? Fixed(rate, 2).c_str() : "-",
                counted && i > 0 ? Fixed(rate / gemm_rate, 2, "x").c_str() : "-",
                i > 1 ? Fixed(row.time.seconds / rtn_seconds, 0, "x").c_str() : "-");
  }
}

void RunShape(const Shape& shape, const Flags& flags) {
  const RowMatrixXf w = MakeWeights(shape.rows, shape.cols);
  const Eigen::MatrixXd h = MakeHessian(shape.cols);
  const GptqOptions defaults;
  const int block = defaults.block_size;

  WeightQuantOptions g128;  // 4 bits, symmetric
  g128.group_size = 128;
  WeightQuantOptions per_channel;

  std::vector<Row> rows;
  // The reference: one lazy batch update of GPTQ, C[out, in] -= A[out, 128]
  // B[128, in], in doubles, as OpenBLAS runs it on this machine.
  {
    Eigen::MatrixXd a = Eigen::MatrixXd::Constant(shape.rows, block, 1e-3);
    Eigen::MatrixXd b = Eigen::MatrixXd::Constant(block, shape.cols, 1e-3);
    Eigen::MatrixXd c = Eigen::MatrixXd::Zero(shape.rows, shape.cols);
    const double flops = 2.0 * static_cast<double>(shape.rows * block * shape.cols);
    rows.push_back({"dgemm [out, 128] x [128, in] (reference)", flops, Best(flags.reps, [&] {
                      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans,
                                  static_cast<blasint>(shape.rows),
                                  static_cast<blasint>(shape.cols), block, -1.0, a.data(),
                                  static_cast<blasint>(shape.rows), b.data(), block, 1.0, c.data(),
                                  static_cast<blasint>(shape.rows));
                      benchmark::DoNotOptimize(c.data());
                      benchmark::ClobberMemory();
                    })});
  }
  rows.push_back({"QuantizeRtn sym g128", 0, Best(flags.reps, [&] {
                    absl::StatusOr<QuantizedWeight> qw = QuantizeRtn(w, g128);
                    if (!qw.ok()) Die("QuantizeRtn: " + qw.status().ToString());
                    benchmark::DoNotOptimize(qw->q.data());
                  })});
  // One output row: the checks and the factorization of H, nearly nothing else.
  rows.push_back({"QuantizeGptq 1 x in (~ factor H only)", GptqFlops(1, shape.cols, block),
                  Best(flags.reps, [&] {
                    QuantizedWeight qw = GptqOrDie(w.topRows(1), h, g128, defaults);
                    benchmark::DoNotOptimize(qw.q.data());
                  })});
  const double flops = GptqFlops(shape.rows, shape.cols, block);
  rows.push_back({"QuantizeGptq sym g128", flops, Best(flags.reps, [&] {
                    QuantizedWeight qw = GptqOrDie(w, h, g128, defaults);
                    benchmark::DoNotOptimize(qw.q.data());
                  })});
  GptqOptions act_order = defaults;
  act_order.act_order = true;
  act_order.static_groups = true;
  rows.push_back({"QuantizeGptq sym g128 act_order static", flops, Best(flags.reps, [&] {
                    QuantizedWeight qw = GptqOrDie(w, h, g128, act_order);
                    benchmark::DoNotOptimize(qw.q.data());
                  })});
  rows.push_back({"QuantizeGptq sym per-channel", flops, Best(flags.reps, [&] {
                    QuantizedWeight qw = GptqOrDie(w, h, per_channel, defaults);
                    benchmark::DoNotOptimize(qw.q.data());
                  })});
  PrintTable(shape, rows);
}

void Usage() {
  std::printf(
      "usage: catq_bench_gptq [--quick | --shape=OUTxIN] [--reps=N] [--threads=N]\n"
      "  --quick      one 1024 x 1024 matrix instead of 4096 x 4096 and 11008 x 4096\n"
      "               (also when the environment sets CATQ_BENCH_QUICK to anything but 0)\n"
      "  --shape=OUTxIN  one weight of that shape, e.g. --shape=4096x11008 (down_proj)\n"
      "  --reps=N     timed runs per stage after one warm-up, best kept (default 2)\n"
      "  --threads=N  OpenBLAS threads (default 1, as under catq's worker pool)\n");
}

int ParseInt(std::string_view flag, std::string_view arg, int lo, int hi) {
  const std::string value(arg.substr(flag.size()));
  char* end = nullptr;
  const long parsed = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || parsed < lo || parsed > hi) {
    Die(std::string(flag) + " wants an integer in [" + std::to_string(lo) + ", " +
        std::to_string(hi) + "], got '" + value + "'");
  }
  return static_cast<int>(parsed);
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
      flags.reps = ParseInt("--reps=", arg, 1, 1000);
    } else if (arg.starts_with("--shape=")) {
      const std::string value(arg.substr(8));
      const size_t x = value.find('x');
      if (x == std::string::npos) Die("--shape wants OUTxIN, got '" + value + "'");
      const std::string out = "--shape=" + value.substr(0, x);
      const std::string in = "--shape=" + value.substr(x + 1);
      flags.rows = ParseInt("--shape=", out, 1, 1 << 20);
      flags.cols = ParseInt("--shape=", in, 1, 1 << 17);
    } else if (arg.starts_with("--threads=")) {
      flags.threads = ParseInt("--threads=", arg, 1, 1024);
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
  openblas_set_num_threads(flags.threads);
  std::vector<catq::Shape> shapes;
  if (flags.rows > 0) {
    shapes.push_back({flags.rows, flags.cols, "--shape"});
  } else if (flags.quick) {
    shapes.push_back({1024, 1024, "quick"});
  } else {
    shapes.push_back({4096, 4096, "Llama-7B q/k/v/o_proj"});
    shapes.push_back({11008, 4096, "Llama-7B gate/up_proj"});
  }
  std::printf(
      "catq_bench_gptq: %d OpenBLAS thread(s), best of %d runs after one warm-up, build %s\n"
      "GFLOP are nominal (see GptqFlops); ratios are against the dgemm row of the same shape\n"
      "in this run (GFLOP/s) and against QuantizeRtn of the same weight (time)\n",
      openblas_get_num_threads(), flags.reps, CATQ_BENCH_BUILD_TYPE);
  for (const catq::Shape& shape : shapes) catq::RunShape(shape, flags);
  return 0;
}
