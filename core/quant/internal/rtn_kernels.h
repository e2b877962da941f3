// File: core/quant/internal/rtn_kernels.h
//
// The row kernels behind QuantizeRtn and QuantizeRtnPackInt4: one output row
// at a time, each (row, group) gets its scale (and zero point) and its levels
// on the grids of rtn.h, exactly as rtn_ref.cc computes them. Two sets:
//
//   portable  plain C++ on the grid.h helpers, any CPU;
//   avx2      8 floats per instruction (rtn_kernels_avx2.cc), chosen at run
//             time when the CPU has AVX2; IEEE division (vdivps) and
//             round-half-even (vroundps), so every level, scale and zero
//             point is the same bits as the reference.
//
//   const quant_internal::RtnKernels& kernels = quant_internal::FastestRtnKernels();
//   if (!kernels.quantize_f32(row, spec, q_row, scales_row, zeros_row)) { /* NaN or Inf */ }
//   kernels.pack_int4(q_row, spec.cols, words_row);
//
// The *WithKernels functions are QuantizeRtn and QuantizeRtnPackInt4 on a
// given set, so tests can hold each set to the reference.
//
// Not a public API. Thread-safety: pure functions; concurrent calls are safe.
#ifndef CATQ_CORE_QUANT_INTERNAL_RTN_KERNELS_H_
#define CATQ_CORE_QUANT_INTERNAL_RTN_KERNELS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/math/eigen_types.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/rtn.h"
#include "core/quant/rtn_packed_int4.h"
#include "core/quant/weight_quant_options.h"

namespace catq::quant_internal {

// What every row of one call shares.
struct RtnRowSpec {
  int64_t cols = 0;
  int group_size = kPerChannelGroupSize;
  int bits = 4;
  bool symmetric = true;
  ScaleRounding round_scale = nullptr;
};

// Quantizes one row of spec.cols values: writes spec.cols signed levels to
// `q`, NumGroups(cols, group_size) scales to `scales` and, when asymmetric,
// as many signed zero points to `zeros`. Returns false when the row holds a
// NaN or an Inf; the outputs are then unspecified and the caller names the
// element. bf16 rows are raw bfloat16 bit patterns (the upper half of a float).
using QuantizeRowF32Fn = bool (*)(const float* row, const RtnRowSpec& spec, int8_t* q,
                                  float* scales, int8_t* zeros);
using QuantizeRowBf16Fn = bool (*)(const uint16_t* row, const RtnRowSpec& spec, int8_t* q,
                                   float* scales, int8_t* zeros);

// Quantizes one row as above (bits <= 4) and writes its levels packed:
// WordsFor(cols) words of the compressed-tensors layout (as PackRowInt4Fn).
// `scratch` holds cols bytes the kernel may use.
using QuantizePackRowF32Fn = bool (*)(const float* row, const RtnRowSpec& spec, int8_t* scratch,
                                      uint32_t* words, float* scales, int8_t* zeros);
using QuantizePackRowBf16Fn = bool (*)(const uint16_t* row, const RtnRowSpec& spec, int8_t* scratch,
                                       uint32_t* words, float* scales, int8_t* zeros);

// Packs `cols` levels in [-8, 7] into WordsFor(cols) words of the
// compressed-tensors layout: nibble q + 8, lowest nibble first, padding 8.
using PackRowInt4Fn = void (*)(const int8_t* q, int64_t cols, uint32_t* words);

// True when every one of the `n` levels lies in [lo, hi].
using LevelsWithinFn = bool (*)(const int8_t* levels, int64_t n, int lo, int hi);

struct RtnKernels {
  const char* name;
  QuantizeRowF32Fn quantize_f32;
  QuantizeRowBf16Fn quantize_bf16;
  QuantizePackRowF32Fn quantize_pack_f32;
  QuantizePackRowBf16Fn quantize_pack_bf16;
  PackRowInt4Fn pack_int4;
  LevelsWithinFn levels_within;
};

const RtnKernels& PortableRtnKernels();

// The AVX2 set, or null when this build is not for x86-64 or the CPU lacks
// AVX2 (checked with __builtin_cpu_supports).
const RtnKernels* Avx2RtnKernels();

// The AVX2 set where the CPU has it, else the portable one.
const RtnKernels& FastestRtnKernels();

// PackZeroPointsInt4
//
// weight_zero_point of the compressed-tensors layout: signed zero points
// [rows, groups] into WordsFor(rows) x groups words, packed along the rows
// (nibble r % 8 of word [r / 8, g] holds zero + 8), padding nibbles 8.
// REQUIRES: every zero point in [-8, 7].
void PackZeroPointsInt4(const int8_t* zeros, int64_t rows, int64_t groups, uint32_t* words);

// QuantizeRtn (rtn.h) on `kernels`.
absl::StatusOr<QuantizedWeight> QuantizeRtnWithKernels(const RtnKernels& kernels,
                                                       const Eigen::Ref<const RowMatrixXf>& w,
                                                       const WeightQuantOptions& options,
                                                       ScaleRounding round_scale);

// QuantizeRtnPackInt4 and QuantizeRtnPackInt4FromBf16 (rtn_packed_int4.h) on
// `kernels`.
absl::StatusOr<RtnPackedInt4> QuantizeRtnPackInt4WithKernels(const RtnKernels& kernels,
                                                             const Eigen::Ref<const RowMatrixXf>& w,
                                                             const WeightQuantOptions& options,
                                                             ScaleRounding round_scale);
absl::StatusOr<RtnPackedInt4> QuantizeRtnPackInt4FromBf16WithKernels(
    const RtnKernels& kernels, absl::Span<const uint16_t> w_bf16, int64_t rows, int64_t cols,
    const WeightQuantOptions& options, ScaleRounding round_scale);

}  // namespace catq::quant_internal

#endif  // CATQ_CORE_QUANT_INTERNAL_RTN_KERNELS_H_
