// File: client/connection_flags.h
//
// The flags every command that talks to a catq server shares, declared once:
// --server HOST:PORT (env CATQ_SERVER), --token (env CATQ_TOKEN) and
// --tls-ca FILE. The token is never printed, not even in --help defaults.
//
//   auto flags = std::make_shared<JobsFlags>();
//   AddConnectionFlags(*sub, flags->connection);
//   ...
//   CATQ_ASSIGN_OR_RETURN(std::unique_ptr<client::QuantizerClient> client,
//                         ConnectToServer(flags->connection));
#ifndef CATQ_CLIENT_CONNECTION_FLAGS_H_
#define CATQ_CLIENT_CONNECTION_FLAGS_H_

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/quantizer_client.h"

namespace catq::cli {

struct ConnectionFlags {
  std::string server;
  std::string token;
  std::string tls_ca;
};

// AddConnectionFlags: --server, --token and --tls-ca on `command`. With
// `server_from_env` false, CATQ_SERVER is not consulted (`catq quantize`,
// where --server chooses between the service and this process).
void AddConnectionFlags(CLI::App& command, ConnectionFlags& flags, bool server_from_env = true);

// ConnectToServer: a client for `flags`. InvalidArgument naming --server and
// CATQ_SERVER when no address is given; QuantizerClient::Connect's errors.
absl::StatusOr<std::unique_ptr<client::QuantizerClient>> ConnectToServer(
    const ConnectionFlags& flags);

}  // namespace catq::cli

#endif  // CATQ_CLIENT_CONNECTION_FLAGS_H_
