// catq_bench_quant_pack: throughput of the RTN quantizer (the fast
// QuantizeRtn, and QuantizeRtnReference for comparison), the
// compressed-tensors int4 packer and the fused RTN-to-int4 paths from f32 and
// bf16 on Llama-7B-like weight shapes, printed as GB/s of input bytes and as
// a ratio to memcpy over the same bytes, timed in the same run. Single
// thread; each figure is the best of --reps runs.
//
//   catq_bench_quant_pack            # 4096 x 4096 and 11008 x 4096
//   catq_bench_quant_pack --quick    # 1024 x 1024 (or CATQ_BENCH_QUICK=1)
//   catq_bench_quant_pack --reps=9
//
// Figures, not tests: nothing here asserts on speed. A stage whose result is
// not OK aborts the run (exit 1), since its timing would mean nothing.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "core/math/eigen_types.h"
#include "core/quant/compressed_tensors_pack.h"
#include "core/quant/internal/rtn_kernels.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/rtn.h"
#include "core/quant/rtn_packed_int4.h"
#include "core/quant/weight_quant_options.h"
#include "core/tensor/dtype.h"
#include "core/tensor/half.h"
#include "core/tensor/safetensors_header.h"
#include "core/tensor/tensor_view.h"

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
  int reps = 5;
};

// A stage's reference: memcpy over the same number of bytes as its input.
enum class Reference { kMemcpyF32, kMemcpyBf16, kMemcpyInt8, kNone };

struct Row {
  std::string name;
  std::string input;  // what the input bytes are
  double bytes = 0;   // input bytes per run
  double seconds = 0;
  Reference reference = Reference::kNone;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "catq_bench_quant_pack: %s\n", what.c_str());
  std::exit(1);
}

// The best (smallest) wall time of `reps` calls of `fn`, after one untimed
// warm-up call (page faults of reused buffers, cold caches and code).
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

// Deterministic weights shaped like a trained linear: roughly Gaussian
// (sum of four uniforms), a per-row scale spread over a decade, and a rare
// outlier so that groups differ in range. Every value is exactly a bfloat16,
// so the f32 and bf16 inputs hold the same numbers.
void MakeWeights(const Shape& shape, RowMatrixXf* f32, std::vector<uint16_t>* bf16) {
  f32->resize(shape.rows, shape.cols);
  bf16->resize(static_cast<size_t>(shape.rows * shape.cols));
  uint64_t state = 0x9E3779B97F4A7C15ull;
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
  for (int64_t r = 0; r < shape.rows; ++r) {
    const float row_scale = 0.005f + 0.045f * static_cast<float>(r % 97) / 96.0f;
    for (int64_t c = 0; c < shape.cols; ++c) {
      float v = 0.5f * (uniform() + uniform() + uniform() + uniform()) * row_scale;
      if ((next() & 0x3FF) == 0) v *= 20.0f;  // ~0.1% outliers
      const uint16_t b = FloatToBFloat16(v);
      (*bf16)[static_cast<size_t>(r * shape.cols + c)] = b;
      (*f32)(r, c) = BFloat16ToFloat(b);
    }
  }
}

// Widens `bf16` into `out` the way the pipeline reads a checkpoint tensor:
// TensorView::CopyToFloat over the raw little-endian bytes.
void WidenOrDie(const TensorView& bf16, RowMatrixXf* out) {
  const absl::Status status = bf16.CopyToFloat(absl::MakeSpan(out->data(), out->size()));
  if (!status.ok()) Die("TensorView::CopyToFloat: " + status.ToString());
}

QuantizedWeight QuantizeOrDie(const Eigen::Ref<const RowMatrixXf>& w,
                              const WeightQuantOptions& options) {
  absl::StatusOr<QuantizedWeight> qw = QuantizeRtn(w, options);
  if (!qw.ok()) Die("QuantizeRtn: " + qw.status().ToString());
  return *std::move(qw);
}

QuantizedWeight QuantizeReferenceOrDie(const Eigen::Ref<const RowMatrixXf>& w,
                                       const WeightQuantOptions& options) {
  absl::StatusOr<QuantizedWeight> qw = QuantizeRtnReference(w, options);
  if (!qw.ok()) Die("QuantizeRtnReference: " + qw.status().ToString());
  return *std::move(qw);
}

// As the output writer rounds float16 scales (core/output/packed_linear.cc).
float RoundUpToF16(float v) {
  uint16_t h = FloatToHalf(v);
  if (HalfToFloat(h) < v) ++h;
  return HalfToFloat(h);
}

RtnPackedInt4 PackedOrDie(absl::StatusOr<RtnPackedInt4> packed) {
  if (!packed.ok()) Die("QuantizeRtnPackInt4: " + packed.status().ToString());
  return *std::move(packed);
}

CompressedTensorsInt4 PackOrDie(const QuantizedWeight& qw) {
  absl::StatusOr<CompressedTensorsInt4> packed = PackInt4CompressedTensors(qw);
  if (!packed.ok()) Die("PackInt4CompressedTensors: " + packed.status().ToString());
  return *std::move(packed);
}

double GBPerSecond(const Row& row) { return row.bytes / row.seconds / 1e9; }

const char* ReferenceName(Reference reference) {
  switch (reference) {
    case Reference::kMemcpyF32:
      return "memcpy f32";
    case Reference::kMemcpyBf16:
      return "memcpy bf16";
    case Reference::kMemcpyInt8:
      return "memcpy int8";
    case Reference::kNone:
      break;
  }
  return "";
}

void PrintTable(const Shape& shape, const std::vector<Row>& rows) {
  auto find_reference = [&rows](Reference reference) -> const Row* {
    for (const Row& row : rows) {
      if (row.reference == Reference::kNone && row.name == ReferenceName(reference)) return &row;
    }
    return nullptr;
  };
  const double elements = static_cast<double>(shape.rows * shape.cols);
  std::printf("\nshape %lld x %lld (%s), %.1f M elements\n", static_cast<long long>(shape.rows),
              static_cast<long long>(shape.cols), shape.what, elements / 1e6);
  std::printf("%-38s %-5s %7s %9s %7s %8s  %s\n", "stage", "input", "in MB", "best ms", "GB/s",
              "ns/elem", "vs same-run memcpy");
  for (const Row& row : rows) {
    std::printf("%-38s %-5s %7.1f %9.2f %7.2f %8.3f", row.name.c_str(), row.input.c_str(),
                row.bytes / 1e6, row.seconds * 1e3, GBPerSecond(row), row.seconds * 1e9 / elements);
    if (const Row* ref = find_reference(row.reference); ref != nullptr) {
      std::printf("  %.3fx %s", GBPerSecond(row) / GBPerSecond(*ref), ReferenceName(row.reference));
    }
    std::printf("\n");
  }
}

void RunShape(const Shape& shape, const Flags& flags) {
  RowMatrixXf w;
  std::vector<uint16_t> w_bf16;
  MakeWeights(shape, &w, &w_bf16);
  const size_t n = static_cast<size_t>(shape.rows * shape.cols);
  const double f32_bytes = static_cast<double>(n * sizeof(float));
  const double bf16_bytes = static_cast<double>(n * sizeof(uint16_t));
  const double int8_bytes = static_cast<double>(n * sizeof(int8_t));

  WeightQuantOptions g128;  // 4 bits, symmetric
  g128.group_size = 128;
  WeightQuantOptions per_channel;  // 4 bits, symmetric, kPerChannelGroupSize
  WeightQuantOptions asym_g128 = g128;
  asym_g128.symmetric = false;

  std::vector<Row> rows;

  // References: memcpy of the input bytes into a buffer that is faulted in
  // by the warm-up call (so only the copy is timed).
  {
    std::vector<float> dst(n);
    rows.push_back({"memcpy f32", "f32", f32_bytes, BestSeconds(flags.reps, [&] {
                      std::memcpy(dst.data(), w.data(), n * sizeof(float));
                      benchmark::DoNotOptimize(dst.data());
                      benchmark::ClobberMemory();
                    })});
  }
  {
    std::vector<uint16_t> dst(n);
    rows.push_back({"memcpy bf16", "bf16", bf16_bytes, BestSeconds(flags.reps, [&] {
                      std::memcpy(dst.data(), w_bf16.data(), n * sizeof(uint16_t));
                      benchmark::DoNotOptimize(dst.data());
                      benchmark::ClobberMemory();
                    })});
  }
  const QuantizedWeight qw = QuantizeOrDie(w, g128);
  {
    std::vector<int8_t> dst(n);
    rows.push_back({"memcpy int8", "int8", int8_bytes, BestSeconds(flags.reps, [&] {
                      std::memcpy(dst.data(), qw.q.data(), n);
                      benchmark::DoNotOptimize(dst.data());
                      benchmark::ClobberMemory();
                    })});
  }

  // The stages. QuantizeRtn and the packer allocate their outputs on every
  // call, as real callers get them; that cost is part of the figure.
  rows.push_back({"QuantizeRtnReference sym g128", "f32", f32_bytes,
                  BestSeconds(std::min(flags.reps, 3),
                              [&] {
                                QuantizedWeight out = QuantizeReferenceOrDie(w, g128);
                                benchmark::DoNotOptimize(out.q.data());
                              }),
                  Reference::kMemcpyF32});
  rows.push_back({"QuantizeRtn sym g128", "f32", f32_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                QuantizedWeight out = QuantizeOrDie(w, g128);
                                benchmark::DoNotOptimize(out.q.data());
                              }),
                  Reference::kMemcpyF32});
  rows.push_back({"QuantizeRtn sym per-channel", "f32", f32_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                QuantizedWeight out = QuantizeOrDie(w, per_channel);
                                benchmark::DoNotOptimize(out.q.data());
                              }),
                  Reference::kMemcpyF32});
  rows.push_back({"QuantizeRtn asym g128", "f32", f32_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                QuantizedWeight out = QuantizeOrDie(w, asym_g128);
                                benchmark::DoNotOptimize(out.q.data());
                              }),
                  Reference::kMemcpyF32});
  rows.push_back({"PackInt4CompressedTensors", "int8", int8_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                CompressedTensorsInt4 out = PackOrDie(qw);
                                benchmark::DoNotOptimize(out.weight_packed.data());
                              }),
                  Reference::kMemcpyInt8});

  // From bf16 as a checkpoint stores it: widen into a reused scratch matrix
  // (TensorView::CopyToFloat), then quantize (sym g128) and pack.
  TensorInfo info;
  info.name = "bench.weight";
  info.dtype = DType::kBF16;
  info.shape = {shape.rows, shape.cols};
  info.data_end = static_cast<uint64_t>(n * sizeof(uint16_t));
  const TensorView view(
      info, absl::string_view(reinterpret_cast<const char*>(w_bf16.data()), n * sizeof(uint16_t)));
  RowMatrixXf scratch(shape.rows, shape.cols);
  rows.push_back({"bf16->f32 (CopyToFloat)", "bf16", bf16_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                WidenOrDie(view, &scratch);
                                benchmark::DoNotOptimize(scratch.data());
                                benchmark::ClobberMemory();
                              }),
                  Reference::kMemcpyBf16});
  rows.push_back({"bf16 -> RTN g128 + pack", "bf16", bf16_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                WidenOrDie(view, &scratch);
                                const QuantizedWeight q = QuantizeOrDie(scratch, g128);
                                CompressedTensorsInt4 out = PackOrDie(q);
                                benchmark::DoNotOptimize(out.weight_packed.data());
                              }),
                  Reference::kMemcpyBf16});

  // Fused: straight from the f32 or bf16 weight to packed nibbles + scales.
  rows.push_back({"f32 -> QuantizeRtnPackInt4 g128", "f32", f32_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                RtnPackedInt4 out = PackedOrDie(QuantizeRtnPackInt4(w, g128));
                                benchmark::DoNotOptimize(out.packed.weight_packed.data());
                              }),
                  Reference::kMemcpyF32});
  rows.push_back({"bf16 -> QuantizeRtnPackInt4FromBf16 g128", "bf16", bf16_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                RtnPackedInt4 out = PackedOrDie(QuantizeRtnPackInt4FromBf16(
                                    w_bf16, shape.rows, shape.cols, g128));
                                benchmark::DoNotOptimize(out.packed.weight_packed.data());
                              }),
                  Reference::kMemcpyBf16});
  rows.push_back({"  same, f16 scales (round up)", "bf16", bf16_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                RtnPackedInt4 out = PackedOrDie(QuantizeRtnPackInt4FromBf16(
                                    w_bf16, shape.rows, shape.cols, g128, RoundUpToF16));
                                benchmark::DoNotOptimize(out.packed.weight_packed.data());
                              }),
                  Reference::kMemcpyBf16});
  rows.push_back({"  same, asym g128", "bf16", bf16_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                RtnPackedInt4 out = PackedOrDie(QuantizeRtnPackInt4FromBf16(
                                    w_bf16, shape.rows, shape.cols, asym_g128));
                                benchmark::DoNotOptimize(out.packed.weight_packed.data());
                              }),
                  Reference::kMemcpyBf16});
  rows.push_back({"  same, per-channel", "bf16", bf16_bytes,
                  BestSeconds(flags.reps,
                              [&] {
                                RtnPackedInt4 out = PackedOrDie(QuantizeRtnPackInt4FromBf16(
                                    w_bf16, shape.rows, shape.cols, per_channel));
                                benchmark::DoNotOptimize(out.packed.weight_packed.data());
                              }),
                  Reference::kMemcpyBf16});

  PrintTable(shape, rows);
}

void Usage() {
  std::printf(
      "usage: catq_bench_quant_pack [--quick] [--reps=N]\n"
      "  --quick    one 1024 x 1024 matrix instead of 4096 x 4096 and 11008 x 4096\n"
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
  std::vector<catq::Shape> shapes;
  if (flags.quick) {
    shapes.push_back({1024, 1024, "quick"});
  } else {
    shapes.push_back({4096, 4096, "Llama-7B q/k/v/o_proj"});
    shapes.push_back({11008, 4096, "Llama-7B gate/up_proj"});
  }
  std::printf(
      "catq_bench_quant_pack: single thread, best of %d runs after one warm-up (reference: "
      "at most 3), build %s, RTN kernels %s\n"
      "GB/s counts input bytes only; ratios are against memcpy of the same bytes in this run\n",
      flags.reps, CATQ_BENCH_BUILD_TYPE, catq::quant_internal::FastestRtnKernels().name);
  for (const catq::Shape& shape : shapes) catq::RunShape(shape, flags);
  return 0;
}
