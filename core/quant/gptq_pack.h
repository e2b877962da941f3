// File: core/quant/gptq_pack.h
//
// The GPTQ int4 layout (AutoGPTQ / exllama "v1" checkpoints), written by the
// separate GPTQ export for recipes with no online transform (architecture.md
// section 4). Pack and Unpack sit side by side; Unpack(Pack(x)) == x exactly.
//
//   CATQ_ASSIGN_OR_RETURN(QuantizedWeight qw, QuantizeRtn(w, options));
//   CATQ_ASSIGN_OR_RETURN(GptqInt4 gptq, PackInt4Gptq(qw));
//   // write <m>.qweight, <m>.qzeros, <m>.scales (as F16), <m>.g_idx
//   CATQ_ASSIGN_OR_RETURN(QuantizedWeight back, UnpackInt4Gptq(gptq, options));
//
// Layout, for a weight [out, in] with signed levels q and zero points zero
// (0 when symmetric), all 4-bit fields unsigned:
//
//   qweight  I32 [ceil(in/8), out]. Word [i/8, o] holds input elements
//            8*(i/8) .. 8*(i/8)+7 of output column o; element i sits at bits
//            4*(i%8), lowest nibble first, as q_u = q + 8. Padding nibbles
//            past `in` hold 8. (The transpose of compressed-tensors'
//            weight_packed when in is a multiple of 8.)
//   qzeros   I32 [groups, ceil(out/8)]. Word [g, o/8] holds the zero point of
//            output o for group g at bits 4*(o%8), stored with the v1
//            minus-one convention: nibble = zero_u - 1, zero_u = zero + 8.
//            Symmetric 4-bit weights have zero_u = 8, stored 7: words
//            0x77777777. Padding nibbles past `out` hold 7.
//   scales   [groups, out] floats (the export writes F16): QuantizedWeight
//            scales transposed.
//   g_idx    I32 [in], g_idx[i] = i / group_size (0 per channel). Activation
//            order (desc_act, a permuted g_idx) is not supported.
//
//   dequantized weight[o, i] = (q_u - (stored_zero + 1)) * scale = (q - zero) * scale
//
// v1 cannot store zero_u = 0 (its stored nibble would be -1, which wraps to
// 15 and reads back as 16): PackInt4Gptq rejects a zero point of -8 (4-bit
// asymmetric groups whose minimum is near 0), and UnpackInt4Gptq rejects a
// stored 15. Sub-4-bit grids (bits 2, 3) use the same 4-bit container; a
// loader reads them as 4-bit weights (write bits: 4 in its config).
//
// Thread-safety: pure functions; concurrent calls are safe.
#ifndef CATQ_CORE_QUANT_GPTQ_PACK_H_
#define CATQ_CORE_QUANT_GPTQ_PACK_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/weight_quant_options.h"

namespace catq {

struct GptqInt4 {
  int64_t rows = 0;              // out
  int64_t cols = 0;              // in
  int64_t groups = 0;            // scales per output
  std::vector<int32_t> qweight;  // [ceil(cols/8), rows] row-major
  std::vector<int32_t> qzeros;   // [groups, ceil(rows/8)] row-major
  std::vector<int32_t> g_idx;    // [cols]
  std::vector<float> scales;     // [groups, rows] row-major
};

// PackInt4Gptq
//
// Packs `qw` into the layout above. Errors (InvalidArgument): `qw` fails
// ValidateQuantizedWeight (names the field and index), options.bits > 4, or a
// zero point of -8, which v1 cannot store (names the row and group).
absl::StatusOr<GptqInt4> PackInt4Gptq(const QuantizedWeight& qw);

// UnpackInt4Gptq
//
// The QuantizedWeight that `gptq` holds under `options`. Errors:
// InvalidArgument for invalid options or bits > 4, a groups count that
// disagrees with options.group_size, an array of the wrong size (names the
// array, expected vs got), a g_idx entry other than i / group_size (names the
// index), or a negative or non-finite scale; DataLoss for a padding nibble
// other than 8 (qweight) or 7 (qzeros), a stored zero of 15 (v1 underflow), a
// symmetric zero other than 8, or a level outside `bits` signed bits.
absl::StatusOr<QuantizedWeight> UnpackInt4Gptq(const GptqInt4& gptq,
                                               const WeightQuantOptions& options);

}  // namespace catq

#endif  // CATQ_CORE_QUANT_GPTQ_PACK_H_
