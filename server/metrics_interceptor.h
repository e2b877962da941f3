// File: server/metrics_interceptor.h
//
// A gRPC server interceptor that records every call's method, status code
// and latency in ServerMetrics (catq_grpc_requests_total,
// catq_grpc_request_duration_seconds), for every service of the server.
//
//   std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> f;
//   f.push_back(std::make_unique<MetricsInterceptorFactory>(&metrics));
//   builder.experimental().SetInterceptorCreators(std::move(f));
//
// Thread-safety: thread-safe; `metrics` must outlive the server.
#ifndef CATQ_SERVER_METRICS_INTERCEPTOR_H_
#define CATQ_SERVER_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include "server/server_metrics.h"

namespace catq::server {

class MetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServerMetrics* const metrics_;
};

}  // namespace catq::server

#endif  // CATQ_SERVER_METRICS_INTERCEPTOR_H_
