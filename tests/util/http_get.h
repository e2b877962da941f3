// File: tests/util/http_get.h
//
// A plain HTTP/1.0 GET over a loopback socket, for tests that read an HTTP
// endpoint (the server's /metrics, Prometheus's API) without an HTTP library.
//
//   absl::StatusOr<std::string> body = HttpGet("127.0.0.1", port, "/metrics");
#ifndef CATQ_TESTS_UTIL_HTTP_GET_H_
#define CATQ_TESTS_UTIL_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace catq::testing {

// HttpGet: the body of a 200 response. Unavailable when the connection
// fails; FailedPrecondition, with the status line, for another status.
absl::StatusOr<std::string> HttpGet(const std::string& host, int port, const std::string& path);

}  // namespace catq::testing

#endif  // CATQ_TESTS_UTIL_HTTP_GET_H_
