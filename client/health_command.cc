// `catq health [--server HOST:PORT] [--service NAME] [--timeout-seconds S]`:
// asks a catq server's standard health service (grpc.health.v1.Health/Check)
// whether it serves, prints the answer (SERVING, NOT_SERVING, ...) and exits
// 0 only for SERVING. The container's HEALTHCHECK runs it; it needs no token
// (the health service is not behind tenant auth).
#include <grpcpp/client_context.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/connection_flags.h"
#include "core/util/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "proto/grpc_status.h"

namespace catq::cli {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

struct HealthFlags {
  ConnectionFlags connection;
  std::string service;
  double timeout_seconds = 5;
};

absl::Status RunHealth(const HealthFlags& flags) {
  if (flags.connection.server.empty()) {
    return absl::InvalidArgumentError("no server: pass --server HOST:PORT or set CATQ_SERVER");
  }
  client::ClientOptions options;
  options.server = flags.connection.server;
  options.tls_ca_file = flags.connection.tls_ca;
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, client::OpenChannel(options));
  std::unique_ptr<grpc::health::v1::Health::Stub> stub =
      grpc::health::v1::Health::NewStub(std::move(channel));
  grpc::ClientContext context;
  context.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_seconds * 1e3)));
  HealthCheckRequest request;
  request.set_service(flags.service);
  HealthCheckResponse response;
  CATQ_RETURN_IF_ERROR(Prefix(absl::StrCat("health of ", flags.connection.server),
                              FromGrpcStatus(stub->Check(&context, request, &response))));
  const std::string state = HealthCheckResponse::ServingStatus_Name(response.status());
  std::cout << state << "\n";
  if (response.status() != HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat(flags.connection.server, " is ", state));
  }
  return absl::OkStatus();
}

}  // namespace

void AddHealthCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<HealthFlags>();
  CLI::App* sub = app.add_subcommand(
      "health", "Ask a catq server whether it serves (exit 0 only when it does)");
  AddConnectionFlags(*sub, flags->connection);
  sub->add_option("--service", flags->service,
                  "A service to ask about, e.g. catq.v1.Quantizer (default: the whole server)");
  sub->add_option("--timeout-seconds", flags->timeout_seconds, "How long to wait for the answer")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 3600.0));
  sub->callback([flags, &run] { run = [flags] { return RunHealth(*flags); }; });
}

}  // namespace catq::cli
