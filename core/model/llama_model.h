// File: core/model/llama_model.h
//
// LlamaModel: a Hugging Face style Llama model directory (config.json plus
// model.safetensors, or shards with model.safetensors.index.json), opened and
// checked against its config, so that later code can take any weight by name
// without checking again.
//
//   CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(dir));
//   CATQ_ASSIGN_OR_RETURN(RowMatrixXf w, model.LinearWeight(0, LinearKind::kQProj));
//   CATQ_ASSIGN_OR_RETURN(std::vector<float> gain,
//                         model.GetFloat(NormWeightName(0, NormKind::kInputLayernorm)));
//
// What Open checks: config.json parses (see llama_config.h); every tensor of
// ExpectedLlamaTensors exists with exactly the expected shape and a float dtype
// (F32, F16 or BF16), except that linears may be absent where
// LlamaModelOptions allows it. lm_head.weight is required unless
// tie_word_embeddings; when tied and present anyway, its shape is checked too.
// Other tensors in the files are ignored. Values are checked (finite) when
// read, by GetFloat.
//
// Thread-safety: immutable after Open; all methods are thread-safe. Views
// returned by Get are valid while the LlamaModel lives.
#ifndef CATQ_CORE_MODEL_LLAMA_MODEL_H_
#define CATQ_CORE_MODEL_LLAMA_MODEL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"
#include "core/math/eigen_types.h"
#include "core/model/llama_config.h"
#include "core/model/llama_weights.h"
#include "core/tensor/safetensors_dir.h"

namespace catq {

struct LlamaModelOptions {
  // require_linear_weights: every linear's `<m>.weight` must be present.
  // Default true. false: a linear may lack it, because a quantized output
  // stores `<m>.weight_packed` and its companions instead (core/eval's
  // QuantizedModel checks and reads those); a `<m>.weight` that is present is
  // still checked. Embeddings, norms and lm_head are required either way.
  bool require_linear_weights = true;
};

class LlamaModel {
 public:
  // LlamaModel::Open
  //
  // Opens `dir` and validates it as above. Errors: NotFound when config.json or
  // the weights are missing; InvalidArgument naming the tensor with expected
  // and actual shape or dtype, e.g. "model.layers.0.self_attn.k_proj.weight:
  // expected shape [32, 64], got [64, 64]"; the config's and the safetensors
  // reader's own errors otherwise.
  static absl::StatusOr<LlamaModel> Open(const std::string& dir, Env* env = Env::Default(),
                                         const LlamaModelOptions& options = {});

  const std::string& dir() const { return dir_; }
  const LlamaConfig& config() const { return config_; }
  const SafetensorsDir& tensors() const { return tensors_; }

  // lm_head_name: "lm_head.weight", or "model.embed_tokens.weight" when the
  // config ties embeddings and the checkpoint stores no lm_head.
  const std::string& lm_head_name() const { return lm_head_name_; }

  // Get: the stored tensor, in its own dtype. NotFound for an unknown name.
  absl::StatusOr<TensorView> Get(absl::string_view name) const;

  // GetFloat: the tensor converted to float32 (a copy), row-major. DataLoss,
  // naming the tensor and the flat index, when a value is NaN or infinite.
  absl::StatusOr<std::vector<float>> GetFloat(absl::string_view name) const;

  // GetMatrix: a 2-D tensor as a float32 row-major matrix (a copy).
  // InvalidArgument when the tensor is not 2-D.
  absl::StatusOr<RowMatrixXf> GetMatrix(absl::string_view name) const;

  // LinearWeight: GetMatrix(LinearWeightName(layer, kind)), [out, in].
  // InvalidArgument when `layer` is out of range.
  absl::StatusOr<RowMatrixXf> LinearWeight(int64_t layer, LinearKind kind) const;

 private:
  LlamaModel(std::string dir, LlamaConfig config, SafetensorsDir tensors, std::string lm_head_name)
      : dir_(std::move(dir)),
        config_(std::move(config)),
        tensors_(std::move(tensors)),
        lm_head_name_(std::move(lm_head_name)) {}

  std::string dir_;
  LlamaConfig config_;
  SafetensorsDir tensors_;
  std::string lm_head_name_;
};

}  // namespace catq

#endif  // CATQ_CORE_MODEL_LLAMA_MODEL_H_
