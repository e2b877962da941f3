// File: proto/grpc_status.h
//
// The one conversion between absl::Status (everything inside catq) and
// grpc::Status (the wire). The codes are the same numbers (both follow
// google.rpc.Code); messages are capped so a runaway message never becomes
// a huge trailer.
#ifndef CATQ_PROTO_GRPC_STATUS_H_
#define CATQ_PROTO_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace catq {

inline constexpr size_t kMaxStatusMessageBytes = 4096;

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace catq

#endif  // CATQ_PROTO_GRPC_STATUS_H_
