// File: server/metrics_endpoint.h
//
// What every catq process's /metrics shares (the server's, `catq serve
// --metrics-listen`, and a remote worker's, `catq worker --metrics-listen`):
// the HTTP endpoint itself (prometheus-cpp's Exposer), the process's resident
// memory, and the duration buckets of every latency histogram, so that the
// server's and the workers' histograms aggregate.
//
//   CATQ_ASSIGN_OR_RETURN(auto endpoint,
//                         MetricsEndpoint::Start("0.0.0.0:9465", "--metrics-listen"));
//   endpoint->Register(registry);    // and any other Collectable
//   int port = endpoint->port();     // the bound port (listen may say 0)
//
// Thread-safety: thread-safe.
#ifndef CATQ_SERVER_METRICS_ENDPOINT_H_
#define CATQ_SERVER_METRICS_ENDPOINT_H_

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/histogram.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace catq::server {

// Latency buckets from 1 ms to about 17 min (RPCs, tasks and jobs alike).
prometheus::Histogram::BucketBoundaries DurationBuckets();

// catq_process_resident_memory_bytes, read from /proc/self/statm when
// scraped (0 where there is no /proc).
std::shared_ptr<prometheus::Collectable> ResidentMemoryCollectable();

class MetricsEndpoint {
 public:
  // Start: serves /metrics on `listen` (HOST:PORT, port 0 for any free one)
  // with the process's resident memory registered. Errors (Unavailable)
  // name `flag` and the address: a port in use, a bad address.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& listen,
                                                                const std::string& flag);

  void Register(const std::shared_ptr<prometheus::Collectable>& collectable);
  int port() const { return port_; }

 private:
  explicit MetricsEndpoint(std::unique_ptr<prometheus::Exposer> exposer);

  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<prometheus::Collectable> memory_;
  int port_ = 0;
};

}  // namespace catq::server

#endif  // CATQ_SERVER_METRICS_ENDPOINT_H_
