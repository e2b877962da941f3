#include "core/model/llama_model.h"

#include <cmath>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/tensor/dtype.h"
#include "core/tensor/finite_check.h"
#include "core/tensor/shape.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

bool IsStoredFloatDType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

// CheckTensor: `expected` exists in `tensors` with its shape and a float dtype.
absl::Status CheckTensor(const SafetensorsDir& tensors, const ExpectedTensor& expected,
                         const std::string& dir) {
  if (!tensors.Contains(expected.name)) {
    return absl::InvalidArgumentError(absl::StrCat(expected.name, ": missing from ", dir,
                                                   " (expected shape ", FormatShape(expected.shape),
                                                   ")"));
  }
  CATQ_ASSIGN_OR_RETURN(const TensorInfo* info, tensors.Info(expected.name));
  if (info->shape != expected.shape) {
    return absl::InvalidArgumentError(absl::StrCat(expected.name, ": expected shape ",
                                                   FormatShape(expected.shape), ", got ",
                                                   FormatShape(info->shape)));
  }
  if (!IsStoredFloatDType(info->dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(expected.name, ": dtype ",
                                                   DTypeName(info->dtype),
                                                   " is not a float type (F32, F16, BF16)"));
  }
  return absl::OkStatus();
}

// LinearNames: the `<m>.weight` names of every linear of every layer.
absl::flat_hash_set<std::string> LinearNames(const LlamaConfig& config) {
  absl::flat_hash_set<std::string> names;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) names.insert(LinearWeightName(layer, kind));
  }
  return names;
}

}  // namespace

absl::StatusOr<LlamaModel> LlamaModel::Open(const std::string& dir, Env* env,
                                            const LlamaModelOptions& options) {
  CATQ_ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(env, dir));
  CATQ_ASSIGN_OR_RETURN(SafetensorsDir tensors, SafetensorsDir::Open(dir, env));
  const absl::flat_hash_set<std::string> optional =
      options.require_linear_weights ? absl::flat_hash_set<std::string>() : LinearNames(config);
  for (const ExpectedTensor& tensor : ExpectedLlamaTensors(config)) {
    if (optional.contains(tensor.name) && !tensors.Contains(tensor.name)) continue;
    CATQ_RETURN_IF_ERROR(CheckTensor(tensors, tensor, dir));
  }
  std::string lm_head_name = kLmHeadName;
  if (config.tie_word_embeddings) {
    if (tensors.Contains(kLmHeadName)) {
      CATQ_RETURN_IF_ERROR(
          CheckTensor(tensors, {kLmHeadName, {config.vocab_size, config.hidden_size}}, dir));
    } else {
      lm_head_name = kEmbedTokensName;
    }
  }
  return LlamaModel(dir, std::move(config), std::move(tensors), std::move(lm_head_name));
}

absl::StatusOr<TensorView> LlamaModel::Get(absl::string_view name) const {
  return tensors_.Get(name);
}

absl::StatusOr<std::vector<float>> LlamaModel::GetFloat(absl::string_view name) const {
  CATQ_ASSIGN_OR_RETURN(TensorView view, tensors_.Get(name));
  CATQ_ASSIGN_OR_RETURN(std::vector<float> values, view.ToFloat());
  CATQ_RETURN_IF_ERROR(CheckFinite(name, values));
  return values;
}

absl::StatusOr<RowMatrixXf> LlamaModel::GetMatrix(absl::string_view name) const {
  CATQ_ASSIGN_OR_RETURN(TensorView view, tensors_.Get(name));
  if (view.shape().size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a 2-D tensor, got shape ", FormatShape(view.shape())));
  }
  RowMatrixXf matrix(view.shape()[0], view.shape()[1]);
  absl::Span<float> values(matrix.data(), static_cast<size_t>(matrix.size()));
  CATQ_RETURN_IF_ERROR(view.CopyToFloat(values));
  CATQ_RETURN_IF_ERROR(CheckFinite(name, values));
  return matrix;
}

absl::StatusOr<RowMatrixXf> LlamaModel::LinearWeight(int64_t layer, LinearKind kind) const {
  if (layer < 0 || layer >= config_.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " is out of range: ", dir_,
                                                   " has ", config_.num_hidden_layers, " layers"));
  }
  return GetMatrix(LinearWeightName(layer, kind));
}

}  // namespace catq
