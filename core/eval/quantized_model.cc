#include "core/eval/quantized_model.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/eval/online_transform_reader.h"
#include "core/output/output_names.h"
#include "core/output/packed_linear.h"
#include "core/quant/quantized_weight.h"
#include "core/tensor/shape.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// The scale dtypes of the format (architecture.md section 4).
bool IsScaleDType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

// CheckSpec: `spec.name` exists with spec's shape and dtype (for the scale,
// any float dtype: the config does not record which one was written).
absl::Status CheckSpec(const SafetensorsDir& tensors, const TensorSpec& spec, bool is_scale) {
  if (!tensors.Contains(spec.name)) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": missing (expected ",
                                                   DTypeName(spec.dtype), " ",
                                                   FormatShape(spec.shape), ")"));
  }
  CATQ_ASSIGN_OR_RETURN(const TensorInfo* info, tensors.Info(spec.name));
  const bool dtype_ok = is_scale ? IsScaleDType(info->dtype) : info->dtype == spec.dtype;
  if (!dtype_ok || info->shape != spec.shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name, ": ", DTypeName(info->dtype), " ", FormatShape(info->shape), ", expected ",
        is_scale ? "F16/BF16/F32" : DTypeName(spec.dtype), " ", FormatShape(spec.shape)));
  }
  return absl::OkStatus();
}

// CheckWeightShape: `<m>.weight_shape` holds [out, in].
absl::Status CheckWeightShape(const SafetensorsDir& tensors, const std::string& name,
                              MatrixShape want) {
  CATQ_ASSIGN_OR_RETURN(TensorView view, tensors.Get(name));
  int64_t stored[2];
  std::memcpy(stored, view.bytes().data(), sizeof(stored));  // Checked I64 [2] before.
  if (stored[0] != want.rows || stored[1] != want.cols) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": holds [", stored[0], ", ", stored[1],
                                                   "], expected [", want.rows, ", ", want.cols,
                                                   "]"));
  }
  return absl::OkStatus();
}

// CheckLinear: linear (layer, kind) is stored one way, completely. Returns
// whether it is packed.
absl::StatusOr<bool> CheckLinear(const LlamaModel& model, const StoredQuantization& quantization,
                                 int64_t layer, LinearKind kind) {
  const SafetensorsDir& tensors = model.tensors();
  const std::string module = LinearModuleName(layer, kind);
  const PackedWeightNames names = PackedWeightNamesFor(module);
  const bool packed = tensors.Contains(names.packed);
  const bool plain = tensors.Contains(LinearWeightName(layer, kind));
  if (packed && plain) {
    return absl::InvalidArgumentError(absl::StrCat(
        module, ": both .weight_packed and .weight are stored in ", model.dir(), "; expected one"));
  }
  if (!packed && !plain) {
    return absl::InvalidArgumentError(absl::StrCat(names.packed, ": missing from ", model.dir(),
                                                   " (and no ", module, ".weight in its place)"));
  }
  if (plain) return false;  // LlamaModel::Open checked its shape and dtype.
  const MatrixShape shape = LinearShape(model.config(), kind);
  for (const TensorSpec& spec : PackedLinearSpecs(module, shape.rows, shape.cols,
                                                  quantization.linear(layer, kind), DType::kF32)) {
    CATQ_RETURN_IF_ERROR(CheckSpec(tensors, spec, spec.name == names.scale));
  }
  CATQ_RETURN_IF_ERROR(CheckWeightShape(tensors, names.shape, shape));
  return true;
}

}  // namespace

absl::StatusOr<QuantizedModel> QuantizedModel::Open(const std::string& dir, Env* env) {
  LlamaModelOptions options;
  options.require_linear_weights = false;
  CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(dir, env, options));
  CATQ_ASSIGN_OR_RETURN(StoredQuantization quantization,
                        ParseStoredQuantization(model.config(), absl::StrCat(dir, "/config.json")));
  const LlamaConfig& config = model.config();
  std::vector<LayerPacked> packed(static_cast<size_t>(config.num_hidden_layers));
  std::vector<LayerTransforms> transforms(static_cast<size_t>(config.num_hidden_layers));
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      CATQ_ASSIGN_OR_RETURN(packed[static_cast<size_t>(layer)][static_cast<size_t>(kind)],
                            CheckLinear(model, quantization, layer, kind));
    }
    for (Site site : kAllSites) {
      CATQ_ASSIGN_OR_RETURN(transforms[static_cast<size_t>(layer)][static_cast<size_t>(site)],
                            ReadOnlineTransform(model.tensors(), layer, site, SiteDim(config, site),
                                                quantization.site(layer, site)));
    }
  }
  std::optional<KvCacheQuantizer> kv_cache;
  if (quantization.kv_cache.bits != kFloatKvCacheBits) {
    absl::StatusOr<KvCacheQuantizer> quantizer =
        KvCacheQuantizer::Create(config.head_dim(), quantization.kv_cache);
    if (!quantizer.ok()) {
      return Prefix(absl::StrCat(dir, "/config.json: quantization_config.kv_cache_scheme"),
                    quantizer.status());
    }
    kv_cache = std::move(*quantizer);
  }
  return QuantizedModel(std::move(model), std::move(quantization), std::move(packed),
                        std::move(transforms), std::move(kv_cache));
}

absl::StatusOr<RowMatrixXf> QuantizedModel::Linear(int64_t layer, LinearKind kind) const {
  if (layer < 0 || layer >= config().num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer, " is outside [0, ", config().num_hidden_layers, ")"));
  }
  if (!is_packed(layer, kind)) return model_.LinearWeight(layer, kind);
  CATQ_ASSIGN_OR_RETURN(QuantizedWeight qw,
                        ReadPackedLinear(model_.tensors(), LinearModuleName(layer, kind),
                                         quantization_.linear(layer, kind)));
  return Dequantize(qw);
}

}  // namespace catq
