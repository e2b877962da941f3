// File: core/quant/compressed_tensors_pack.h
//
// The compressed-tensors `pack-quantized` int4 layout (architecture.md section
// 4), the format every quantized linear <m> of a catq output is stored in.
// Pack and Unpack sit side by side; Unpack(Pack(x)) == x exactly.
//
//   CATQ_ASSIGN_OR_RETURN(QuantizedWeight qw, QuantizeRtn(w, options));
//   CATQ_ASSIGN_OR_RETURN(CompressedTensorsInt4 packed, PackInt4CompressedTensors(qw));
//   // write packed.weight_packed as <m>.weight_packed, qw.scales as <m>.weight_scale, ...
//   CATQ_ASSIGN_OR_RETURN(QuantizedWeight back,
//                         UnpackInt4CompressedTensors(packed, qw.scales, options));
//
// Layout, for a weight [out, in] with signed levels q (|q| fits `bits` <= 4):
//
//   <m>.weight_packed      I32 [out, ceil(in/8)]. Element k of row r sits in
//                          word [r, k/8] at bits 4*(k%8), lowest nibble first;
//                          the nibble holds q + 8 (so -8..7 -> 0..15). Padding
//                          nibbles past `in` in the last word of a row hold 8.
//   <m>.weight_scale       [out, groups] floats (written as F16, BF16 or F32):
//                          QuantizedWeight::scales as is. groups = 1 per
//                          channel, else ceil(in / group_size); group g covers
//                          input columns [g*G, min((g+1)*G, in)).
//   <m>.weight_shape       I64 [2] = [out, in] (weight_shape()).
//   <m>.weight_zero_point  I32 [ceil(out/8), groups], asymmetric only: packed
//                          along the OUTPUT dimension. For group g, the zero
//                          point of output row r is nibble r%8 of word
//                          [r/8, g], holding zero + 8; padding nibbles past
//                          `out` hold 8.
//
//   dequantized weight = (nibble - 8 - zero) * scale
//
// Words are built as uint32_t and stored bit for bit as int32_t, so a word
// whose top nibble is >= 8 reads as a negative int32 (0xFEDCBA98 is -19088744).
// Sub-4-bit grids (bits 2, 3) use the same 4-bit container.
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

struct CompressedTensorsInt4 {
  int64_t rows = 0;    // out
  int64_t cols = 0;    // in
  int64_t groups = 0;  // scales per row
  // [rows, ceil(cols/8)] row-major.
  std::vector<int32_t> weight_packed;
  // [ceil(rows/8), groups] row-major; empty when symmetric.
  std::vector<int32_t> weight_zero_point;

  // CompressedTensorsInt4::weight_shape(): the I64 [2] tensor [out, in].
  std::array<int64_t, 2> weight_shape() const { return {rows, cols}; }
};

// PackInt4CompressedTensors
//
// Packs `qw` into the layout above. The scales are not copied: write
// qw.scales as weight_scale. Errors (InvalidArgument): `qw` fails
// ValidateQuantizedWeight (names the field and index), or options.bits > 4.
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
