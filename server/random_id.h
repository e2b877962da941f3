// File: server/random_id.h
//
// Ids the server hands out (models, calibrations, jobs, leases): a prefix and
// 16 hex digits from OpenSSL's CSPRNG, so an id reveals nothing and cannot be
// guessed from another.
//
//   std::string job_id = NewRandomId("j");  // "j-3f9c0a7e51d2b846"
//
// Thread-safety: thread-safe.
#ifndef CATQ_SERVER_RANDOM_ID_H_
#define CATQ_SERVER_RANDOM_ID_H_

#include <string>

#include "absl/strings/string_view.h"

namespace catq::server {

std::string NewRandomId(absl::string_view prefix);

}  // namespace catq::server

#endif  // CATQ_SERVER_RANDOM_ID_H_
