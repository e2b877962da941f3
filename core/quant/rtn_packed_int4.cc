// RTN straight to packed int4, row by row: the AVX2 kernel packs the level
// vectors into words directly where groups start on 32-element boundaries,
// and otherwise goes through one row of int8 levels (cache-resident); the
// [out, in] int8 array of QuantizeRtn never exists.
#include "core/quant/rtn_packed_int4.h"

#include <bit>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/quant/internal/checks.h"
#include "core/quant/internal/nibbles.h"
#include "core/quant/internal/rtn_kernels.h"
#include "core/util/status_macros.h"

namespace catq {
namespace quant_internal {
namespace {

float Widen(float v) { return v; }
float Widen(uint16_t bf16) { return std::bit_cast<float>(static_cast<uint32_t>(bf16) << 16); }

// Rows of a row-major matrix of T, `stride` elements apart.
template <typename T>
struct RowSource {
  const T* data;
  int64_t stride;
  const T* Row(int64_t r) const { return data + r * stride; }
};

bool QuantizePackRow(const RtnKernels& kernels, const float* row, const RtnRowSpec& spec,
                     int8_t* scratch, uint32_t* words, float* scales, int8_t* zeros) {
  return kernels.quantize_pack_f32(row, spec, scratch, words, scales, zeros);
}
bool QuantizePackRow(const RtnKernels& kernels, const uint16_t* row, const RtnRowSpec& spec,
                     int8_t* scratch, uint32_t* words, float* scales, int8_t* zeros) {
  return kernels.quantize_pack_bf16(row, spec, scratch, words, scales, zeros);
}

template <typename T>
absl::StatusOr<RtnPackedInt4> QuantizePack(const RtnKernels& kernels, RowSource<T> source,
                                           int64_t rows, int64_t cols,
                                           const WeightQuantOptions& options,
                                           ScaleRounding round_scale) {
  RtnPackedInt4 out;
  CompressedTensorsInt4& packed = out.packed;
  packed.rows = rows;
  packed.cols = cols;
  packed.groups = NumGroups(cols, options.group_size);
  const int64_t groups = packed.groups;
  const int64_t words_per_row = WordsFor(cols);
  packed.weight_packed.resize(rows * words_per_row);
  out.scales.resize(rows * groups);
  std::vector<int8_t> zeros(options.symmetric ? 0 : rows * groups);
  std::vector<int8_t> scratch(cols);  // one row of levels, for the kernels' own use

  const RtnRowSpec spec{cols, options.group_size, options.bits, options.symmetric, round_scale};
  // int32_t and uint32_t may alias each other: the words are built unsigned.
  uint32_t* words = reinterpret_cast<uint32_t*>(packed.weight_packed.data());
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = source.Row(r);
    int8_t* zeros_row = options.symmetric ? nullptr : zeros.data() + r * groups;
    if (!QuantizePackRow(kernels, row, spec, scratch.data(), words + r * words_per_row,
                         out.scales.data() + r * groups, zeros_row)) {
      for (int64_t c = 0; c < cols; ++c) {
        if (!std::isfinite(Widen(row[c]))) return NonFiniteWeightError(r, c, Widen(row[c]));
      }
      return absl::InternalError(absl::StrCat("weight row ", r, ": rejected but finite"));
    }
  }
  for (size_t i = 0; i < out.scales.size(); ++i) {
    if (std::isfinite(out.scales[i])) continue;
    return UnrepresentableScaleError(static_cast<int64_t>(i) / groups,
                                     static_cast<int64_t>(i) % groups, out.scales[i]);
  }
  if (!options.symmetric) {
    packed.weight_zero_point.resize(WordsFor(rows) * groups);
    PackZeroPointsInt4(zeros.data(), rows, groups,
                       reinterpret_cast<uint32_t*>(packed.weight_zero_point.data()));
  }
  return out;
}

absl::Status CheckShape(int64_t rows, int64_t cols) {
  if (rows > 0 && cols > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("weight: shape [", rows, ", ", cols, "] is empty"));
}

}  // namespace

absl::StatusOr<RtnPackedInt4> QuantizeRtnPackInt4WithKernels(const RtnKernels& kernels,
                                                             const Eigen::Ref<const RowMatrixXf>& w,
                                                             const WeightQuantOptions& options,
                                                             ScaleRounding round_scale) {
  CATQ_RETURN_IF_ERROR(CheckInt4Options(options));
  CATQ_RETURN_IF_ERROR(CheckShape(w.rows(), w.cols()));
  return QuantizePack(kernels, RowSource<float>{w.data(), w.outerStride()}, w.rows(), w.cols(),
                      options, round_scale);
}

absl::StatusOr<RtnPackedInt4> QuantizeRtnPackInt4FromBf16WithKernels(
    const RtnKernels& kernels, absl::Span<const uint16_t> w_bf16, int64_t rows, int64_t cols,
    const WeightQuantOptions& options, ScaleRounding round_scale) {
  CATQ_RETURN_IF_ERROR(CheckInt4Options(options));
  CATQ_RETURN_IF_ERROR(CheckShape(rows, cols));
  CATQ_RETURN_IF_ERROR(CheckArraySize("weight", w_bf16.size(), rows, cols));
  return QuantizePack(kernels, RowSource<uint16_t>{w_bf16.data(), cols}, rows, cols, options,
                      round_scale);
}

}  // namespace quant_internal

absl::StatusOr<RtnPackedInt4> QuantizeRtnPackInt4(const Eigen::Ref<const RowMatrixXf>& w,
                                                  const WeightQuantOptions& options,
                                                  ScaleRounding round_scale) {
  return quant_internal::QuantizeRtnPackInt4WithKernels(quant_internal::FastestRtnKernels(), w,
                                                        options, round_scale);
}

absl::StatusOr<RtnPackedInt4> QuantizeRtnPackInt4FromBf16(absl::Span<const uint16_t> w_bf16,
                                                          int64_t rows, int64_t cols,
                                                          const WeightQuantOptions& options,
                                                          ScaleRounding round_scale) {
  return quant_internal::QuantizeRtnPackInt4FromBf16WithKernels(
      quant_internal::FastestRtnKernels(), w_bf16, rows, cols, options, round_scale);
}

}  // namespace catq
