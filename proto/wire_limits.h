// File: proto/wire_limits.h
//
// Sizes both ends of the catq.v1 API agree on, kept in one place.
#ifndef CATQ_PROTO_WIRE_LIMITS_H_
#define CATQ_PROTO_WIRE_LIMITS_H_

#include <cstddef>

namespace catq {

// The largest `data` of one streamed chunk: uploads, fetches, worker blob
// reads and task results (the proto comments' "at most 4 MiB").
inline constexpr size_t kMaxChunkBytes = size_t{4} << 20;

}  // namespace catq

#endif  // CATQ_PROTO_WIRE_LIMITS_H_
