#include "server/tenant_auth.h"

#include <openssl/crypto.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/io/env.h"
#include "core/util/status_macros.h"

namespace catq::server {

absl::StatusOr<TenantAuth> TenantAuth::FromFile(const std::string& path) {
  CATQ_ASSIGN_OR_RETURN(std::string text, Env::Default()->ReadFile(path));
  return Parse(text, path);
}

absl::StatusOr<TenantAuth> TenantAuth::Parse(const std::string& text, const std::string& source) {
  std::vector<std::pair<std::string, std::string>> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = line.substr(0, line.find('#'));
    std::vector<absl::string_view> fields =
        absl::StrSplit(absl::StripAsciiWhitespace(line), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_number,
                                                     ": expected \"<token> <tenant>\", got ",
                                                     fields.size(), " fields"));
    }
    for (const auto& [token, tenant] : tokens) {
      if (token == fields[0]) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ":", line_number, ": duplicate token (tenant ", fields[1], ")"));
      }
    }
    tokens.emplace_back(std::string(fields[0]), std::string(fields[1]));
  }
  if (tokens.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": no tokens"));
  return TenantAuth(std::move(tokens));
}

absl::StatusOr<std::string> TenantAuth::Authenticate(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
  if (open()) return std::string(kDefaultTenant);
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("missing 'authorization: Bearer <token>' metadata");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ")) {
    return absl::UnauthenticatedError("authorization: expected 'Bearer <token>'");
  }
  // Every token is compared, in constant time, so the time taken does not
  // tell how much of a token matched.
  const std::string* tenant = nullptr;
  for (const auto& [token, owner] : tokens_) {
    if (token.size() == value.size() &&
        CRYPTO_memcmp(token.data(), value.data(), value.size()) == 0) {
      tenant = &owner;
    }
  }
  if (tenant == nullptr) return absl::UnauthenticatedError("authorization: unknown token");
  return *tenant;
}

}  // namespace catq::server
