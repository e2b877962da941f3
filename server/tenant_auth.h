// File: server/tenant_auth.h
//
// Bearer-token authentication (architecture.md section 5): a tokens file maps
// each token to a tenant; every call's `authorization: Bearer <token>`
// metadata names the caller. Without a tokens file the server is
// single-tenant and every call acts as tenant "default".
//
// Tokens file: one "<token> <tenant>" pair per line, '#' starts a comment,
// blank lines ignored. Tokens are compared in constant time and never
// appear in a message or log.
//
//   CATQ_ASSIGN_OR_RETURN(TenantAuth auth, TenantAuth::FromFile(path));
//   CATQ_ASSIGN_OR_RETURN(std::string tenant, auth.Authenticate(context->client_metadata()));
//
// Thread-safety: immutable after construction.
#ifndef CATQ_SERVER_TENANT_AUTH_H_
#define CATQ_SERVER_TENANT_AUTH_H_

#include <grpcpp/support/string_ref.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace catq::server {

inline constexpr char kDefaultTenant[] = "default";

class TenantAuth {
 public:
  // Open: every caller is kDefaultTenant.
  static TenantAuth Open() { return TenantAuth({}); }
  // FromFile: InvalidArgument naming the file and line for a malformed
  // line, a duplicate token or no token at all; the Env's error when the
  // file cannot be read.
  static absl::StatusOr<TenantAuth> FromFile(const std::string& path);
  // Parse: the file's contents; `source` names it in errors.
  static absl::StatusOr<TenantAuth> Parse(const std::string& text, const std::string& source);

  // Authenticate: the caller's tenant. UNAUTHENTICATED when tokens are
  // required and the metadata has none, or an unknown one.
  absl::StatusOr<std::string> Authenticate(
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const;

  bool open() const { return tokens_.empty(); }

 private:
  explicit TenantAuth(std::vector<std::pair<std::string, std::string>> tokens)
      : tokens_(std::move(tokens)) {}
  std::vector<std::pair<std::string, std::string>> tokens_;  // token, tenant
};

}  // namespace catq::server

#endif  // CATQ_SERVER_TENANT_AUTH_H_
