// File: client/sha256.h
//
// SHA-256 as lowercase hex (OpenSSL EVP), the digest every FileEntry of the
// public API carries: the client hashes what it uploads and checks what it
// fetches.
//
//   Sha256Hasher hasher;
//   hasher.Update(chunk_a);
//   hasher.Update(chunk_b);
//   std::string hex = hasher.Finish();  // == Sha256Hex(chunk_a + chunk_b)
//
// Not thread-safe (a hasher is one stream); the free functions are.
#ifndef CATQ_CLIENT_SHA256_H_
#define CATQ_CLIENT_SHA256_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"

namespace catq::client {

// Incremental SHA-256 over a stream of appends.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;

  void Update(absl::string_view bytes);
  // Sha256Hasher::Finish: the lowercase hex digest of everything passed to
  // Update. The hasher is spent afterwards.
  std::string Finish();

 private:
  void* context_;  // EVP_MD_CTX, opaque here so no OpenSSL header leaks.
};

// Sha256Hex: the lowercase hex digest of `bytes`.
std::string Sha256Hex(absl::string_view bytes);

// Sha256OfFile: the digest of the file at `path`, read through `env`'s
// mapping. NotFound when the file is missing.
absl::StatusOr<std::string> Sha256OfFile(Env* env, const std::string& path);

}  // namespace catq::client

#endif  // CATQ_CLIENT_SHA256_H_
