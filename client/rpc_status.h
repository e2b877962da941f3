// File: client/rpc_status.h
//
// How the client reports a failed RPC: the server's code is kept and the
// message says which call failed, with the server's message intact:
//
//   RpcStatus("SubmitJob", grpc::Status(grpc::INVALID_ARGUMENT, "recipe.weight_bits: ..."))
//     == InvalidArgumentError("SubmitJob: INVALID_ARGUMENT: recipe.weight_bits: ...")
//
// Thread-safe (no state).
#ifndef CATQ_CLIENT_RPC_STATUS_H_
#define CATQ_CLIENT_RPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace catq::client {

// RpcStatus: OK for OK; otherwise FromGrpcStatus(status) with its message
// prefixed by "<rpc>: <CODE>: ".
absl::Status RpcStatus(absl::string_view rpc, const grpc::Status& status);

}  // namespace catq::client

#endif  // CATQ_CLIENT_RPC_STATUS_H_
