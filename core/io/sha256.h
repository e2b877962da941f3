// File: core/io/sha256.h
//
// SHA-256 as lowercase hex (OpenSSL EVP): the digest every file of the public
// API carries. The client hashes what it uploads and checks what it fetches;
// the server names its blobs by it and re-checks them on read.
//
//   Sha256Hasher hasher;
//   hasher.Update(chunk_a);
//   hasher.Update(chunk_b);
//   std::string hex = hasher.Finish();  // == Sha256Hex(chunk_a + chunk_b)
//
// Thread-safety: a hasher is one stream, not thread-safe; the free functions
// are.
#ifndef CATQ_CORE_IO_SHA256_H_
#define CATQ_CORE_IO_SHA256_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"

namespace catq {

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
// mapping (a file of any size takes no memory of its own). NotFound when the
// file is missing.
absl::StatusOr<std::string> Sha256OfFile(Env* env, const std::string& path);

// IsSha256Hex: 64 lowercase hex digits.
bool IsSha256Hex(absl::string_view text);

}  // namespace catq

#endif  // CATQ_CORE_IO_SHA256_H_
