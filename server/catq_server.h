// File: server/catq_server.h
//
// The wiring of `catq serve`: opens the data dir (SQLite database, blobs,
// models, uploads, job outputs), starts the job runner's in-process workers
// and the gRPC server with catq.v1.Quantizer, catq.v1.Worker (remote
// workers), standard health checking and server reflection, TLS when a
// certificate and key are given.
//
//   CatqServerOptions options;
//   options.listen = "127.0.0.1:0";
//   options.data_dir = dir;
//   CATQ_ASSIGN_OR_RETURN(std::unique_ptr<CatqServer> server, CatqServer::Start(options));
//   ... server->port() ...
//   server->Shutdown();
//
// Thread-safety: Shutdown may be called from any thread, once.
#ifndef CATQ_SERVER_CATQ_SERVER_H_
#define CATQ_SERVER_CATQ_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/metrics_endpoint.h"
#include "server/quantizer_service.h"
#include "server/server_metrics.h"
#include "server/worker_service.h"

namespace catq::server {

struct CatqServerOptions {
  std::string listen = "127.0.0.1:50051";  // port 0 picks a free one
  std::string data_dir;
  // In-process workers: -1 one per core; 0 none (only remote workers run
  // layer tasks).
  int workers = -1;
  std::string tokens_file;  // empty: single tenant, no tokens
  // Remote workers' tokens ("<token> <worker name>" lines). Empty: remote
  // workers need no token when tokens_file is empty too, and are refused
  // otherwise.
  std::string worker_tokens_file;
  absl::Duration lease = absl::Seconds(30);
  // HOST:PORT of the Prometheus /metrics endpoint (port 0: any free one);
  // empty: none.
  std::string metrics_listen;
  std::string tls_cert_file;
  std::string tls_key_file;
  UploadLimits upload_limits;
  ServiceLimits service_limits;
  int max_message_bytes = 8 << 20;
};

class CatqServer {
 public:
  // Start: everything above; errors name the file, directory or address.
  static absl::StatusOr<std::unique_ptr<CatqServer>> Start(const CatqServerOptions& options);
  ~CatqServer();

  int port() const { return port_; }
  // The /metrics port (0 without options.metrics_listen).
  int metrics_port() const { return metrics_endpoint_ == nullptr ? 0 : metrics_endpoint_->port(); }
  // Shutdown: refuses new calls, ends running ones (watchers and fetches are
  // cancelled after a short grace period), stops the workers after their
  // current task. Unfinished jobs resume at the next Start.
  void Shutdown();
  // Wait: blocks until Shutdown.
  void Wait();

 private:
  CatqServer() = default;
  absl::Status StartMetrics(const std::string& listen);
  std::unique_ptr<MetadataStore> store_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<TenantAuth> auth_;
  std::unique_ptr<TenantAuth> worker_auth_;  // null: no remote workers
  std::unique_ptr<ModelRepository> models_;
  std::unique_ptr<UploadReceiver> uploads_;
  std::unique_ptr<JobEventHub> events_;
  std::unique_ptr<ServerMetrics> metrics_;  // the runner and the services record here
  std::unique_ptr<JobRunner> runner_;
  std::unique_ptr<QuantizerService> service_;
  std::unique_ptr<WorkerService> worker_service_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;  // scrapes read metrics_, runner_, store_
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace catq::server

#endif  // CATQ_SERVER_CATQ_SERVER_H_
