#include "core/quant/gptq_pack.h"

#include "absl/strings/str_cat.h"
#include "core/quant/internal/checks.h"
#include "core/quant/internal/nibbles.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

using quant_internal::GetNibble;
using quant_internal::kAllNibbles7;
using quant_internal::kAllNibbles8;
using quant_internal::kNibblesPerWord;
using quant_internal::ToI32;
using quant_internal::ToU32;
using quant_internal::WithNibble;
using quant_internal::WordsFor;

// Unsigned 4-bit values: q_u = q + 8, zero_u = zero + 8; qzeros stores zero_u - 1.
constexpr int kUnsignedOffset = 8;
constexpr uint32_t kPaddingZeroNibble = 7;

std::string LevelRange(int bits) {
  return absl::StrCat("[", quant_internal::MinSignedLevel(bits), ", ",
                      quant_internal::MaxSignedLevel(bits), "] for ", bits, " bits");
}

// Decodes qweight [ceil(cols/8), rows] into levels [rows, cols].
absl::Status DecodeQweight(const GptqInt4& gptq, int bits, std::vector<int8_t>* q) {
  q->resize(gptq.rows * gptq.cols);
  for (int64_t wr = 0; wr < WordsFor(gptq.cols); ++wr) {
    for (int64_t o = 0; o < gptq.rows; ++o) {
      const uint32_t word = ToU32(gptq.qweight[wr * gptq.rows + o]);
      for (int n = 0; n < kNibblesPerWord; ++n) {
        const int64_t i = wr * kNibblesPerWord + n;
        const uint32_t nibble = GetNibble(word, n);
        if (i >= gptq.cols) {
          if (nibble == static_cast<uint32_t>(kUnsignedOffset)) continue;
          return absl::DataLossError(
              absl::StrCat("qweight[word row ", wr, ", column ", o, "]: padding nibble ", n,
                           " (past in = ", gptq.cols, ") is ", nibble, ", expected 8"));
        }
        const int level = static_cast<int>(nibble) - kUnsignedOffset;
        if (!quant_internal::FitsSignedBits(level, bits)) {
          return absl::DataLossError(absl::StrCat("qweight[word row ", wr, ", column ", o,
                                                  "] nibble ", n, " (input ", i, "): q = ", level,
                                                  " is outside ", LevelRange(bits)));
        }
        (*q)[o * gptq.cols + i] = static_cast<int8_t>(level);
      }
    }
  }
  return absl::OkStatus();
}

// Decodes qzeros [groups, ceil(rows/8)] into signed zero points [rows, groups]
// (left empty for symmetric options, after checking every zero is 8).
absl::Status DecodeQzeros(const GptqInt4& gptq, const WeightQuantOptions& options,
                          std::vector<int8_t>* zeros) {
  const int64_t words_per_group = WordsFor(gptq.rows);
  if (!options.symmetric) zeros->resize(gptq.rows * gptq.groups);
  for (int64_t g = 0; g < gptq.groups; ++g) {
    for (int64_t wc = 0; wc < words_per_group; ++wc) {
      const uint32_t word = ToU32(gptq.qzeros[g * words_per_group + wc]);
      for (int n = 0; n < kNibblesPerWord; ++n) {
        const int64_t o = wc * kNibblesPerWord + n;
        const uint32_t stored = GetNibble(word, n);
        const std::string where = absl::StrCat("qzeros[group ", g, ", word ", wc, "] nibble ", n);
        if (o >= gptq.rows) {
          if (stored == kPaddingZeroNibble) continue;
          return absl::DataLossError(absl::StrCat(where, ": padding (past out = ", gptq.rows,
                                                  ") is ", stored, ", expected 7"));
        }
        const int zero_u = static_cast<int>(stored) + 1;
        if (zero_u > 15) {
          return absl::DataLossError(absl::StrCat(
              where, " (output ", o, "): stored 15 means zero point 16, which does not fit 4 bits",
              " (a GPTQ v1 underflow of zero point 0)"));
        }
        const int zero = zero_u - kUnsignedOffset;
        if (options.symmetric) {
          if (zero == 0) continue;
          return absl::DataLossError(
              absl::StrCat(where, " (output ", o, "): stored ", stored,
                           ", but symmetric weights store 7 (zero point 8)"));
        }
        if (!quant_internal::FitsSignedBits(zero, options.bits)) {
          return absl::DataLossError(absl::StrCat(where, " (output ", o, "): zero = ", zero,
                                                  " is outside ", LevelRange(options.bits)));
        }
        (*zeros)[o * gptq.groups + g] = static_cast<int8_t>(zero);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GptqInt4> PackInt4Gptq(const QuantizedWeight& qw) {
  CATQ_RETURN_IF_ERROR(ValidateQuantizedWeight(qw));
  CATQ_RETURN_IF_ERROR(quant_internal::CheckInt4Options(qw.options));

  GptqInt4 gptq;
  gptq.rows = qw.rows;
  gptq.cols = qw.cols;
  gptq.groups = qw.groups();
  const int64_t groups = gptq.groups;

  gptq.qweight.resize(WordsFor(qw.cols) * qw.rows);
  for (int64_t wr = 0; wr < WordsFor(qw.cols); ++wr) {
    for (int64_t o = 0; o < qw.rows; ++o) {
      uint32_t word = kAllNibbles8;  // Padding nibbles past `in` stay 8.
      for (int n = 0; n < kNibblesPerWord; ++n) {
        const int64_t i = wr * kNibblesPerWord + n;
        if (i < qw.cols)
          word =
              WithNibble(word, n, static_cast<uint32_t>(qw.q[o * qw.cols + i] + kUnsignedOffset));
      }
      gptq.qweight[wr * qw.rows + o] = ToI32(word);
    }
  }

  const int64_t words_per_group = WordsFor(qw.rows);
  gptq.qzeros.resize(groups * words_per_group);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t wc = 0; wc < words_per_group; ++wc) {
      uint32_t word = kAllNibbles7;  // Padding nibbles past `out` stay 7 (zero point 8).
      for (int n = 0; n < kNibblesPerWord; ++n) {
        const int64_t o = wc * kNibblesPerWord + n;
        if (o >= qw.rows) break;
        const int zero = qw.options.symmetric ? 0 : qw.zeros[o * groups + g];
        const int zero_u = zero + kUnsignedOffset;
        if (zero_u == 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("zeros[", o, ", ", g,
                           "] is -8 (zero_u 0): GPTQ v1 stores zero_u - 1, which "
                           "underflows; use the compressed-tensors layout or a symmetric grid"));
        }
        word = WithNibble(word, n, static_cast<uint32_t>(zero_u - 1));
      }
      gptq.qzeros[g * words_per_group + wc] = ToI32(word);
    }
  }

  gptq.scales.resize(groups * qw.rows);
  for (int64_t o = 0; o < qw.rows; ++o) {
    for (int64_t g = 0; g < groups; ++g) gptq.scales[g * qw.rows + o] = qw.scales[o * groups + g];
  }
  gptq.g_idx.resize(qw.cols);
  for (int64_t i = 0; i < qw.cols; ++i) {
    gptq.g_idx[i] = static_cast<int32_t>(GroupOfColumn(i, qw.options.group_size));
  }
  return gptq;
}

absl::StatusOr<QuantizedWeight> UnpackInt4Gptq(const GptqInt4& gptq,
                                               const WeightQuantOptions& options) {
  CATQ_RETURN_IF_ERROR(quant_internal::CheckInt4Options(options));
  CATQ_RETURN_IF_ERROR(
      quant_internal::CheckPackedShape(gptq.rows, gptq.cols, gptq.groups, options));
  CATQ_RETURN_IF_ERROR(quant_internal::CheckArraySize("qweight", gptq.qweight.size(),
                                                      WordsFor(gptq.cols), gptq.rows));
  CATQ_RETURN_IF_ERROR(quant_internal::CheckArraySize("qzeros", gptq.qzeros.size(), gptq.groups,
                                                      WordsFor(gptq.rows)));
  CATQ_RETURN_IF_ERROR(
      quant_internal::CheckArraySize("scales", gptq.scales.size(), gptq.groups, gptq.rows));
  if (static_cast<int64_t>(gptq.g_idx.size()) != gptq.cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "g_idx: expected ", gptq.cols, " values (one per input), got ", gptq.g_idx.size()));
  }
  for (int64_t i = 0; i < gptq.cols; ++i) {
    const int64_t expected = GroupOfColumn(i, options.group_size);
    if (gptq.g_idx[i] != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "g_idx[", i, "] is ", gptq.g_idx[i], ", expected ", expected, " = ", i, " / group_size ",
          options.group_size, " (activation-order g_idx is not supported)"));
    }
  }

  QuantizedWeight qw;
  qw.rows = gptq.rows;
  qw.cols = gptq.cols;
  qw.options = options;
  CATQ_RETURN_IF_ERROR(DecodeQweight(gptq, options.bits, &qw.q));
  CATQ_RETURN_IF_ERROR(DecodeQzeros(gptq, options, &qw.zeros));
  qw.scales.resize(gptq.rows * gptq.groups);
  for (int64_t o = 0; o < gptq.rows; ++o) {
    for (int64_t g = 0; g < gptq.groups; ++g) {
      qw.scales[o * gptq.groups + g] = gptq.scales[g * gptq.rows + o];
    }
  }
  // Sizes and levels are checked above; what is left to fail is a scale.
  CATQ_RETURN_IF_ERROR(ValidateQuantizedWeight(qw));
  return qw;
}

}  // namespace catq
