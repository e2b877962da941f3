// The portable row kernels (the reference's loops, one row at a time) and the
// choice between them and the AVX2 set.
#include "core/quant/internal/rtn_kernels.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "core/quant/internal/grid.h"
#include "core/quant/internal/nibbles.h"

namespace catq::quant_internal {
namespace {

float Widen(float v) { return v; }
float Widen(uint16_t bf16) { return std::bit_cast<float>(static_cast<uint32_t>(bf16) << 16); }

template <typename T>
bool QuantizeRowPortable(const T* row, const RtnRowSpec& spec, int8_t* q, float* scales,
                         int8_t* zeros) {
  for (int64_t c = 0; c < spec.cols; ++c) {
    if (!std::isfinite(Widen(row[c]))) return false;
  }
  const int64_t groups = NumGroups(spec.cols, spec.group_size);
  const int offset = SignedOffset(spec.bits);
  for (int64_t g = 0; g < groups; ++g) {
    const ColumnRange span = GroupColumns(g, spec.cols, spec.group_size);
    if (spec.symmetric) {
      float amax = 0.0f;
      for (int64_t c = span.begin; c < span.end; ++c)
        amax = std::max(amax, std::fabs(Widen(row[c])));
      float scale = SymmetricScale(amax, spec.bits);
      if (spec.round_scale != nullptr) scale = spec.round_scale(scale);
      for (int64_t c = span.begin; c < span.end; ++c) {
        q[c] =
            scale > 0.0f ? static_cast<int8_t>(SymmetricLevel(Widen(row[c]), scale, spec.bits)) : 0;
      }
      scales[g] = scale;
    } else {
      float lo = 0.0f;
      float hi = 0.0f;
      for (int64_t c = span.begin; c < span.end; ++c) {
        lo = std::min(lo, Widen(row[c]));
        hi = std::max(hi, Widen(row[c]));
      }
      const AsymmetricGrid grid = MakeAsymmetricGrid(lo, hi, spec.bits, spec.round_scale);
      for (int64_t c = span.begin; c < span.end; ++c) {
        const int q_u =
            grid.scale > 0.0f ? AsymmetricLevel(Widen(row[c]), grid, spec.bits) : grid.zero_u;
        q[c] = static_cast<int8_t>(q_u - offset);
      }
      scales[g] = grid.scale;
      zeros[g] = static_cast<int8_t>(grid.zero_u - offset);
    }
  }
  return true;
}

void PackRowInt4Portable(const int8_t* q, int64_t cols, uint32_t* words) {
  for (int64_t w = 0; w < WordsFor(cols); ++w) {
    uint32_t word = kAllNibbles8;  // Padding nibbles past `cols` stay 8.
    for (int i = 0; i < kNibblesPerWord; ++i) {
      const int64_t k = w * kNibblesPerWord + i;
      if (k < cols) word = WithNibble(word, i, static_cast<uint32_t>(q[k] + 8));
    }
    words[w] = word;
  }
}

bool LevelsWithinPortable(const int8_t* levels, int64_t n, int lo, int hi) {
  for (int64_t i = 0; i < n; ++i) {
    if (levels[i] < lo || levels[i] > hi) return false;
  }
  return true;
}

template <typename T>
bool QuantizePackRowPortable(const T* row, const RtnRowSpec& spec, int8_t* scratch, uint32_t* words,
                             float* scales, int8_t* zeros) {
  if (!QuantizeRowPortable(row, spec, scratch, scales, zeros)) return false;
  PackRowInt4Portable(scratch, spec.cols, words);
  return true;
}

constexpr RtnKernels kPortable = {"portable",
                                  QuantizeRowPortable<float>,
                                  QuantizeRowPortable<uint16_t>,
                                  QuantizePackRowPortable<float>,
                                  QuantizePackRowPortable<uint16_t>,
                                  PackRowInt4Portable,
                                  LevelsWithinPortable};

}  // namespace

const RtnKernels& PortableRtnKernels() { return kPortable; }

void PackZeroPointsInt4(const int8_t* zeros, int64_t rows, int64_t groups, uint32_t* words) {
  std::fill(words, words + WordsFor(rows) * groups, kAllNibbles8);  // Padding past `rows` stays 8.
  // Row by row, so that the inner loop walks both arrays in order.
  for (int64_t r = 0; r < rows; ++r) {
    uint32_t* word_row = words + (r / kNibblesPerWord) * groups;
    const int index = static_cast<int>(r % kNibblesPerWord);
    for (int64_t g = 0; g < groups; ++g) {
      word_row[g] =
          WithNibble(word_row[g], index, static_cast<uint32_t>(zeros[r * groups + g] + 8));
    }
  }
}

const RtnKernels& FastestRtnKernels() {
  static const RtnKernels* const fastest = [] {
    const RtnKernels* avx2 = Avx2RtnKernels();
    return avx2 != nullptr ? avx2 : &kPortable;
  }();
  return *fastest;
}

}  // namespace catq::quant_internal
