#include "core/quant/compressed_tensors_pack.h"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/quant/internal/checks.h"
#include "core/quant/internal/nibbles.h"
#include "core/quant/internal/rtn_kernels.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

using quant_internal::ToU32;

// One field width of the layout: F bits, 32 / F fields per word, each
// holding q + 2^(F-1).
struct FieldFormat {
  int bits;
  int per_word;
  uint32_t mask;
  int offset;        // 2^(F-1): the encoding of q = 0, also every padding field.
  const char* name;  // What error messages call one field.
};

constexpr FieldFormat kNibbles = {4, 8, 0xFu, 8, "nibble"};
// 6 bits: 32 / 6 = 5 fields per word at bits 0, 6, ..., 24; bits 30-31 are 0.
constexpr FieldFormat kSixBitFields = {6, 5, 0x3Fu, 32, "6-bit field"};
constexpr FieldFormat kBytes = {8, 4, 0xFFu, 128, "byte"};

const FieldFormat& FormatOf(int field_bits) {
  if (field_bits == 8) return kBytes;
  return field_bits == 6 ? kSixBitFields : kNibbles;
}

uint32_t GetField(uint32_t word, int index, const FieldFormat& format) {
  return (word >> (format.bits * index)) & format.mask;
}

// The field width of `options`, after checking them.
absl::StatusOr<int> FieldBitsOf(const WeightQuantOptions& options) {
  CATQ_RETURN_IF_ERROR(Prefix("options", options.Validate()));
  const int field_bits = PackedFieldBits(options.bits);
  if (field_bits == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.bits: ", options.bits,
                     " has no pack-quantized field (2 to 4 bits pack in 4-bit fields, 6 bits in "
                     "6-bit fields, 8 bits in 8-bit fields)"));
  }
  return field_bits;
}

// The byte of level q: q + 128.
uint32_t ByteOf(int8_t q) { return static_cast<uint32_t>(q + 128); }

// Four levels per word, byte i holding q + 128; padding bytes past `cols`
// hold 128.
void PackRowInt8(const int8_t* q, int64_t cols, uint32_t* words) {
  const int64_t full_words = cols / kBytes.per_word;
  for (int64_t w = 0; w < full_words; ++w) {
    const int8_t* level = q + w * kBytes.per_word;
    words[w] = ByteOf(level[0]) | (ByteOf(level[1]) << 8) | (ByteOf(level[2]) << 16) |
               (ByteOf(level[3]) << 24);
  }
  if (full_words * kBytes.per_word == cols) return;
  uint32_t last = 0;
  for (int i = 0; i < kBytes.per_word; ++i) {
    const int64_t k = full_words * kBytes.per_word + i;
    last |= (k < cols ? ByteOf(q[k]) : 128u) << (8 * i);
  }
  words[full_words] = last;
}

// weight_zero_point in bytes: zero points [rows, groups] into
// PackedWordsFor(rows, 8) x groups words, byte r % 4 of word [r / 4, g]
// holding zero + 128, padding bytes 128.
void PackZeroPointsInt8(const int8_t* zeros, int64_t rows, int64_t groups, uint32_t* words) {
  std::fill(words, words + PackedWordsFor(rows, 8) * groups, 0x80808080u);
  for (int64_t r = 0; r < rows; ++r) {
    uint32_t* word_row = words + (r / kBytes.per_word) * groups;
    const int shift = 8 * static_cast<int>(r % kBytes.per_word);
    for (int64_t g = 0; g < groups; ++g) {
      word_row[g] = (word_row[g] & ~(0xFFu << shift)) | (ByteOf(zeros[r * groups + g]) << shift);
    }
  }
}

// The field of level q in `format`: q + 2^(F-1).
uint32_t FieldOf(int8_t q, const FieldFormat& format) {
  return static_cast<uint32_t>(q + format.offset);
}

// Any field width, one field at a time: field i of word w holds element
// w * P + i at bits F * i; padding fields past `n` hold 2^(F-1).
void PackFieldsOfRow(const int8_t* q, int64_t n, const FieldFormat& format, uint32_t* words) {
  const int64_t num_words = (n + format.per_word - 1) / format.per_word;
  for (int64_t w = 0; w < num_words; ++w) {
    uint32_t word = 0;
    for (int i = 0; i < format.per_word; ++i) {
      const int64_t k = w * format.per_word + i;
      const uint32_t field = k < n ? FieldOf(q[k], format) : static_cast<uint32_t>(format.offset);
      word |= field << (format.bits * i);
    }
    words[w] = word;
  }
}

// A layout without a dedicated kernel (6-bit fields), built field by field.
// REQUIRES: `qw` valid and its levels fit `format`.
CompressedTensorsPacked PackInFields(const QuantizedWeight& qw, const FieldFormat& format) {
  CompressedTensorsPacked packed;
  packed.rows = qw.rows;
  packed.cols = qw.cols;
  packed.groups = qw.groups();
  const int64_t words_per_row = PackedWordsFor(qw.cols, format.bits);
  packed.weight_packed.resize(qw.rows * words_per_row);
  uint32_t* words = reinterpret_cast<uint32_t*>(packed.weight_packed.data());
  for (int64_t r = 0; r < qw.rows; ++r) {
    PackFieldsOfRow(qw.q.data() + r * qw.cols, qw.cols, format, words + r * words_per_row);
  }
  if (!qw.options.symmetric) {
    // Packed along the output dimension: column g of the zero points, one
    // field per row, in word row r / P.
    const int64_t word_rows = PackedWordsFor(qw.rows, format.bits);
    packed.weight_zero_point.resize(word_rows * packed.groups);
    uint32_t* zero_words = reinterpret_cast<uint32_t*>(packed.weight_zero_point.data());
    std::vector<int8_t> column(qw.rows);
    std::vector<uint32_t> column_words(word_rows);
    for (int64_t g = 0; g < packed.groups; ++g) {
      for (int64_t r = 0; r < qw.rows; ++r) column[r] = qw.zeros[r * packed.groups + g];
      PackFieldsOfRow(column.data(), qw.rows, format, column_words.data());
      for (int64_t wr = 0; wr < word_rows; ++wr)
        zero_words[wr * packed.groups + g] = column_words[wr];
    }
  }
  return packed;
}

// The 4-bit layout, on the fastest pack kernels. REQUIRES: `qw` valid, bits <= 4.
CompressedTensorsPacked PackInNibbles(const QuantizedWeight& qw) {
  CompressedTensorsPacked packed;
  packed.rows = qw.rows;
  packed.cols = qw.cols;
  packed.groups = qw.groups();
  const int64_t words_per_row = quant_internal::WordsFor(qw.cols);
  packed.weight_packed.resize(qw.rows * words_per_row);
  // Levels are in [-8, 7] (validated by the caller), as the pack kernels require.
  const quant_internal::RtnKernels& kernels = quant_internal::FastestRtnKernels();
  // int32_t and uint32_t may alias each other: the words are built unsigned.
  uint32_t* words = reinterpret_cast<uint32_t*>(packed.weight_packed.data());
  for (int64_t r = 0; r < qw.rows; ++r) {
    kernels.pack_int4(qw.q.data() + r * qw.cols, qw.cols, words + r * words_per_row);
  }
  if (!qw.options.symmetric) {
    packed.weight_zero_point.resize(quant_internal::WordsFor(qw.rows) * packed.groups);
    quant_internal::PackZeroPointsInt4(
        qw.zeros.data(), qw.rows, packed.groups,
        reinterpret_cast<uint32_t*>(packed.weight_zero_point.data()));
  }
  return packed;
}

// The 8-bit layout. REQUIRES: `qw` valid, bits == 8.
CompressedTensorsPacked PackInBytes(const QuantizedWeight& qw) {
  CompressedTensorsPacked packed;
  packed.rows = qw.rows;
  packed.cols = qw.cols;
  packed.groups = qw.groups();
  const int64_t words_per_row = PackedWordsFor(qw.cols, 8);
  packed.weight_packed.resize(qw.rows * words_per_row);
  uint32_t* words = reinterpret_cast<uint32_t*>(packed.weight_packed.data());
  for (int64_t r = 0; r < qw.rows; ++r) {
    PackRowInt8(qw.q.data() + r * qw.cols, qw.cols, words + r * words_per_row);
  }
  if (!qw.options.symmetric) {
    packed.weight_zero_point.resize(PackedWordsFor(qw.rows, 8) * packed.groups);
    PackZeroPointsInt8(qw.zeros.data(), qw.rows, packed.groups,
                       reinterpret_cast<uint32_t*>(packed.weight_zero_point.data()));
  }
  return packed;
}

// Decodes weight_packed [rows, words per row] into levels [rows, cols].
absl::Status DecodeWeightPacked(absl::Span<const int32_t> words, int64_t rows, int64_t cols,
                                int bits, const FieldFormat& format, std::vector<int8_t>* levels) {
  const int64_t words_per_row = PackedWordsFor(cols, format.bits);
  levels->resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t w = 0; w < words_per_row; ++w) {
      const uint32_t word = ToU32(words[r * words_per_row + w]);
      for (int i = 0; i < format.per_word; ++i) {
        const int64_t k = w * format.per_word + i;
        const uint32_t field = GetField(word, i, format);
        if (k >= cols) {
          if (field == static_cast<uint32_t>(format.offset)) continue;
          return absl::DataLossError(
              absl::StrCat("weight_packed[row ", r, ", word ", w, "]: padding ", format.name, " ",
                           i, " (past in = ", cols, ") is ", field, ", expected ", format.offset));
        }
        const int level = static_cast<int>(field) - format.offset;
        if (!quant_internal::FitsSignedBits(level, bits)) {
          return absl::DataLossError(absl::StrCat(
              "weight_packed[row ", r, ", word ", w, "] ", format.name, " ", i, " (column ", k,
              "): q = ", level, " is outside [", quant_internal::MinSignedLevel(bits), ", ",
              quant_internal::MaxSignedLevel(bits), "] for ", bits, " bits"));
        }
        (*levels)[r * cols + k] = static_cast<int8_t>(level);
      }
    }
  }
  return absl::OkStatus();
}

// Decodes weight_zero_point [word rows, groups], packed along the rows, into
// zero points [rows, groups].
absl::Status DecodeZeroPoints(absl::Span<const int32_t> words, int64_t rows, int64_t groups,
                              int bits, const FieldFormat& format, std::vector<int8_t>* zeros) {
  zeros->resize(rows * groups);
  for (int64_t wr = 0; wr < PackedWordsFor(rows, format.bits); ++wr) {
    for (int64_t g = 0; g < groups; ++g) {
      const uint32_t word = ToU32(words[wr * groups + g]);
      for (int i = 0; i < format.per_word; ++i) {
        const int64_t r = wr * format.per_word + i;
        const uint32_t field = GetField(word, i, format);
        if (r >= rows) {
          if (field == static_cast<uint32_t>(format.offset)) continue;
          return absl::DataLossError(absl::StrCat(
              "weight_zero_point[word row ", wr, ", group ", g, "]: padding ", format.name, " ", i,
              " (past out = ", rows, ") is ", field, ", expected ", format.offset));
        }
        const int zero = static_cast<int>(field) - format.offset;
        if (!quant_internal::FitsSignedBits(zero, bits)) {
          return absl::DataLossError(absl::StrCat(
              "weight_zero_point[word row ", wr, ", group ", g, "] ", format.name, " ", i, " (row ",
              r, "): zero = ", zero, " is outside [", quant_internal::MinSignedLevel(bits), ", ",
              quant_internal::MaxSignedLevel(bits), "] for ", bits, " bits"));
        }
        (*zeros)[r * groups + g] = static_cast<int8_t>(zero);
      }
    }
  }
  return absl::OkStatus();
}

// Unpacks after the options are checked: sizes, then fields, then scales.
absl::StatusOr<QuantizedWeight> UnpackFields(const CompressedTensorsPacked& packed,
                                             absl::Span<const float> scales,
                                             const WeightQuantOptions& options,
                                             const FieldFormat& format) {
  CATQ_RETURN_IF_ERROR(
      quant_internal::CheckPackedShape(packed.rows, packed.cols, packed.groups, options));
  CATQ_RETURN_IF_ERROR(quant_internal::CheckArraySize("weight_packed", packed.weight_packed.size(),
                                                      packed.rows,
                                                      PackedWordsFor(packed.cols, format.bits)));
  CATQ_RETURN_IF_ERROR(
      quant_internal::CheckArraySize("weight_scale", scales.size(), packed.rows, packed.groups));
  if (options.symmetric) {
    if (!packed.weight_zero_point.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("weight_zero_point: symmetric weights have none, got ",
                       packed.weight_zero_point.size(), " words"));
    }
  } else {
    CATQ_RETURN_IF_ERROR(
        quant_internal::CheckArraySize("weight_zero_point", packed.weight_zero_point.size(),
                                       PackedWordsFor(packed.rows, format.bits), packed.groups));
  }

  QuantizedWeight qw;
  qw.rows = packed.rows;
  qw.cols = packed.cols;
  qw.options = options;
  CATQ_RETURN_IF_ERROR(DecodeWeightPacked(packed.weight_packed, packed.rows, packed.cols,
                                          options.bits, format, &qw.q));
  if (!options.symmetric) {
    CATQ_RETURN_IF_ERROR(DecodeZeroPoints(packed.weight_zero_point, packed.rows, packed.groups,
                                          options.bits, format, &qw.zeros));
  }
  qw.scales.assign(scales.begin(), scales.end());
  // Sizes and levels are checked above; what is left to fail is a scale.
  CATQ_RETURN_IF_ERROR(Prefix("weight_scale", ValidateQuantizedWeight(qw)));
  return qw;
}

}  // namespace

int PackedFieldBits(int bits) {
  if (bits >= 2 && bits <= 4) return 4;
  return bits == 6 || bits == 8 ? bits : 0;
}

bool IsExactPackedWidth(int bits) { return bits == 4 || bits == 6 || bits == 8; }

int64_t PackedWordsFor(int64_t n, int field_bits) {
  const int64_t per_word = 32 / field_bits;
  return (n + per_word - 1) / per_word;
}

absl::StatusOr<CompressedTensorsPacked> PackCompressedTensors(const QuantizedWeight& qw) {
  CATQ_RETURN_IF_ERROR(ValidateQuantizedWeight(qw));
  CATQ_ASSIGN_OR_RETURN(const int field_bits, FieldBitsOf(qw.options));
  if (field_bits == 4) return PackInNibbles(qw);
  return field_bits == 8 ? PackInBytes(qw) : PackInFields(qw, FormatOf(field_bits));
}

absl::StatusOr<QuantizedWeight> UnpackCompressedTensors(const CompressedTensorsPacked& packed,
                                                        absl::Span<const float> scales,
                                                        const WeightQuantOptions& options) {
  CATQ_ASSIGN_OR_RETURN(const int field_bits, FieldBitsOf(options));
  return UnpackFields(packed, scales, options, FormatOf(field_bits));
}

absl::StatusOr<CompressedTensorsInt4> PackInt4CompressedTensors(const QuantizedWeight& qw) {
  CATQ_RETURN_IF_ERROR(ValidateQuantizedWeight(qw));
  CATQ_RETURN_IF_ERROR(quant_internal::CheckInt4Options(qw.options));
  return PackInNibbles(qw);
}

absl::StatusOr<QuantizedWeight> UnpackInt4CompressedTensors(const CompressedTensorsInt4& packed,
                                                            absl::Span<const float> scales,
                                                            const WeightQuantOptions& options) {
  CATQ_RETURN_IF_ERROR(quant_internal::CheckInt4Options(options));
  return UnpackFields(packed, scales, options, kNibbles);
}

}  // namespace catq
