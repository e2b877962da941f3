#include "client/connection_flags.h"

namespace catq::cli {

void AddConnectionFlags(CLI::App& command, ConnectionFlags& flags, bool server_from_env) {
  CLI::Option* server = command.add_option("--server", flags.server, "HOST:PORT of a catq server");
  if (server_from_env) server->envname("CATQ_SERVER");
  command.add_option("--token", flags.token, "Bearer token for the server")->envname("CATQ_TOKEN");
  command.add_option("--tls-ca", flags.tls_ca,
                     "PEM file of the CA that signed the server's certificate (TLS; default "
                     "plaintext)");
}

absl::StatusOr<std::unique_ptr<client::QuantizerClient>> ConnectToServer(
    const ConnectionFlags& flags) {
  if (flags.server.empty()) {
    return absl::InvalidArgumentError("no server: pass --server HOST:PORT or set CATQ_SERVER");
  }
  client::ClientOptions options;
  options.server = flags.server;
  options.token = flags.token;
  options.tls_ca_file = flags.tls_ca;
  return client::QuantizerClient::Connect(options);
}

}  // namespace catq::cli
