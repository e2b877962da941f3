#include "client/rpc_status.h"

#include "absl/strings/str_cat.h"
#include "proto/grpc_status.h"

namespace catq::client {

absl::Status RpcStatus(absl::string_view rpc, const grpc::Status& status) {
  const absl::Status converted = FromGrpcStatus(status);
  if (converted.ok()) return converted;
  return absl::Status(converted.code(),
                      absl::StrCat(rpc, ": ", absl::StatusCodeToString(converted.code()), ": ",
                                   converted.message()));
}

}  // namespace catq::client
