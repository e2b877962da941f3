// catq_bench_e2e: a synthetic Llama model quantized end to end through a real
// `catq serve` (embedded workers, loopback gRPC): peak resident memory of the
// server process against one site's size, and wall time against two floors
// measured in the same run: reading the model files once, and the W T^-1
// GEMM work at the OpenBLAS DGEMM throughput of the same worker threads.
//
//   catq_bench_e2e --preset 7b --dtype bf16 --work-dir /data/e2e
//   catq_bench_e2e --preset 1b --layers 2 --max-peak-sites 12   (CI smoke)
//
// The recipe is block CAT with k = 128 and RTN W4 in groups of 128 (the
// issue's), calibrated from a precomputed statistics file written for the
// model (core/cat/synthetic_statistics.h), as a client of a model too large to
// calibrate here would upload it. See README.md for the figures.
#include <cblas.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/cat/synthetic_statistics.h"
#include "core/io/env.h"
#include "core/math/blas.h"
#include "core/model/llama_weights.h"
#include "core/model/synth.h"
#include "core/tensor/dtype.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"
#include "tests/util/child_process.h"

namespace catq {
namespace {

using Clock = std::chrono::steady_clock;
using testing::ChildProcess;

constexpr int64_t kBlockSize = 128;
constexpr int64_t kGroupSize = 128;
constexpr double kMiB = 1024.0 * 1024.0;

struct Flags {
  std::string preset = "7b";
  int64_t layers = 0;
  std::string dtype = "BF16";
  std::string work_parent = std::filesystem::temp_directory_path().string();
  int workers = 0;
  std::string catq = CATQ_BINARY;
  double max_peak_sites = 0.0;
  bool keep = false;
};

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A "/proc/PID/status" field in KiB (VmHWM, RssAnon, ...), 0 if absent.
int64_t StatusKiB(pid_t pid, absl::string_view field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, field) || line.size() <= field.size() ||
        line[field.size()] != ':') {
      continue;
    }
    std::vector<std::string> parts =
        absl::StrSplit(line.substr(field.size() + 1), ' ', absl::SkipWhitespace());
    int64_t kib = 0;
    if (!parts.empty() && absl::SimpleAtoi(parts[0], &kib)) return kib;
  }
  return 0;
}

// Peaks of the anonymous and file-backed parts of a process's resident
// memory, sampled every 20 ms (VmHWM gives the peak of their sum exactly).
class ResidentSampler {
 public:
  explicit ResidentSampler(pid_t pid) : thread_([this, pid] { Loop(pid); }) {}
  ~ResidentSampler() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t anon_kib() const { return anon_kib_; }
  int64_t file_kib() const { return file_kib_; }

 private:
  void Loop(pid_t pid) {
    while (!stop_) {
      anon_kib_ = std::max(anon_kib_.load(), StatusKiB(pid, "RssAnon"));
      file_kib_ = std::max(file_kib_.load(), StatusKiB(pid, "RssFile"));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> anon_kib_{0};
  std::atomic<int64_t> file_kib_{0};
  std::thread thread_;
};

// Floor 1: every model file read once with read(2) into a reused buffer.
absl::StatusOr<double> TimeReadOnce(Env* env, const std::string& dir, uint64_t* bytes) {
  CATQ_ASSIGN_OR_RETURN(std::vector<std::string> names, env->ListDir(dir));
  std::vector<char> buffer(size_t{8} << 20);
  *bytes = 0;
  const Clock::time_point start = Clock::now();
  for (const std::string& name : names) {
    if (!absl::EndsWith(name, ".safetensors")) continue;
    const std::string path = absl::StrCat(dir, "/", name);
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", path));
    size_t n;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), f)) > 0) *bytes += n;
    std::fclose(f);
  }
  return SecondsSince(start);
}

// The flops of W T^-1 for every linear: with k x k diagonal blocks, each
// output row costs 2 k multiply-adds per input channel.
double TransformFlops(const LlamaConfig& config) {
  double flops = 0.0;
  for (LinearKind kind : kAllLinearKinds) {
    const Site site = SiteOfLinear(kind);
    const double in = static_cast<double>(SiteDim(config, site));
    const double out = static_cast<double>(LinearShape(config, kind).rows);
    flops +=
        2.0 * out * in * static_cast<double>(std::min<int64_t>(kBlockSize, SiteDim(config, site)));
  }
  return flops * static_cast<double>(config.num_hidden_layers);
}

// Aggregate DGEMM GFLOP/s of `threads` threads, each multiplying 256-row
// panels by 128 x 128 blocks (the shape of W T^-1) on one OpenBLAS thread.
double MeasureDgemmGflops(int threads) {
  ScopedBlasThreads one(1);
  constexpr int kRows = 256;
  constexpr int kBlocks = 32;  // a 4096-wide weight
  constexpr int kReps = 20;
  std::vector<std::thread> pool;
  std::atomic<double> seconds_max{0.0};
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<double> w(static_cast<size_t>(kRows) * kBlocks * kBlockSize, 0.5);
      std::vector<double> b(static_cast<size_t>(kBlockSize) * kBlockSize, 0.25);
      std::vector<double> c(w.size(), 0.0);
      const int ld = kBlocks * kBlockSize;
      auto run = [&] {
        for (int blk = 0; blk < kBlocks; ++blk) {
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kRows, kBlockSize, kBlockSize, 1.0,
                      w.data() + blk * kBlockSize, ld, b.data(), kBlockSize, 0.0,
                      c.data() + blk * kBlockSize, ld);
        }
      };
      run();  // warm-up
      const Clock::time_point start = Clock::now();
      for (int r = 0; r < kReps; ++r) run();
      const double s = SecondsSince(start);
      double prev = seconds_max.load();
      while (s > prev && !seconds_max.compare_exchange_weak(prev, s)) {
      }
    });
  }
  for (std::thread& t : pool) t.join();
  const double flops = 2.0 * kRows * kBlockSize * kBlockSize * kBlocks * kReps * threads;
  return flops / seconds_max.load() / 1e9;
}

// The largest site's weights as float32: what one site task holds at least.
double LargestSiteBytes(const LlamaConfig& config) {
  double largest = 0.0;
  for (Site site : kAllSites) {
    double bytes = 0.0;
    for (LinearKind kind : kAllLinearKinds) {
      if (SiteOfLinear(kind) != site) continue;
      bytes += 4.0 * static_cast<double>(SiteDim(config, site)) *
               static_cast<double>(LinearShape(config, kind).rows);
    }
    largest = std::max(largest, bytes);
  }
  return largest;
}

absl::Status RunIn(const Flags& flags, const std::string& work_dir) {
  Env* env = Env::Default();
  const int workers =
      flags.workers > 0 ? flags.workers : static_cast<int>(std::thread::hardware_concurrency());
  SynthOptions synth;
  synth.preset = flags.preset;
  synth.num_layers = flags.layers;
  CATQ_ASSIGN_OR_RETURN(synth.dtype, ParseDType(flags.dtype));
  CATQ_ASSIGN_OR_RETURN(LlamaConfig config, SynthConfig(synth));
  const std::string model_dir = absl::StrCat(work_dir, "/model");
  const std::string stats_path = absl::StrCat(work_dir, "/statistics.safetensors");
  const std::string data_dir = absl::StrCat(work_dir, "/data");
  const std::string out_dir = absl::StrCat(work_dir, "/out");

  std::printf("catq_bench_e2e: preset %s, %lld layers, %s, %d workers, build %s\n",
              flags.preset.c_str(), static_cast<long long>(config.num_hidden_layers),
              flags.dtype.c_str(), workers, CATQ_BENCH_BUILD_TYPE);
  std::printf("recipe: cat k=%lld, RTN W4 group %lld, precomputed block statistics\n\n",
              static_cast<long long>(kBlockSize), static_cast<long long>(kGroupSize));
  Clock::time_point start = Clock::now();
  CATQ_RETURN_IF_ERROR(WriteSyntheticModel(env, synth, model_dir));
  SyntheticStatisticsOptions stats;
  stats.block_size = kBlockSize;
  CATQ_RETURN_IF_ERROR(WriteSyntheticSiteStatistics(env, config, stats, stats_path));
  std::printf("inputs written in %.1f s (not part of any figure)\n", SecondsSince(start));

  uint64_t model_bytes = 0;
  CATQ_ASSIGN_OR_RETURN(const double read_s, TimeReadOnce(env, model_dir, &model_bytes));
  const double gflops = MeasureDgemmGflops(workers);
  const double flops = TransformFlops(config);
  const double gemm_s = flops / (gflops * 1e9);
  const double floor_s = std::max(read_s, gemm_s);

  CATQ_ASSIGN_OR_RETURN(
      std::unique_ptr<ChildProcess> server,
      ChildProcess::Start({flags.catq, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                           "--workers", absl::StrCat(workers)}));
  CATQ_ASSIGN_OR_RETURN(std::string line,
                        server->WaitForLine("catq serve: listening on", absl::Seconds(60)));
  const std::string address(
      absl::StripSuffix(std::vector<std::string>(absl::StrSplit(line, ' '))[4], ","));
  const int64_t idle_kib = StatusKiB(server->pid(), "VmRSS");
  ResidentSampler sampler(server->pid());

  start = Clock::now();
  CATQ_ASSIGN_OR_RETURN(
      std::unique_ptr<ChildProcess> client,
      ChildProcess::Start({flags.catq, "quantize", "--server", address, "--model", model_dir,
                           "--calib-stats", stats_path, "--recipe", "cat", "--block-size",
                           absl::StrCat(kBlockSize), "--w-group", absl::StrCat(kGroupSize), "--out",
                           out_dir, "--quiet"}));
  const int client_status = client->Wait();
  const double wall_s = SecondsSince(start);
  rusage children{};
  getrusage(RUSAGE_CHILDREN, &children);  // only the client has been reaped
  const int64_t server_peak_kib = StatusKiB(server->pid(), "VmHWM");
  sampler.Stop();
  server->Kill();
  if (!WIFEXITED(client_status) || WEXITSTATUS(client_status) != 0) {
    return absl::InternalError(absl::StrCat("catq quantize failed:\n", client->output()));
  }
  CATQ_ASSIGN_OR_RETURN(std::string report_text,
                        env->ReadFile(absl::StrCat(out_dir, "/catq_report.json")));
  const nlohmann::json report = nlohmann::json::parse(report_text, nullptr, false);
  const double job_s = report.is_discarded() ? 0.0 : report["timings_seconds"].value("total", 0.0);

  const double site_bytes = LargestSiteBytes(config);
  const double peak_bytes = static_cast<double>(server_peak_kib) * 1024.0;
  std::printf("model files               %10.1f MiB\n", model_bytes / kMiB);
  std::printf("largest site (f32)        %10.1f MiB\n\n", site_bytes / kMiB);
  std::printf("floor: read model once    %10.2f s  (%.2f GB/s, page cache as the run left it)\n",
              read_s, model_bytes / read_s / 1e9);
  std::printf(
      "floor: W T^-1 GEMM work   %10.2f s  (%.1f GFLOP at %.1f GFLOP/s, DGEMM on %d threads)\n",
      gemm_s, flops / 1e9, gflops, workers);
  std::printf("catq quantize, end to end %10.2f s  %.2fx the larger floor (upload, job, fetch)\n",
              wall_s, wall_s / floor_s);
  std::printf(
      "  of which the job        %10.2f s  %.2fx the larger floor (read, solve, quantize, "
      "write)\n\n",
      job_s, job_s / floor_s);
  std::printf("server peak resident      %10.1f MiB  (VmHWM; %.2f GiB; %.1fx the largest site)\n",
              peak_bytes / kMiB, peak_bytes / (kMiB * 1024.0), peak_bytes / site_bytes);
  std::printf("  anonymous peak          %10.1f MiB  (sampled every 20 ms)\n",
              sampler.anon_kib() / 1024.0);
  std::printf("  file-backed peak        %10.1f MiB  (mapped model, blobs, results)\n",
              sampler.file_kib() / 1024.0);
  std::printf("  idle after start        %10.1f MiB\n", idle_kib / 1024.0);
  std::printf("client peak resident      %10.1f MiB\n", children.ru_maxrss / 1024.0);

  if (flags.max_peak_sites > 0.0 && peak_bytes > flags.max_peak_sites * site_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "server peak resident memory %.1f MiB exceeds %.1f x the largest site (%.1f MiB)",
        peak_bytes / kMiB, flags.max_peak_sites, flags.max_peak_sites * site_bytes / kMiB));
  }
  return absl::OkStatus();
}

// A new directory under the parent for the run, removed afterwards (also
// after a failure: a 7B run leaves 30 GB) unless --keep.
absl::Status Run(const Flags& flags) {
  std::string work_dir = absl::StrCat(flags.work_parent, "/catq-e2e-XXXXXX");
  if (::mkdtemp(work_dir.data()) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create a directory under ", flags.work_parent));
  }
  const absl::Status status = RunIn(flags, work_dir);
  if (flags.keep) {
    std::printf("kept %s\n", work_dir.c_str());
  } else {
    std::error_code ignored;
    std::filesystem::remove_all(work_dir, ignored);
  }
  return status;
}

}  // namespace
}  // namespace catq

int main(int argc, char** argv) {
  catq::Flags flags;
  CLI::App app("catq_bench_e2e: a synthetic model quantized through catq serve");
  app.add_option("--preset", flags.preset, "tiny, small, 1b or 7b")->capture_default_str();
  app.add_option("--layers", flags.layers, "Decoder layers (0: the preset's)");
  app.add_option("--dtype", flags.dtype, "F32, F16 or BF16")->capture_default_str();
  app.add_option("--work-dir", flags.work_parent,
                 "Where to create the run's directory (model, server data, output)")
      ->capture_default_str();
  app.add_option("--workers", flags.workers, "Server worker threads (0: one per core)");
  app.add_option("--catq", flags.catq, "The catq binary")->capture_default_str();
  app.add_option("--max-peak-sites", flags.max_peak_sites,
                 "Fail when the server's peak resident memory exceeds this many times the "
                 "largest site's float32 weights (0: report only)");
  app.add_flag("--keep", flags.keep, "Keep the work directory");
  CLI11_PARSE(app, argc, argv);
  const absl::Status status = catq::Run(flags);
  if (!status.ok()) {
    std::cerr << "catq_bench_e2e: " << status << "\n";
    return 1;
  }
  return 0;
}
