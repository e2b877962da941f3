// File: core/quant/compressed_tensors_pack.h
//
// The compressed-tensors `pack-quantized` layout (architecture.md section 4),
// the format every quantized linear <m> of a catq output is stored in: signed
// levels in fixed-width fields of int32 words: 8 fields of 4 bits, 5 fields of
// 6 bits or 4 fields of 8 bits per word. Pack and Unpack sit side by side; Unpack(Pack(x)) == x
// exactly.
//
//   CATQ_ASSIGN_OR_RETURN(QuantizedWeight qw, QuantizeRtn(w, options));
//   CATQ_ASSIGN_OR_RETURN(CompressedTensorsPacked packed, PackCompressedTensors(qw));
//   // write packed.weight_packed as <m>.weight_packed, qw.scales as <m>.weight_scale, ...
//   CATQ_ASSIGN_OR_RETURN(QuantizedWeight back,
//                         UnpackCompressedTensors(packed, qw.scales, options));
//
// Layout, for a weight [out, in] with signed levels q, field width F (4 for
// bits 2..4, 6 for bits 6, 8 for bits 8; PackedFieldBits) and P = 32 / F
// (integer division: 8, 5, 4) fields per word, as compressed-tensors'
// pack_to_int32 (pack_factor = 32 // num_bits; a 6-bit word leaves its top 2
// bits 0):
//
//   <m>.weight_packed      I32 [out, ceil(in/P)]. Element k of row r sits in
//                          word [r, k/P] at bits F*(k%P), lowest field first;
//                          the field holds q + 2^(F-1) (F = 4: -8..7 -> 0..15,
//                          F = 6: -32..31 -> 0..63, F = 8: -128..127 ->
//                          0..255). Padding fields past
//                          `in` in the last word of a row hold 2^(F-1) (q = 0).
//   <m>.weight_scale       [out, groups] floats (written as F16, BF16 or F32):
//                          QuantizedWeight::scales as is. groups = 1 per
//                          channel, else ceil(in / group_size); group g covers
//                          input columns [g*G, min((g+1)*G, in)).
//   <m>.weight_shape       I64 [2] = [out, in] (weight_shape()).
//   <m>.weight_zero_point  I32 [ceil(out/P), groups], asymmetric only: packed
//                          along the OUTPUT dimension. For group g, the zero
//                          point of output row r is field r%P of word
//                          [r/P, g], holding zero + 2^(F-1); padding fields
//                          past `out` hold 2^(F-1).
//
//   dequantized weight = (field - 2^(F-1) - zero) * scale
//
// Words are built as uint32_t and stored bit for bit as int32_t, so a word
// whose top field has its high bit set reads as a negative int32 (0xFEDCBA98
// is -19088744). Sub-4-bit grids (bits 2, 3) use the 4-bit field (catq's own
// reading: compressed-tensors would pack them in fields of 2 or 3 bits, so
// outputs store only 4, 6 and 8); bits 5 and 7 have no field here.
//
// Thread-safety: pure functions; concurrent calls are safe.
#ifndef CATQ_CORE_QUANT_COMPRESSED_TENSORS_PACK_H_
#define CATQ_CORE_QUANT_COMPRESSED_TENSORS_PACK_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/weight_quant_options.h"

namespace catq {

// PackedFieldBits
//
// The field width that stores levels of `bits` bits: 4 for bits 2..4, 6 for
// bits 6, 8 for bits 8, 0 for any other width (no field here).
int PackedFieldBits(int bits);

// IsExactPackedWidth
//
// True for 4, 6 and 8: the widths whose levels fill their fields, so that a
// compressed-tensors loader reading num_bits = bits (32 / bits fields per
// word) reads the words as written. The widths catq's outputs store.
bool IsExactPackedWidth(int bits);

// PackedWordsFor
//
// ceil(n / (32 / field_bits)): the int32 words that hold n fields of
// `field_bits` bits. REQUIRES: field_bits is 4, 6 or 8.
int64_t PackedWordsFor(int64_t n, int field_bits);

struct CompressedTensorsPacked {
  int64_t rows = 0;    // out
  int64_t cols = 0;    // in
  int64_t groups = 0;  // scales per row
  // [rows, PackedWordsFor(cols, F)] row-major.
  std::vector<int32_t> weight_packed;
  // [PackedWordsFor(rows, F), groups] row-major; empty when symmetric.
  std::vector<int32_t> weight_zero_point;

  // CompressedTensorsPacked::weight_shape(): the I64 [2] tensor [out, in].
  std::array<int64_t, 2> weight_shape() const { return {rows, cols}; }
};

// The name the int4 entry points and their callers use; the same struct.
using CompressedTensorsInt4 = CompressedTensorsPacked;

// PackCompressedTensors
//
// Packs `qw` into the layout above, in fields of PackedFieldBits(bits). The
// scales are not copied: write qw.scales as weight_scale. Errors
// (InvalidArgument): `qw` fails ValidateQuantizedWeight (names the field and
// index), or options.bits has no field (5, 7).
absl::StatusOr<CompressedTensorsPacked> PackCompressedTensors(const QuantizedWeight& qw);

// UnpackCompressedTensors
//
// The QuantizedWeight that `packed` and `scales` ([rows, groups] row-major)
// hold under `options`, in fields of PackedFieldBits(options.bits). Errors as
// UnpackInt4CompressedTensors, with "byte" or "6-bit field" for "nibble" in
// 8- or 6-bit fields.
absl::StatusOr<QuantizedWeight> UnpackCompressedTensors(const CompressedTensorsPacked& packed,
                                                        absl::Span<const float> scales,
                                                        const WeightQuantOptions& options);

// PackInt4CompressedTensors
//
// PackCompressedTensors restricted to 4-bit fields. Errors (InvalidArgument):
// `qw` fails ValidateQuantizedWeight (names the field and index), or
// options.bits > 4.
absl::StatusOr<CompressedTensorsInt4> PackInt4CompressedTensors(const QuantizedWeight& qw);

// UnpackInt4CompressedTensors
//
// The QuantizedWeight that `packed` and `scales` ([rows, groups] row-major)
// hold under `options`. Errors: InvalidArgument for invalid options or bits
// > 4, a groups count that disagrees with options.group_size, an array of the
// wrong size (names the array, expected vs got), zero points present for
// symmetric options, or a negative or non-finite scale; DataLoss for a padding
// nibble that is not 8 (names the array, row and word) or a level outside
// `bits` signed bits.
absl::StatusOr<QuantizedWeight> UnpackInt4CompressedTensors(const CompressedTensorsInt4& packed,
                                                            absl::Span<const float> scales,
                                                            const WeightQuantOptions& options);

}  // namespace catq

#endif  // CATQ_CORE_QUANT_COMPRESSED_TENSORS_PACK_H_
