// Load generator (issue 7, "Load"): N concurrent clients, each on its own
// gRPC channel over loopback, against a catq server with in-process workers
// for a bounded time. Each client loops: upload a small synthetic model
// (a fresh upload id each time, so the bytes really cross the wire), submit
// an rtn job, watch it to the end, fetch its result, and every fourth round
// submit a block-CAT job and cancel it at once; ListJobs and GetJob in
// between. It prints p50/p99/max latency per RPC, the calls per second, every
// unexpected error (any failure other than a cancel that lost the race to
// the job's end), and the process's resident memory at each quarter of the
// run (the server runs in this process, so growth there is the server's or
// the clients').
//
//   catq_bench_load [--clients 64] [--seconds 30] [--workers 0 (cores)]
//
// Exit status 1 when any unexpected error happened.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/quantizer_client.h"
#include "core/io/env.h"
#include "core/model/synth.h"
#include "proto/recipe_conversion.h"
#include "server/catq_server.h"

#ifndef CATQ_BENCH_BUILD_TYPE
#define CATQ_BENCH_BUILD_TYPE "unknown"
#endif

namespace catq {
namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  int clients = 64;
  double seconds = 30;
  int workers = 0;
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    if (name == "--clients") {
      flags.clients = std::max(1, std::atoi(argv[i + 1]));
    } else if (name == "--seconds") {
      flags.seconds = std::max(1.0, std::atof(argv[i + 1]));
    } else if (name == "--workers") {
      flags.workers = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", name.c_str());
      std::exit(2);
    }
  }
  return flags;
}

double ResidentMiB() {
  std::FILE* file = std::fopen("/proc/self/statm", "r");
  if (file == nullptr) return 0;
  long pages = 0, resident = 0;
  const int read = std::fscanf(file, "%ld %ld", &pages, &resident);
  std::fclose(file);
  return read == 2 ? resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20) : 0;
}

// Latencies per RPC and the unexpected errors, shared by the clients.
class Recorder {
 public:
  void Record(const std::string& rpc, Clock::duration latency, const absl::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    latencies_[rpc].push_back(std::chrono::duration<double, std::milli>(latency).count());
    if (!status.ok()) errors_.push_back(absl::StrCat(rpc, ": ", status.ToString()));
  }

  void Print(double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    std::printf("%-14s %8s %8s %10s %10s %10s\n", "rpc", "calls", "per s", "p50 ms", "p99 ms",
                "max ms");
    for (auto& [rpc, values] : latencies_) {
      std::sort(values.begin(), values.end());
      auto at = [&](double q) {
        return values[std::min(values.size() - 1, static_cast<size_t>(q * values.size()))];
      };
      std::printf("%-14s %8zu %8.1f %10.2f %10.2f %10.2f\n", rpc.c_str(), values.size(),
                  values.size() / seconds, at(0.5), at(0.99), values.back());
    }
    std::printf("unexpected errors: %zu\n", errors_.size());
    for (size_t i = 0; i < errors_.size() && i < 20; ++i) std::printf("  %s\n", errors_[i].c_str());
  }

  size_t errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_.size();
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<double>> latencies_;
  std::vector<std::string> errors_;
};

// Times `call` (returning a Status or StatusOr) under `rpc` and returns its
// result.
template <typename Call>
auto Timed(Recorder& recorder, const std::string& rpc, Call call) {
  const Clock::time_point start = Clock::now();
  auto result = call();
  absl::Status status;
  if constexpr (std::is_same_v<decltype(result), absl::Status>) {
    status = result;
  } else {
    status = result.status();
  }
  recorder.Record(rpc, Clock::now() - start, status);
  return result;
}

// Timed, for a call whose result only the recorder needs.
template <typename Call>
void TimedOnly(Recorder& recorder, const std::string& rpc, Call call) {
  static_cast<void>(Timed(recorder, rpc, call));
}

void RunClient(int id, const std::string& address, const std::string& model_dir,
               const std::string& scratch, Clock::time_point deadline, Recorder& recorder) {
  client::ClientOptions options;
  options.server = address;
  auto connected = client::QuantizerClient::Connect(options);
  if (!connected.ok()) {
    recorder.Record("Connect", {}, connected.status());
    return;
  }
  client::QuantizerClient& client = **connected;
  for (int round = 0; Clock::now() < deadline; ++round) {
    const std::string tag = absl::StrCat("c", id, "-r", round);
    auto model = Timed(recorder, "UploadModel", [&] {
      return client.UploadModel(model_dir, "load", v1::MODEL_FORMAT_HF, tag);
    });
    if (!model.ok()) continue;
    v1::SubmitJobRequest request;
    request.set_model_id(model->model_id());
    auto submitted = Timed(recorder, "SubmitJob", [&] { return client.Submit(request); });
    if (!submitted.ok()) continue;
    const std::string job_id = submitted->job().job_id();
    auto job = Timed(recorder, "WatchJob", [&] { return client.Watch(job_id, nullptr); });
    TimedOnly(recorder, "GetJob", [&] { return client.GetJob(job_id); });
    if (job.ok() && job->state() == v1::JOB_STATE_SUCCEEDED) {
      const std::string out = absl::StrCat(scratch, "/", tag);
      TimedOnly(recorder, "FetchResult", [&] { return client.Fetch(job_id, out).status(); });
      std::error_code ignored;
      std::filesystem::remove_all(out, ignored);
    } else if (job.ok()) {
      recorder.Record("WatchJob", {},
                      absl::InternalError(absl::StrCat("job ", job_id, " ended ", job->state(),
                                                       ": ", job->error())));
    }
    TimedOnly(recorder, "ListJobs", [&] { return client.ListJobs(20); });
    if (round % 4 == 3) {
      // A job cancelled at once; one that already ended answers
      // FailedPrecondition, which is the race this exercises.
      v1::SubmitJobRequest cat = request;
      cat.mutable_recipe()->set_method("hadamard");
      auto doomed = Timed(recorder, "SubmitJob", [&] { return client.Submit(cat); });
      if (doomed.ok()) {
        const Clock::time_point start = Clock::now();
        auto cancelled = client.CancelJob(doomed->job().job_id());
        const bool ended = absl::IsFailedPrecondition(cancelled.status());
        recorder.Record("CancelJob", Clock::now() - start,
                        ended ? absl::OkStatus() : cancelled.status());
      }
    }
  }
}

int Main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  const std::string root =
      absl::StrCat(std::filesystem::temp_directory_path().string(), "/catq_load_", getpid());
  Env* env = Env::Default();
  SynthOptions synth;
  synth.preset = "tiny";
  if (absl::Status written = WriteSyntheticModel(env, synth, root + "/model"); !written.ok()) {
    std::fprintf(stderr, "synth: %s\n", written.ToString().c_str());
    return 2;
  }
  server::CatqServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = root + "/data";
  options.workers = flags.workers > 0 ? flags.workers : -1;
  options.service_limits.max_unfinished_jobs_per_tenant = 4 * flags.clients;
  auto server = server::CatqServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "server: %s\n", server.status().ToString().c_str());
    return 2;
  }
  const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());
  std::printf("catq load generator (%s build): %d clients for %.0f s against %s\n",
              CATQ_BENCH_BUILD_TYPE, flags.clients, flags.seconds, address.c_str());
  Recorder recorder;
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      start + std::chrono::milliseconds(static_cast<int64_t>(flags.seconds * 1000));
  std::vector<std::thread> clients;
  for (int i = 0; i < flags.clients; ++i) {
    clients.emplace_back(RunClient, i, address, root + "/model", root + "/fetched", deadline,
                         std::ref(recorder));
  }
  std::printf("resident memory (MiB): start %.1f", ResidentMiB());
  for (int quarter = 1; quarter <= 4; ++quarter) {
    std::this_thread::sleep_until(start + (deadline - start) * quarter / 4);
    std::printf(", %d%% %.1f", 25 * quarter, ResidentMiB());
    std::fflush(stdout);
  }
  for (std::thread& client : clients) client.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(", after the last call %.1f\n", ResidentMiB());
  recorder.Print(seconds);
  (*server)->Shutdown();
  std::error_code ignored;
  std::filesystem::remove_all(root, ignored);
  return recorder.errors() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace catq

int main(int argc, char** argv) { return catq::Main(argc, argv); }
