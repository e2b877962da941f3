// Fuzz target for ParseSafetensorsIndex (model.safetensors.index.json, also
// untrusted, parsed by the strict JSON reader). An accepted index must name
// only plain shard files and survive a serialize/parse round trip; a rejected
// one must be InvalidArgument with a message. A violation traps.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor/safetensors_index.h"
#include "core/tensor/safetensors_names.h"

namespace {

[[noreturn]] void Violation(const std::string& what) {
  std::fprintf(stderr, "safetensors_index_fuzzer: %s\n", what.c_str());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<catq::SafetensorsIndex> index = catq::ParseSafetensorsIndex(text);
  if (!index.ok()) {
    if (index.status().code() != absl::StatusCode::kInvalidArgument) {
      Violation("rejection is not InvalidArgument: " + index.status().ToString());
    }
    if (index.status().message().empty()) Violation("rejection without a message");
    return 0;
  }
  for (const auto& [tensor, shard] : index->weight_map) {
    if (!catq::CheckShardFileName(shard).ok()) Violation("accepted a shard name that escapes");
  }
  const uint64_t total = index->total_size.value_or(0);
  absl::StatusOr<std::string> serialized =
      catq::SerializeSafetensorsIndex(total, index->weight_map);
  if (!serialized.ok())
    Violation("accepted index does not serialize: " + serialized.status().ToString());
  absl::StatusOr<catq::SafetensorsIndex> again = catq::ParseSafetensorsIndex(*serialized);
  if (!again.ok()) Violation("serialized index does not parse: " + again.status().ToString());
  if (again->weight_map != index->weight_map || again->total_size != total) {
    Violation("index changed in a round trip");
  }
  return 0;
}
