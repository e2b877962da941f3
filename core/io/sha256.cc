#include "core/io/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/escaping.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

EVP_MD_CTX* NewSha256Context() {
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  // Only allocation can fail here; a constructor has no status to return.
  if (context == nullptr || EVP_DigestInit_ex(context, EVP_sha256(), nullptr) != 1) std::abort();
  return context;
}

}  // namespace

Sha256Hasher::Sha256Hasher() : context_(NewSha256Context()) {}

Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(context_)); }

void Sha256Hasher::Update(absl::string_view bytes) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(context_), bytes.data(), bytes.size());
}

std::string Sha256Hasher::Finish() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(context_), digest, &size);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), size));
}

std::string Sha256Hex(absl::string_view bytes) {
  Sha256Hasher hasher;
  hasher.Update(bytes);
  return hasher.Finish();
}

absl::StatusOr<std::string> Sha256OfFile(Env* env, const std::string& path) {
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, env->MapFile(path));
  // Hashed a slice at a time, each released once hashed, so hashing a file
  // larger than memory does not make it all resident in this process.
  constexpr size_t kSlice = size_t{64} << 20;
  const absl::string_view bytes = file->bytes();
  Sha256Hasher hasher;
  for (size_t at = 0; at < bytes.size(); at += kSlice) {
    const absl::string_view slice = bytes.substr(at, kSlice);
    hasher.Update(slice);
    file->Release(slice);
  }
  return hasher.Finish();
}

bool IsSha256Hex(absl::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace catq
