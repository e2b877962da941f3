#include "core/model/rope_permutation.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace catq {
namespace {

absl::Status CheckArguments(size_t size, int64_t n_heads, int64_t head_dim, int64_t cols) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RoPE permutation: head_dim must be even and positive, got ", head_dim));
  }
  // size == n_heads * head_dim * cols, checked by division so it cannot overflow.
  const uint64_t n = size;
  const auto h = static_cast<uint64_t>(head_dim);
  const auto c = static_cast<uint64_t>(cols);
  if (n_heads <= 0 || cols <= 0 || n % c != 0 || (n / c) % h != 0 ||
      n / c / h != static_cast<uint64_t>(n_heads)) {
    return absl::InvalidArgumentError(absl::StrCat("RoPE permutation: ", size,
                                                   " values do not make a [", n_heads, " heads x ",
                                                   head_dim, ", ", cols, "] matrix"));
  }
  return absl::OkStatus();
}

// Reorder: out row r = in row source(r) when `forward`, else out row source(r)
// = in row r.
absl::StatusOr<std::vector<float>> Reorder(absl::Span<const float> rows, int64_t n_heads,
                                           int64_t head_dim, int64_t cols, bool forward) {
  absl::Status status = CheckArguments(rows.size(), n_heads, head_dim, cols);
  if (!status.ok()) return status;
  std::vector<float> out(rows.size());
  const size_t width = static_cast<size_t>(cols);
  for (int64_t r = 0; r < n_heads * head_dim; ++r) {
    const size_t permuted = static_cast<size_t>(r) * width;
    const size_t original = static_cast<size_t>(RotateHalfSourceRow(r, head_dim)) * width;
    const size_t from = forward ? original : permuted;
    const size_t to = forward ? permuted : original;
    std::copy_n(rows.begin() + static_cast<std::ptrdiff_t>(from), width, out.begin() + to);
  }
  return out;
}

}  // namespace

int64_t RotateHalfSourceRow(int64_t row, int64_t head_dim) {
  const int64_t head = row / head_dim;
  const int64_t i = row % head_dim;
  const int64_t half = head_dim / 2;
  return head * head_dim + (i < half ? 2 * i : 2 * (i - half) + 1);
}

absl::StatusOr<std::vector<float>> PermuteRowsForRotateHalf(absl::Span<const float> rows,
                                                            int64_t n_heads, int64_t head_dim,
                                                            int64_t cols) {
  return Reorder(rows, n_heads, head_dim, cols, /*forward=*/true);
}

absl::StatusOr<std::vector<float>> UnpermuteRowsFromRotateHalf(absl::Span<const float> rows,
                                                               int64_t n_heads, int64_t head_dim,
                                                               int64_t cols) {
  return Reorder(rows, n_heads, head_dim, cols, /*forward=*/false);
}

}  // namespace catq
