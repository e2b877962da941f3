// Fuzz target for ParseSafetensorsFile, the one parser every safetensors file
// goes through (SafetensorsFile::Open calls it on the mapped bytes). Any input
// must either be rejected with InvalidArgument and a message, or give a header
// that satisfies CheckParsedInvariants; the tensors' bytes are then read
// through TensorView so that ASan checks every access. A violation traps.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor/safetensors_format.h"
#include "core/tensor/tensor_view.h"
#include "tests/tensor/safetensors_invariants.h"

namespace {

[[noreturn]] void Violation(const std::string& what) {
  std::fprintf(stderr, "safetensors_header_fuzzer: %s\n", what.c_str());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<catq::ParsedSafetensors> parsed = catq::ParseSafetensorsFile(bytes);
  if (!parsed.ok()) {
    if (parsed.status().code() != absl::StatusCode::kInvalidArgument) {
      Violation("rejection is not InvalidArgument: " + parsed.status().ToString());
    }
    if (parsed.status().message().empty()) Violation("rejection without a message");
    return 0;
  }
  const std::string violation = catq::testing::CheckParsedInvariants(bytes, *parsed);
  if (!violation.empty()) Violation(violation);

  // Read every tensor the way SafetensorsFile::View does.
  for (const catq::TensorInfo& info : parsed->header.tensors) {
    const catq::TensorView view(
        info, bytes.substr(parsed->data_offset + info.data_begin, info.NumBytes()));
    if (view.bytes().size() != info.NumBytes()) Violation("view is short");
    if (catq::IsFloatDType(view.dtype())) {
      absl::StatusOr<std::vector<float>> values = view.ToFloat();
      if (!values.ok() || values->size() != static_cast<size_t>(view.NumElements())) {
        Violation("ToFloat failed on a valid tensor");
      }
    } else if (view.ToFloat().ok()) {
      Violation("ToFloat accepted an integer tensor");
    }
  }
  return 0;
}
