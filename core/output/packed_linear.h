// File: core/output/packed_linear.h
//
// One quantized linear in the output's compressed-tensors `pack-quantized`
// layout (architecture.md section 4): weight_packed, weight_scale,
// weight_shape and, for asymmetric weights, weight_zero_point.
//
// The tensor specs follow from shapes alone (PackedLinearSpecs), so a writer
// can plan every shard before quantizing anything; QuantizeAndPackLinear then
// produces the bytes in exactly that order.
//
//   CATQ_ASSIGN_OR_RETURN(PackedLinear packed,
//                         QuantizeAndPackLinear(module, w, options, DType::kF16));
//   for (const std::string& bytes : packed.bytes) CATQ_RETURN_IF_ERROR(writer->Append(bytes));
//
// Thread-safety: pure functions.
#ifndef CATQ_CORE_OUTPUT_PACKED_LINEAR_H_
#define CATQ_CORE_OUTPUT_PACKED_LINEAR_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/math/eigen_types.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/rtn.h"
#include "core/quant/weight_quant_options.h"
#include "core/tensor/dtype.h"
#include "core/tensor/safetensors_dir.h"
#include "core/tensor/safetensors_writer.h"

namespace catq {

// OK when `options` and `scale_dtype` can be stored pack-quantized: 4 bits
// (8 per int32 word) or 8 bits (4 per word), scales in F16, BF16 or F32.
// Otherwise InvalidArgument naming the field ("weights.bits", "scale_dtype").
absl::Status CheckPackable(const WeightQuantOptions& options, DType scale_dtype);

// The specs of the tensors of linear `module` [rows, cols], in write order:
// weight_packed, weight_scale, weight_shape, then weight_zero_point when
// asymmetric. REQUIRES: CheckPackable(options, scale_dtype) is OK.
std::vector<TensorSpec> PackedLinearSpecs(absl::string_view module, int64_t rows, int64_t cols,
                                          const WeightQuantOptions& options, DType scale_dtype);

struct PackedLinear {
  std::vector<TensorSpec> specs;   // PackedLinearSpecs(...).
  std::vector<std::string> bytes;  // Little-endian contents, one per spec.
  // Weight signal-to-quantization-noise ratio of this linear, in dB:
  // 10 log10(||W||^2 / ||W - dequant(W)||^2) with the stored scales; +inf when
  // the dequantized weight is exact.
  double weight_sqnr_db = 0.0;
  // The largest |W - dequant(W)| over all elements, in units of its group's
  // step (scale); at most 0.5 up to float rounding.
  double max_error_steps = 0.0;
};

// Quantizes `w` [out, in] with RTN on `options`, scales rounded up to the
// next `scale_dtype` value before the levels are chosen (so the stored grid
// keeps every element within half a step), and packs the result. Errors
// name `module`: non-finite weights, a scale the dtype cannot hold.
absl::StatusOr<PackedLinear> QuantizeAndPackLinear(absl::string_view module,
                                                   const Eigen::Ref<const RowMatrixXf>& w,
                                                   const WeightQuantOptions& options,
                                                   DType scale_dtype);

// PackQuantizedLinear: the tensors of `qw` (quantized by any method on a
// packable grid, scales already rounded with StorageScaleRounding) with the
// error figures measured against the reference `w` it approximates.
absl::StatusOr<PackedLinear> PackQuantizedLinear(absl::string_view module,
                                                 const Eigen::Ref<const RowMatrixXf>& w,
                                                 const QuantizedWeight& qw, DType scale_dtype);

// StorageScaleRounding: rounds a scale UP to `scale_dtype` (null for F32),
// so that every level stays in range with the stored scale.
ScaleRounding StorageScaleRounding(DType scale_dtype);

// Reads linear `module` back from an output directory and unpacks it. The
// grid (`options`) comes from the output's quantization_config. Errors name
// the missing or inconsistent tensor.
absl::StatusOr<QuantizedWeight> ReadPackedLinear(const SafetensorsDir& dir,
                                                 absl::string_view module,
                                                 const WeightQuantOptions& options);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_PACKED_LINEAR_H_
