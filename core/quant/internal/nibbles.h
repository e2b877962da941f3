// File: core/quant/internal/nibbles.h
//
// 4-bit fields in 32-bit words, shared by the int4 packers. Words are built
// in uint32_t (shifting into the sign bit of an int32_t is how bugs start) and
// converted to the int32_t that safetensors I32 stores with std::bit_cast.
// Nibble i of a word sits at bits [4i, 4i + 4), lowest nibble first.
//
//   uint32_t word = quant_internal::kAllNibbles8;  // padding everywhere
//   word = quant_internal::WithNibble(word, 3, 0xF);
//   int32_t stored = quant_internal::ToI32(word);
//
// Not a public API. Thread-safety: pure functions.
#ifndef CATQ_CORE_QUANT_INTERNAL_NIBBLES_H_
#define CATQ_CORE_QUANT_INTERNAL_NIBBLES_H_

#include <bit>
#include <cstdint>

namespace catq::quant_internal {

inline constexpr int kNibblesPerWord = 8;
// Every nibble 8: the encoding of q = 0 in the +8 convention.
inline constexpr uint32_t kAllNibbles8 = 0x88888888u;
// Every nibble 7: GPTQ v1's stored zero point for zero_u = 8.
inline constexpr uint32_t kAllNibbles7 = 0x77777777u;

// WordsFor: ceil(n / 8), the words that hold n nibbles.
inline int64_t WordsFor(int64_t n) { return (n + kNibblesPerWord - 1) / kNibblesPerWord; }

inline int32_t ToI32(uint32_t word) { return std::bit_cast<int32_t>(word); }
inline uint32_t ToU32(int32_t word) { return std::bit_cast<uint32_t>(word); }

// GetNibble: nibble `index` (0..7) of `word`.
inline uint32_t GetNibble(uint32_t word, int index) { return (word >> (4 * index)) & 0xFu; }

// WithNibble: `word` with nibble `index` replaced by the low 4 bits of `nibble`.
inline uint32_t WithNibble(uint32_t word, int index, uint32_t nibble) {
  const int shift = 4 * index;
  return (word & ~(0xFu << shift)) | ((nibble & 0xFu) << shift);
}

}  // namespace catq::quant_internal

#endif  // CATQ_CORE_QUANT_INTERNAL_NIBBLES_H_
