// File: core/quant/quantized_weight.h
//
// QuantizedWeight: a weight matrix [rows = out, cols = in] on an integer grid,
// in plain (unpacked) form: one signed integer per element, one scale per
// (row, group) and, for asymmetric grids, one signed zero point per
// (row, group). Every packer (compressed_tensors_pack.h, gptq_pack.h) reads
// and writes this form, and Dequantize defines what the numbers mean:
//
//   value[r, c] = (q[r, c] - zero[r, g]) * scale[r, g],   g = group of column c
//
// with zero = 0 for symmetric grids. Signed storage: an asymmetric unsigned
// level q_u in [0, 2^b - 1] is stored as q = q_u - 2^(b-1), and its zero point
// zero_u as zero = zero_u - 2^(b-1), so both fit `bits` signed bits and the
// difference (q - zero) is unchanged.
//
//   CATQ_ASSIGN_OR_RETURN(QuantizedWeight qw, QuantizeRtn(w, options));
//   RowMatrixXf approx = Dequantize(qw);
//
// Thread-safety: a plain value type; the functions are pure.
#ifndef CATQ_CORE_QUANT_QUANTIZED_WEIGHT_H_
#define CATQ_CORE_QUANT_QUANTIZED_WEIGHT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "core/math/eigen_types.h"
#include "core/quant/weight_quant_options.h"

namespace catq {

struct QuantizedWeight {
  int64_t rows = 0;  // out
  int64_t cols = 0;  // in
  WeightQuantOptions options;
  // [rows, cols] row-major signed levels.
  std::vector<int8_t> q;
  // [rows, groups] row-major, finite and >= 0. A group whose values are all 0
  // has scale 0 (and q 0, zero 0).
  std::vector<float> scales;
  // [rows, groups] row-major signed zero points; empty when options.symmetric.
  std::vector<int8_t> zeros;

  // QuantizedWeight::groups()
  //
  // NumGroups(cols, options.group_size).
  int64_t groups() const { return NumGroups(cols, options.group_size); }
};

// ValidateQuantizedWeight
//
// OK when `qw` is self-consistent: valid options, rows and cols > 0, the
// vectors have the sizes above, every q and zero fits `bits` signed bits
// ([-2^(b-1), 2^(b-1)-1]; the symmetric quantizer itself never emits
// -2^(b-1), but other tools' checkpoints may), and every scale is finite and
// >= 0. Else InvalidArgument naming the field and the index, e.g.
// "q[3, 17] is 9, outside [-8, 7] for 4 bits".
absl::Status ValidateQuantizedWeight(const QuantizedWeight& qw);

// Dequantize
//
// The float matrix [rows, cols] the grid stands for (formula above).
// REQUIRES: ValidateQuantizedWeight(qw) is OK.
RowMatrixXf Dequantize(const QuantizedWeight& qw);

}  // namespace catq

#endif  // CATQ_CORE_QUANT_QUANTIZED_WEIGHT_H_
