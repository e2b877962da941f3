// `catq serve --listen HOST:PORT --data-dir DIR [--workers N] [--tokens FILE]
// [--worker-tokens FILE] [--lease-seconds S] [--tls-cert F --tls-key F]`:
// runs the server with its in-process workers (and remote ones that connect)
// until SIGINT or SIGTERM. Prints "listening on HOST:PORT" once it accepts
// calls (with port 0, the port it picked), so scripts can wait for it.
#include <signal.h>

#include <iostream>
#include <memory>
#include <string>

#include "client/command.h"
#include "client/termination_signals.h"
#include "core/util/status_macros.h"
#include "server/catq_server.h"

namespace catq::cli {
namespace {

absl::Status RunServe(const server::CatqServerOptions& options) {
  TerminationSignals signals;
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<server::CatqServer> server,
                        server::CatqServer::Start(options));
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  std::cout << "catq serve: listening on " << host << ":" << server->port() << ", data dir "
            << options.data_dir << std::endl;
  if (server->metrics_port() != 0) {
    const std::string metrics_host =
        options.metrics_listen.substr(0, options.metrics_listen.rfind(':'));
    std::cout << "catq serve: metrics on http://" << metrics_host << ":" << server->metrics_port()
              << "/metrics" << std::endl;
  }
  const int signal = signals.Wait();
  std::cout << "catq serve: " << (signal == SIGINT ? "SIGINT" : "SIGTERM")
            << ", shutting down (unfinished jobs resume at the next start)" << std::endl;
  server->Shutdown();
  return absl::OkStatus();
}

}  // namespace

void AddServeCommand(CLI::App& app, CommandAction& run) {
  auto options = std::make_shared<server::CatqServerOptions>();
  CLI::App* sub = app.add_subcommand("serve", "Run the catq server with in-process workers");
  sub->add_option("--listen", options->listen, "HOST:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  sub->add_option("--data-dir", options->data_dir, "Database, blobs, models and job outputs")
      ->required();
  sub->add_option("--workers", options->workers,
                  "In-process worker threads (default: one per core; 0: only remote workers "
                  "run layer tasks)");
  sub->add_option("--tokens", options->tokens_file,
                  "File of '<token> <tenant>' lines; without it every caller is one tenant");
  sub->add_option("--worker-tokens", options->worker_tokens_file,
                  "File of '<token> <worker name>' lines for remote workers (catq worker)");
  sub->add_option_function<double>(
         "--lease-seconds", [options](double seconds) { options->lease = absl::Seconds(seconds); },
         "How long a remote worker's task lease lasts without a heartbeat (default 30)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--metrics-listen", options->metrics_listen,
                  "HOST:PORT for Prometheus metrics at /metrics (port 0: any free port)");
  sub->add_option("--tls-cert", options->tls_cert_file, "PEM certificate chain (TLS)");
  sub->add_option("--tls-key", options->tls_key_file, "PEM private key (TLS)");
  sub->add_option("--max-upload-bytes", options->upload_limits.max_upload_bytes,
                  "Largest upload (all files together)")
      ->capture_default_str();
  sub->add_option("--max-jobs-per-tenant", options->service_limits.max_unfinished_jobs_per_tenant,
                  "Unfinished jobs one tenant may have")
      ->capture_default_str();
  sub->callback([options, &run] { run = [options] { return RunServe(*options); }; });
}

}  // namespace catq::cli
