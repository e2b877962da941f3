// Transfer throughput (issue: gRPC upload and fetch on loopback): in one run,
// a plain TCP copy over 127.0.0.1 (the reference), then UploadModel and
// FetchResult through the real client into a real server on loopback (real
// gRPC, real SQLite store and blob store in a temporary directory), each as
// MB/s and as a ratio to the reference. The issue asks for upload and fetch
// at least 0.5x the plain memory-to-memory TCP copy.
//
//   catq_bench_transfer [--preset 1b] [--layers 1] [--dtype bf16] [--reps 3]
//                       [--dir DIR (default: the system temporary directory)]
//
// The uploaded model is a synthetic safetensors model (core/model/synth.h);
// the default, the 1b shape cut to one layer in bf16, is about 647 MB, most
// of it the 128256 x 2048 embedding. The fetched output is that of an rtn job
// on the uploaded model (the embedding stays bf16, so the output is about as
// large as the upload); the job's own time is not measured.
//
// What each figure includes is printed with it. The TCP copies run `--reps`
// times and keep the best (the ratio against them is the conservative one);
// upload and fetch run once, since the blob store would skip a second upload
// of the same bytes. Every file (model, copies, server data dir, fetched
// output) is under a fresh directory in --dir, removed at the end; a --dir on
// tmpfs (/dev/shm) takes the disk out of every figure alike.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/file_manifest.h"
#include "client/quantizer_client.h"
#include "core/io/env.h"
#include "core/io/sha256.h"
#include "core/model/synth.h"
#include "core/util/status_macros.h"
#include "server/catq_server.h"

#ifndef CATQ_BENCH_BUILD_TYPE
#define CATQ_BENCH_BUILD_TYPE "unknown"
#endif

namespace catq {
namespace {

using Clock = std::chrono::steady_clock;

// The chunk of every plain send/recv/read/write; gRPC's chunks are 4 MiB.
constexpr size_t kCopyChunkBytes = size_t{1} << 20;

struct Flags {
  std::string preset = "1b";
  int64_t layers = 1;
  std::string dtype = "bf16";
  int reps = 3;
  std::string dir = std::filesystem::temp_directory_path().string();
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    const std::string value = argv[i + 1];
    if (name == "--preset") {
      flags.preset = value;
    } else if (name == "--layers") {
      flags.layers = std::max(1, std::atoi(value.c_str()));
    } else if (name == "--dtype") {
      flags.dtype = value;
    } else if (name == "--dir") {
      flags.dir = value;
    } else if (name == "--reps") {
      flags.reps = std::max(1, std::atoi(value.c_str()));
    } else {
      std::fprintf(stderr, "unknown flag %s\n", name.c_str());
      std::exit(2);
    }
  }
  return flags;
}

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

double MegabytesPerSecond(uint64_t bytes, double seconds) { return bytes / seconds / 1e6; }

absl::Status ErrnoStatus(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// A connected pair of TCP sockets over 127.0.0.1, default buffer sizes.
struct SocketPair {
  int sender = -1;
  int receiver = -1;
  ~SocketPair() {
    if (sender >= 0) ::close(sender);
    if (receiver >= 0) ::close(receiver);
  }
};

absl::Status ConnectLoopback(SocketPair& pair) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) return ErrnoStatus("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  absl::Status status;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    status = ErrnoStatus("bind/listen 127.0.0.1");
  }
  if (status.ok()) {
    pair.sender = ::socket(AF_INET, SOCK_STREAM, 0);
    if (pair.sender < 0 ||
        ::connect(pair.sender, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      status = ErrnoStatus("connect 127.0.0.1");
    }
  }
  if (status.ok()) {
    pair.receiver = ::accept(listener, nullptr, nullptr);
    if (pair.receiver < 0) status = ErrnoStatus("accept");
  }
  ::close(listener);
  return status;
}

// Where the sending side of a TCP copy takes its bytes (`length` of them
// into `buffer`, the `offset`-th byte first) and what the receiving side does
// with what arrived; both OK by default (a buffer reused in memory).
struct CopyEnds {
  std::function<absl::Status(uint64_t offset, char* buffer, size_t length)> source;
  std::function<absl::Status(const char* data, size_t length)> sink;
  std::function<absl::Status()> finish;  // after the last byte arrived
};

// Copies `bytes` over a fresh loopback connection, in kCopyChunkBytes
// send/recv calls; returns the seconds from the first send to the receiver's
// `finish`.
absl::StatusOr<double> TimeTcpCopy(uint64_t bytes, const CopyEnds& ends) {
  SocketPair pair;
  CATQ_RETURN_IF_ERROR(ConnectLoopback(pair));
  std::vector<char> send_buffer(kCopyChunkBytes, 'x');
  std::vector<char> receive_buffer(kCopyChunkBytes);
  absl::Status sent;
  const Clock::time_point start = Clock::now();
  std::thread sender([&] {
    for (uint64_t offset = 0; offset < bytes && sent.ok();) {
      const size_t length = std::min<uint64_t>(kCopyChunkBytes, bytes - offset);
      if (ends.source) sent = ends.source(offset, send_buffer.data(), length);
      for (size_t done = 0; done < length && sent.ok();) {
        const ssize_t n = ::send(pair.sender, send_buffer.data() + done, length - done, 0);
        if (n < 0) {
          sent = ErrnoStatus("send");
        } else {
          done += static_cast<size_t>(n);
        }
      }
      offset += length;
    }
    ::shutdown(pair.sender, SHUT_WR);
  });
  absl::Status received;
  uint64_t got = 0;
  while (received.ok() && got < bytes) {
    const ssize_t n = ::recv(pair.receiver, receive_buffer.data(), receive_buffer.size(), 0);
    if (n <= 0) {
      received = n < 0 ? ErrnoStatus("recv") : absl::DataLossError("connection closed early");
      break;
    }
    if (ends.sink) received = ends.sink(receive_buffer.data(), static_cast<size_t>(n));
    got += static_cast<uint64_t>(n);
  }
  if (received.ok() && ends.finish) received = ends.finish();
  const double seconds = Seconds(Clock::now() - start);
  sender.join();
  CATQ_RETURN_IF_ERROR(sent);
  CATQ_RETURN_IF_ERROR(received);
  return seconds;
}

// The best of `reps` runs of `run`.
absl::StatusOr<double> Best(int reps, const std::function<absl::StatusOr<double>()>& run) {
  double best = 0;
  for (int i = 0; i < reps; ++i) {
    CATQ_ASSIGN_OR_RETURN(double seconds, run());
    best = i == 0 ? seconds : std::min(best, seconds);
  }
  return best;
}

// A TCP copy from the file `from` (pread) into a new file `to` (write, one
// fsync at the end): the disk work an upload or fetch also does, without
// gRPC and without hashing.
absl::StatusOr<double> TimeTcpFileCopy(const std::string& from, const std::string& to,
                                       uint64_t bytes) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return ErrnoStatus(from);
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    ::close(in);
    return ErrnoStatus(to);
  }
  CopyEnds ends;
  ends.source = [in](uint64_t offset, char* buffer, size_t length) -> absl::Status {
    for (size_t done = 0; done < length;) {
      const ssize_t n = ::pread(in, buffer + done, length - done, offset + done);
      if (n <= 0) return ErrnoStatus("pread");
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  };
  ends.sink = [out](const char* data, size_t length) -> absl::Status {
    for (size_t done = 0; done < length;) {
      const ssize_t n = ::write(out, data + done, length - done);
      if (n < 0) return ErrnoStatus("write");
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  };
  ends.finish = [out]() -> absl::Status {
    return ::fsync(out) == 0 ? absl::OkStatus() : ErrnoStatus("fsync");
  };
  absl::StatusOr<double> seconds = TimeTcpCopy(bytes, ends);
  ::close(in);
  ::close(out);
  std::filesystem::remove(to);
  return seconds;
}

absl::StatusOr<DType> ParseDType(const std::string& name) {
  if (name == "f32") return DType::kF32;
  if (name == "f16") return DType::kF16;
  if (name == "bf16") return DType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat("--dtype: '", name, "' (f32, f16 or bf16)"));
}

void PrintRow(const char* stage, uint64_t bytes, double seconds, double reference_mbps,
              double file_reference_mbps, const char* includes) {
  const double mbps = MegabytesPerSecond(bytes, seconds);
  std::printf("%-22s %9.1f %9.3f %9.1f %8.2fx %8.2fx  %s\n", stage, bytes / 1e6, seconds, mbps,
              mbps / reference_mbps, mbps / file_reference_mbps, includes);
}

// Removes the bench's directory on every way out of Run.
class ScratchDir {
 public:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  const std::string path_;
};

absl::Status Run(const Flags& flags) {
  const ScratchDir scratch(absl::StrCat(flags.dir, "/catq_transfer_", getpid()));
  const std::string& root = scratch.path();
  Env* env = Env::Default();
  SynthOptions synth;
  synth.preset = flags.preset;
  synth.num_layers = flags.layers;
  CATQ_ASSIGN_OR_RETURN(synth.dtype, ParseDType(flags.dtype));
  const std::string model_dir = root + "/model";
  CATQ_RETURN_IF_ERROR(WriteSyntheticModel(env, synth, model_dir));

  // The manifest (every file's sha256) is what UploadModel builds first; it
  // is built here on its own so that its time can be told apart.
  Clock::time_point start = Clock::now();
  CATQ_ASSIGN_OR_RETURN(client::Manifest manifest, client::BuildDirectoryManifest(env, model_dir));
  const double manifest_seconds = Seconds(Clock::now() - start);
  const uint64_t upload_bytes = client::TotalBytes(manifest);
  std::string largest_file;
  uint64_t largest_size = 0;
  for (const client::ManifestFile& file : manifest) {
    if (file.entry.size() > largest_size) {
      largest_size = file.entry.size();
      largest_file = file.local_path;
    }
  }

  std::printf(
      "catq_bench_transfer (%s build): %s x %lld layers %s, %.1f MB in %zu files, files in %s\n",
      CATQ_BENCH_BUILD_TYPE, flags.preset.c_str(), static_cast<long long>(flags.layers),
      flags.dtype.c_str(), upload_bytes / 1e6, manifest.size(), flags.dir.c_str());

  CATQ_ASSIGN_OR_RETURN(double tcp_memory_seconds,
                        Best(flags.reps, [&] { return TimeTcpCopy(upload_bytes, CopyEnds{}); }));
  CATQ_ASSIGN_OR_RETURN(double tcp_file_seconds, Best(flags.reps, [&] {
                          return TimeTcpFileCopy(largest_file, root + "/tcp_copy", largest_size);
                        }));
  const double tcp_memory_mbps = MegabytesPerSecond(upload_bytes, tcp_memory_seconds);
  const double tcp_file_mbps = MegabytesPerSecond(largest_size, tcp_file_seconds);

  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, env->MapFile(largest_file));
  start = Clock::now();
  const std::string digest = Sha256Hex(mapped->bytes());
  const double sha256_seconds = Seconds(Clock::now() - start);
  mapped.reset();

  server::CatqServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  server_options.data_dir = root + "/data";
  server_options.workers = 1;
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<server::CatqServer> server,
                        server::CatqServer::Start(server_options));
  client::ClientOptions client_options;
  client_options.server = absl::StrCat("127.0.0.1:", server->port());
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<client::QuantizerClient> client,
                        client::QuantizerClient::Connect(client_options));
  // A first call, so the connection exists before the clock starts.
  CATQ_RETURN_IF_ERROR(client->ListModels().status());

  start = Clock::now();
  CATQ_ASSIGN_OR_RETURN(v1::Model model,
                        client->UploadModelManifest(manifest, "transfer", v1::MODEL_FORMAT_HF));
  const double upload_seconds = Seconds(Clock::now() - start);

  v1::SubmitJobRequest request;
  request.set_model_id(model.model_id());
  request.mutable_recipe()->set_method("rtn");
  CATQ_ASSIGN_OR_RETURN(v1::SubmitJobResponse submitted, client->Submit(request));
  CATQ_ASSIGN_OR_RETURN(v1::Job job, client->Watch(submitted.job().job_id(), nullptr));
  if (job.state() != v1::JOB_STATE_SUCCEEDED) {
    return absl::InternalError(absl::StrCat("rtn job ", job.job_id(), " ended ",
                                            v1::JobState_Name(job.state()), ": ", job.error()));
  }
  start = Clock::now();
  CATQ_ASSIGN_OR_RETURN(client::FetchStats fetched, client->Fetch(job.job_id(), root + "/fetched"));
  const double fetch_seconds = Seconds(Clock::now() - start);
  server->Shutdown();

  std::printf(
      "reference: plain TCP over 127.0.0.1, 1 MiB send/recv, default socket buffers, best of %d\n"
      "ratios: MB/s over the TCP memory copy (the issue's reference) and over the TCP file "
      "copy\n\n",
      flags.reps);
  std::printf("%-22s %9s %9s %9s %9s %9s  %s\n", "stage", "MB", "s", "MB/s", "/tcp mem",
              "/tcp file", "includes");
  PrintRow("tcp copy memory", upload_bytes, tcp_memory_seconds, tcp_memory_mbps, tcp_file_mbps,
           "buffer -> socket -> buffer");
  PrintRow("tcp copy file", largest_size, tcp_file_seconds, tcp_memory_mbps, tcp_file_mbps,
           "pread -> socket -> write, one fsync");
  PrintRow("sha256 (one pass)", largest_size, sha256_seconds, tcp_memory_mbps, tcp_file_mbps,
           "OpenSSL SHA-256 of the mmapped file, one thread");
  PrintRow("client manifest", upload_bytes, manifest_seconds, tcp_memory_mbps, tcp_file_mbps,
           "sha256 of every file (the first step of UploadModel)");
  PrintRow("UploadModel", upload_bytes, upload_seconds, tcp_memory_mbps, tcp_file_mbps,
           "GetUpload, stream, server write + fsync + sha256 + rename, model check");
  PrintRow("UploadModel+manifest", upload_bytes, upload_seconds + manifest_seconds, tcp_memory_mbps,
           tcp_file_mbps, "what `catq upload` does");
  PrintRow("FetchResult", fetched.bytes_received, fetch_seconds, tcp_memory_mbps, tcp_file_mbps,
           "GetJob, stream, chunk checks, client write + fsync + sha256 + rename");
  std::printf("\n(sha256 of %s: %s; fetched %d result files)\n",
              std::filesystem::path(largest_file).filename().c_str(), digest.c_str(),
              fetched.job.result_files_size());
  return absl::OkStatus();
}

}  // namespace
}  // namespace catq

int main(int argc, char** argv) {
  const absl::Status status = catq::Run(catq::ParseFlags(argc, argv));
  if (!status.ok()) {
    std::fprintf(stderr, "catq_bench_transfer: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
