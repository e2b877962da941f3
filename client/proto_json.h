// File: client/proto_json.h
//
// What the server commands print with --json: a message of the public API in
// the proto3 JSON mapping with the .proto's field names (so "job_id", and
// 64-bit integers as strings, as that mapping says), every field present.
//
//   std::cout << ProtoToJson(job).dump(2) << "\n";
#ifndef CATQ_CLIENT_PROTO_JSON_H_
#define CATQ_CLIENT_PROTO_JSON_H_

#include <google/protobuf/message.h>

#include "nlohmann/json.hpp"

namespace catq::cli {

nlohmann::json ProtoToJson(const google::protobuf::Message& message);

}  // namespace catq::cli

#endif  // CATQ_CLIENT_PROTO_JSON_H_
