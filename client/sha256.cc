#include "client/sha256.h"

#include <openssl/evp.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "core/util/status_macros.h"

namespace catq::client {
namespace {

EVP_MD_CTX* Context(void* context) { return static_cast<EVP_MD_CTX*>(context); }

}  // namespace

Sha256Hasher::Sha256Hasher() : context_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(Context(context_), EVP_sha256(), nullptr);
}

Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(Context(context_)); }

void Sha256Hasher::Update(absl::string_view bytes) {
  EVP_DigestUpdate(Context(context_), bytes.data(), bytes.size());
}

std::string Sha256Hasher::Finish() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(Context(context_), digest, &length);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), static_cast<size_t>(length)));
}

std::string Sha256Hex(absl::string_view bytes) {
  Sha256Hasher hasher;
  hasher.Update(bytes);
  return hasher.Finish();
}

absl::StatusOr<std::string> Sha256OfFile(Env* env, const std::string& path) {
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, env->MapFile(path));
  return Sha256Hex(file->bytes());
}

}  // namespace catq::client
