// Fuzz target for the llama2.c checkpoint header, what `catq import-llama2c`
// and a llama2.c upload read first: ParseLlama2cHeader, then the tensor
// layout and the size check against the input's length. An accepted header
// must give a layout whose tensors lie inside total_bytes, in order.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/model/llama2c_format.h"
#include "tests/fuzz/fuzz_check.h"

namespace {
constexpr char kName[] = "llama2c_checkpoint_fuzzer";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using catq::fuzzing::CheckRejection;
  using catq::fuzzing::Violation;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<catq::Llama2cHeader> header = catq::ParseLlama2cHeader(bytes, "model.bin");
  if (!header.ok()) {
    CheckRejection(kName, header.status());
    return 0;
  }
  if (header->dim <= 0 || header->n_heads <= 0 || header->dim % header->n_heads != 0 ||
      header->n_kv_heads <= 0 || header->n_heads % header->n_kv_heads != 0 ||
      header->vocab_size <= 0) {
    Violation(kName, absl::StrCat("accepted an inconsistent header: dim ", header->dim, ", heads ",
                                  header->n_heads, "/", header->n_kv_heads));
  }
  const catq::Llama2cLayout layout = catq::ComputeLlama2cLayout(*header);
  const absl::Status sized = catq::CheckLlama2cFileSize(layout, size, "model.bin");
  if (!sized.ok()) CheckRejection(kName, sized);
  if ((size == layout.total_bytes) != sized.ok()) {
    Violation(kName,
              absl::StrCat("size check disagrees: file ", size, ", layout ", layout.total_bytes));
  }
  return 0;
}
