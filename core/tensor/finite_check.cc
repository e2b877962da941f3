#include "core/tensor/finite_check.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/tensor/dtype.h"
#include "core/tensor/safetensors_header.h"

namespace catq {
namespace {

// Elements converted at a time by CheckFiniteTensor (256 KiB of floats).
constexpr uint64_t kChunkElements = uint64_t{1} << 16;

}  // namespace

absl::Status CheckFinite(absl::string_view name, absl::Span<const float> values,
                         uint64_t first_index) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::DataLossError(
          absl::StrCat(name, ": element ", first_index + i, " is ", values[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckFiniteTensor(const TensorView& view) {
  if (!IsFloatDType(view.dtype())) return absl::OkStatus();
  const uint64_t element_bytes = DTypeSize(view.dtype());
  const uint64_t count = view.bytes().size() / element_bytes;
  std::vector<float> values(std::min(count, kChunkElements));
  for (uint64_t begin = 0; begin < count; begin += kChunkElements) {
    const uint64_t n = std::min(kChunkElements, count - begin);
    // A view of the chunk alone, converted as the whole tensor would be.
    TensorInfo chunk;
    chunk.name = view.name();
    chunk.dtype = view.dtype();
    chunk.shape = {static_cast<int64_t>(n)};
    chunk.data_end = n * element_bytes;
    const TensorView piece(chunk, view.bytes().substr(begin * element_bytes, n * element_bytes));
    const absl::Span<float> out(values.data(), n);
    absl::Status converted = piece.CopyToFloat(out);
    if (!converted.ok()) return converted;
    converted = CheckFinite(view.name(), out, begin);
    if (!converted.ok()) return converted;
  }
  return absl::OkStatus();
}

}  // namespace catq
