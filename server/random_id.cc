#include "server/random_id.h"

#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace catq::server {

std::string NewRandomId(absl::string_view prefix) {
  unsigned char bytes[8];
  RAND_bytes(bytes, sizeof(bytes));
  return absl::StrCat(prefix, "-",
                      absl::BytesToHexString(
                          absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

}  // namespace catq::server
