#include "core/output/packed_linear.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/output/output_names.h"
#include "core/quant/compressed_tensors_pack.h"
#include "core/quant/rtn.h"
#include "core/tensor/float_encoding.h"
#include "core/tensor/half.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// Scales are rounded UP to their storage dtype: a step slightly larger than
// amax / (2^(b-1) - 1) keeps every level in range, so the stored grid still
// holds each element within half a step (rounding to nearest could push the
// extreme elements of an asymmetric group past the clamp).
float RoundUpToF16(float v) {
  uint16_t h = FloatToHalf(v);
  if (HalfToFloat(h) < v) ++h;  // Positive finite: the next half is one bit up.
  return HalfToFloat(h);
}

float RoundUpToBF16(float v) {
  uint16_t b = FloatToBFloat16(v);
  if (BFloat16ToFloat(b) < v) ++b;
  return BFloat16ToFloat(b);
}

ScaleRounding ScaleRoundingFor(DType dtype) {
  switch (dtype) {
    case DType::kF16:
      return RoundUpToF16;
    case DType::kBF16:
      return RoundUpToBF16;
    default:
      return nullptr;
  }
}

template <typename T>
std::string BytesOf(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// Fills the error figures of `packed` from the weight and its dequantization,
// decoded one group at a time as Dequantize does (the same float values):
// a whole dequantized copy would be as large as the weight.
void MeasureError(const Eigen::Ref<const RowMatrixXf>& w, const QuantizedWeight& qw,
                  PackedLinear* packed) {
  const int64_t groups = qw.groups();
  double signal = 0.0;
  double noise = 0.0;
  double max_steps = 0.0;
  for (int64_t r = 0; r < qw.rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float scale = qw.scales[r * groups + g];
      const int zero = qw.options.symmetric ? 0 : qw.zeros[r * groups + g];
      const ColumnRange span = GroupColumns(g, qw.cols, qw.options.group_size);
      for (int64_t c = span.begin; c < span.end; ++c) {
        const double x = w(r, c);
        const double e =
            x - static_cast<double>(static_cast<float>(qw.q[r * qw.cols + c] - zero) * scale);
        signal += x * x;
        noise += e * e;
        if (scale > 0.0f) max_steps = std::max(max_steps, std::fabs(e) / scale);
      }
    }
  }
  packed->weight_sqnr_db =
      noise > 0.0 ? 10.0 * std::log10(signal / noise) : std::numeric_limits<double>::infinity();
  packed->max_error_steps = max_steps;
}

}  // namespace

absl::Status CheckPackable(const WeightQuantOptions& options, DType scale_dtype) {
  if (!IsExactPackedWidth(options.bits)) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights.bits: the pack-quantized output stores 4-, 6- or 8-bit weights; got ",
                     options.bits));
  }
  if (scale_dtype != DType::kF16 && scale_dtype != DType::kBF16 && scale_dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("scale_dtype: must be F16, BF16 or F32; got ", DTypeName(scale_dtype)));
  }
  return options.Validate();
}

std::vector<TensorSpec> PackedLinearSpecs(absl::string_view module, int64_t rows, int64_t cols,
                                          const WeightQuantOptions& options, DType scale_dtype) {
  const PackedWeightNames names = PackedWeightNamesFor(module);
  const int64_t groups = NumGroups(cols, options.group_size);
  const int field_bits = PackedFieldBits(options.bits);
  std::vector<TensorSpec> specs = {
      {names.packed, DType::kI32, {rows, PackedWordsFor(cols, field_bits)}},
      {names.scale, scale_dtype, {rows, groups}},
      {names.shape, DType::kI64, {2}},
  };
  if (!options.symmetric) {
    specs.push_back({names.zero_point, DType::kI32, {PackedWordsFor(rows, field_bits), groups}});
  }
  return specs;
}

ScaleRounding StorageScaleRounding(DType scale_dtype) { return ScaleRoundingFor(scale_dtype); }

absl::StatusOr<PackedLinear> PackQuantizedLinear(absl::string_view module,
                                                 const Eigen::Ref<const RowMatrixXf>& w,
                                                 const QuantizedWeight& qw, DType scale_dtype) {
  CATQ_RETURN_IF_ERROR(Prefix(module, CheckPackable(qw.options, scale_dtype)));
  if (qw.rows != w.rows() || qw.cols != w.cols()) {
    return absl::InvalidArgumentError(absl::StrCat(module, ": quantized weight is [", qw.rows, ", ",
                                                   qw.cols, "], the reference [", w.rows(), ", ",
                                                   w.cols(), "]"));
  }
  absl::StatusOr<CompressedTensorsPacked> ct = PackCompressedTensors(qw);
  CATQ_RETURN_IF_ERROR(Prefix(module, ct.status()));
  PackedLinear packed;
  packed.specs = PackedLinearSpecs(module, w.rows(), w.cols(), qw.options, scale_dtype);
  const std::array<int64_t, 2> shape = ct->weight_shape();
  packed.bytes.push_back(BytesOf(ct->weight_packed));
  CATQ_ASSIGN_OR_RETURN(std::string scale_bytes, EncodeFloats(qw.scales, scale_dtype));
  packed.bytes.push_back(std::move(scale_bytes));
  packed.bytes.push_back(BytesOf(std::vector<int64_t>(shape.begin(), shape.end())));
  if (!qw.options.symmetric) packed.bytes.push_back(BytesOf(ct->weight_zero_point));
  MeasureError(w, qw, &packed);
  return packed;
}

absl::StatusOr<PackedLinear> QuantizeAndPackLinear(absl::string_view module,
                                                   const Eigen::Ref<const RowMatrixXf>& w,
                                                   const WeightQuantOptions& options,
                                                   DType scale_dtype) {
  CATQ_RETURN_IF_ERROR(Prefix(module, CheckPackable(options, scale_dtype)));
  absl::StatusOr<QuantizedWeight> qw = QuantizeRtn(w, options, ScaleRoundingFor(scale_dtype));
  CATQ_RETURN_IF_ERROR(Prefix(module, qw.status()));
  return PackQuantizedLinear(module, w, *qw, scale_dtype);
}

namespace {

// Copies an integer tensor of dtype `want` after checking its shape.
template <typename T>
absl::StatusOr<std::vector<T>> ReadIntTensor(const SafetensorsDir& dir, const std::string& name,
                                             const std::vector<int64_t>& shape) {
  CATQ_ASSIGN_OR_RETURN(TensorView view, dir.Get(name));
  if (view.shape() != shape) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": shape [", absl::StrJoin(view.shape(), ", "), "], expected [",
                     absl::StrJoin(shape, ", "), "]"));
  }
  return view.CopyAs<T>();
}

}  // namespace

absl::StatusOr<QuantizedWeight> ReadPackedLinear(const SafetensorsDir& dir,
                                                 absl::string_view module,
                                                 const WeightQuantOptions& options) {
  const PackedWeightNames names = PackedWeightNamesFor(module);
  CATQ_ASSIGN_OR_RETURN(std::vector<int64_t> shape, ReadIntTensor<int64_t>(dir, names.shape, {2}));
  const int64_t rows = shape[0];
  const int64_t cols = shape[1];
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(names.shape, ": [", rows, ", ", cols, "] must be positive"));
  }
  const int64_t groups = NumGroups(cols, options.group_size);
  const int field_bits = PackedFieldBits(options.bits);
  if (field_bits == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(module, ": weights.bits ", options.bits, " has no pack-quantized field"));
  }
  CompressedTensorsPacked packed;
  packed.rows = rows;
  packed.cols = cols;
  packed.groups = groups;
  CATQ_ASSIGN_OR_RETURN(
      packed.weight_packed,
      ReadIntTensor<int32_t>(dir, names.packed, {rows, PackedWordsFor(cols, field_bits)}));
  if (!options.symmetric) {
    CATQ_ASSIGN_OR_RETURN(
        packed.weight_zero_point,
        ReadIntTensor<int32_t>(dir, names.zero_point, {PackedWordsFor(rows, field_bits), groups}));
  }
  CATQ_ASSIGN_OR_RETURN(TensorView scale_view, dir.Get(names.scale));
  if (scale_view.shape() != std::vector<int64_t>{rows, groups}) {
    return absl::InvalidArgumentError(absl::StrCat(names.scale, ": shape [",
                                                   absl::StrJoin(scale_view.shape(), ", "),
                                                   "], expected [", rows, ", ", groups, "]"));
  }
  CATQ_ASSIGN_OR_RETURN(std::vector<float> scales, scale_view.ToFloat());
  absl::StatusOr<QuantizedWeight> qw = UnpackCompressedTensors(packed, scales, options);
  CATQ_RETURN_IF_ERROR(Prefix(module, qw.status()));
  return qw;
}

}  // namespace catq
