#include "core/quant/compressed_tensors_pack.h"

#include <cstddef>

#include "absl/strings/str_cat.h"
#include "core/quant/internal/checks.h"
#include "core/quant/internal/nibbles.h"
#include "core/quant/internal/rtn_kernels.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

using quant_internal::GetNibble;
using quant_internal::kNibblesPerWord;
using quant_internal::ToU32;
using quant_internal::WordsFor;

// The signed level a nibble holds (+8 offset).
int Decode(uint32_t nibble) { return static_cast<int>(nibble) - 8; }

// Decodes weight_packed [rows, ceil(cols/8)] into levels [rows, cols].
absl::Status DecodeWeightPacked(absl::Span<const int32_t> words, int64_t rows, int64_t cols,
                                int bits, std::vector<int8_t>* levels) {
  const int64_t words_per_row = WordsFor(cols);
  levels->resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t w = 0; w < words_per_row; ++w) {
      const uint32_t word = ToU32(words[r * words_per_row + w]);
      for (int i = 0; i < kNibblesPerWord; ++i) {
        const int64_t k = w * kNibblesPerWord + i;
        const uint32_t nibble = GetNibble(word, i);
        if (k >= cols) {
          if (nibble == 8) continue;
          return absl::DataLossError(absl::StrCat("weight_packed[row ", r, ", word ", w,
                                                  "]: padding nibble ", i, " (past in = ", cols,
                                                  ") is ", nibble, ", expected 8"));
        }
        const int level = Decode(nibble);
        if (!quant_internal::FitsSignedBits(level, bits)) {
          return absl::DataLossError(
              absl::StrCat("weight_packed[row ", r, ", word ", w, "] nibble ", i, " (column ", k,
                           "): q = ", level, " is outside [", quant_internal::MinSignedLevel(bits),
                           ", ", quant_internal::MaxSignedLevel(bits), "] for ", bits, " bits"));
        }
        (*levels)[r * cols + k] = static_cast<int8_t>(level);
      }
    }
  }
  return absl::OkStatus();
}

// Decodes weight_zero_point [ceil(rows/8), groups], packed along the rows,
// into zero points [rows, groups].
absl::Status DecodeZeroPoints(absl::Span<const int32_t> words, int64_t rows, int64_t groups,
                              int bits, std::vector<int8_t>* zeros) {
  zeros->resize(rows * groups);
  for (int64_t wr = 0; wr < WordsFor(rows); ++wr) {
    for (int64_t g = 0; g < groups; ++g) {
      const uint32_t word = ToU32(words[wr * groups + g]);
      for (int i = 0; i < kNibblesPerWord; ++i) {
        const int64_t r = wr * kNibblesPerWord + i;
        const uint32_t nibble = GetNibble(word, i);
        if (r >= rows) {
          if (nibble == 8) continue;
          return absl::DataLossError(absl::StrCat("weight_zero_point[word row ", wr, ", group ", g,
                                                  "]: padding nibble ", i, " (past out = ", rows,
                                                  ") is ", nibble, ", expected 8"));
        }
        const int zero = Decode(nibble);
        if (!quant_internal::FitsSignedBits(zero, bits)) {
          return absl::DataLossError(absl::StrCat(
              "weight_zero_point[word row ", wr, ", group ", g, "] nibble ", i, " (row ", r,
              "): zero = ", zero, " is outside [", quant_internal::MinSignedLevel(bits), ", ",
              quant_internal::MaxSignedLevel(bits), "] for ", bits, " bits"));
        }
        (*zeros)[r * groups + g] = static_cast<int8_t>(zero);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CompressedTensorsInt4> PackInt4CompressedTensors(const QuantizedWeight& qw) {
  CATQ_RETURN_IF_ERROR(ValidateQuantizedWeight(qw));
  CATQ_RETURN_IF_ERROR(quant_internal::CheckInt4Options(qw.options));

  CompressedTensorsInt4 packed;
  packed.rows = qw.rows;
  packed.cols = qw.cols;
  packed.groups = qw.groups();
  const int64_t words_per_row = WordsFor(qw.cols);
  packed.weight_packed.resize(qw.rows * words_per_row);
  // Levels are in [-8, 7] (validated above), as the pack kernels require.
  const quant_internal::RtnKernels& kernels = quant_internal::FastestRtnKernels();
  // int32_t and uint32_t may alias each other: the words are built unsigned.
  uint32_t* words = reinterpret_cast<uint32_t*>(packed.weight_packed.data());
  for (int64_t r = 0; r < qw.rows; ++r) {
    kernels.pack_int4(qw.q.data() + r * qw.cols, qw.cols, words + r * words_per_row);
  }
  if (!qw.options.symmetric) {
    packed.weight_zero_point.resize(WordsFor(qw.rows) * packed.groups);
    quant_internal::PackZeroPointsInt4(
        qw.zeros.data(), qw.rows, packed.groups,
        reinterpret_cast<uint32_t*>(packed.weight_zero_point.data()));
  }
  return packed;
}

absl::StatusOr<QuantizedWeight> UnpackInt4CompressedTensors(const CompressedTensorsInt4& packed,
                                                            absl::Span<const float> scales,
                                                            const WeightQuantOptions& options) {
  CATQ_RETURN_IF_ERROR(quant_internal::CheckInt4Options(options));
  CATQ_RETURN_IF_ERROR(
      quant_internal::CheckPackedShape(packed.rows, packed.cols, packed.groups, options));
  CATQ_RETURN_IF_ERROR(quant_internal::CheckArraySize("weight_packed", packed.weight_packed.size(),
                                                      packed.rows, WordsFor(packed.cols)));
  CATQ_RETURN_IF_ERROR(
      quant_internal::CheckArraySize("weight_scale", scales.size(), packed.rows, packed.groups));
  if (options.symmetric) {
    if (!packed.weight_zero_point.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("weight_zero_point: symmetric weights have none, got ",
                       packed.weight_zero_point.size(), " words"));
    }
  } else {
    CATQ_RETURN_IF_ERROR(quant_internal::CheckArraySize("weight_zero_point",
                                                        packed.weight_zero_point.size(),
                                                        WordsFor(packed.rows), packed.groups));
  }

  QuantizedWeight qw;
  qw.rows = packed.rows;
  qw.cols = packed.cols;
  qw.options = options;
  CATQ_RETURN_IF_ERROR(
      DecodeWeightPacked(packed.weight_packed, packed.rows, packed.cols, options.bits, &qw.q));
  if (!options.symmetric) {
    CATQ_RETURN_IF_ERROR(DecodeZeroPoints(packed.weight_zero_point, packed.rows, packed.groups,
                                          options.bits, &qw.zeros));
  }
  qw.scales.assign(scales.begin(), scales.end());
  // Sizes and levels are checked above; what is left to fail is a scale.
  CATQ_RETURN_IF_ERROR(Prefix("weight_scale", ValidateQuantizedWeight(qw)));
  return qw;
}

}  // namespace catq
