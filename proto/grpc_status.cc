#include "proto/grpc_status.h"

#include <string>

namespace catq {
namespace {

std::string Capped(absl::string_view message) {
  if (message.size() <= kMaxStatusMessageBytes) return std::string(message);
  return std::string(message.substr(0, kMaxStatusMessageBytes)) + "...";
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), Capped(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      Capped(status.error_message()));
}

}  // namespace catq
