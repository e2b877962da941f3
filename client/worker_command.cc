// `catq worker --server HOST:PORT --cache-dir DIR [--token T] [--tls-ca F]
// [--id NAME] [--max-tasks N] [--poll-seconds S] [--metrics-listen H:P]`:
// a remote worker
// (worker/remote_worker.h) that leases layer tasks from the server until
// SIGINT or SIGTERM (it finishes the task in hand first) or --max-tasks.
// Prints one line per task: "catq worker: leased job J layer L ...", then
// "catq worker: done job J layer L in ...". With --metrics-listen it serves
// its metrics (worker/worker_metrics.h) at /metrics and says where first.
#include <signal.h>

#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "client/command.h"
#include "client/connection_flags.h"
#include "client/termination_signals.h"
#include "core/util/status_macros.h"
#include "server/metrics_endpoint.h"
#include "worker/remote_worker.h"

namespace catq::cli {
namespace {

struct WorkerFlags {
  ConnectionFlags connection;
  worker::RemoteWorkerOptions options;
  double poll_seconds = 10;
  std::string metrics_listen;
};

absl::Status RunWorker(WorkerFlags flags) {
  TerminationSignals signals;
  if (flags.connection.server.empty()) {
    return absl::InvalidArgumentError("no server: pass --server HOST:PORT or set CATQ_SERVER");
  }
  client::ClientOptions client_options;
  client_options.server = flags.connection.server;
  client_options.tls_ca_file = flags.connection.tls_ca;
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                        client::OpenChannel(client_options));
  flags.options.poll = absl::Seconds(flags.poll_seconds);
  flags.options.log = [](const std::string& line) {
    std::cout << "catq worker: " << line << std::endl;
  };
  worker::WorkerMetrics metrics;
  std::unique_ptr<server::MetricsEndpoint> endpoint;
  if (!flags.metrics_listen.empty()) {
    CATQ_ASSIGN_OR_RETURN(endpoint,
                          server::MetricsEndpoint::Start(flags.metrics_listen, "--metrics-listen"));
    endpoint->Register(metrics.registry());
    flags.options.metrics = &metrics;
    const std::string host = flags.metrics_listen.substr(0, flags.metrics_listen.rfind(':'));
    std::cout << "catq worker: metrics on http://" << host << ":" << endpoint->port() << "/metrics"
              << std::endl;
  }
  CATQ_ASSIGN_OR_RETURN(
      std::unique_ptr<worker::RemoteWorker> worker,
      worker::RemoteWorker::Create(std::move(channel), flags.connection.token, flags.options));
  std::cout << "catq worker: serving " << flags.connection.server << ", cache "
            << flags.options.cache_dir << std::endl;

  std::thread waiter([&] {
    const int signal = signals.Wait();
    if (signal == 0) return;  // Run ended by itself
    std::cout << "catq worker: " << (signal == SIGINT ? "SIGINT" : "SIGTERM")
              << ", stopping after the task in hand" << std::endl;
    worker->Stop();
  });
  const absl::Status ran = worker->Run();
  signals.Wake();
  waiter.join();
  return ran;
}

}  // namespace

void AddWorkerCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<WorkerFlags>();
  CLI::App* sub =
      app.add_subcommand("worker", "Run a remote worker that takes layer tasks from a catq server");
  AddConnectionFlags(*sub, flags->connection);
  sub->add_option("--cache-dir", flags->options.cache_dir,
                  "Where model files and calibration read from the server are cached")
      ->required();
  sub->add_option("--id", flags->options.worker_id,
                  "Name in the server's events (default: <hostname>-<pid>)");
  sub->add_option("--max-tasks", flags->options.max_tasks, "Exit after this many tasks (0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--poll-seconds", flags->poll_seconds, "How long one lease request waits")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 60.0));
  sub->add_option("--metrics-listen", flags->metrics_listen,
                  "HOST:PORT for this worker's Prometheus metrics at /metrics (port 0: any free "
                  "port)");
  sub->callback([flags, &run] { run = [flags] { return RunWorker(*flags); }; });
}

}  // namespace catq::cli
