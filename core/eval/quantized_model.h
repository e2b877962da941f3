// File: core/eval/quantized_model.h
//
// QuantizedModel: a catq output directory (architecture.md section 4) opened
// for fake-quantized inference, from the shards as written: its config.json
// and quantization_config, the packed linears, the stored norms (ones where
// the gains were folded), embeddings and lm_head, and the online transform of
// every site that has one. Evaluation runs it with QuantizedWeightProvider
// (the dequantized linears), OnlineQuantizationHook (x' = T x, then the
// activation grid) and, when the config has a kv_cache_scheme, its
// KvCacheQuantizer; evaluate.h wires them.
//
//   CATQ_ASSIGN_OR_RETURN(QuantizedModel q, QuantizedModel::Open(out_dir));
//   CATQ_ASSIGN_OR_RETURN(RowMatrixXf w, q.Linear(0, LinearKind::kQProj));  // ~ W T^-1
//   const SiteTransform* t = q.OnlineTransform(0, Site::kAttnIn);           // null: none
//
// A linear may also be stored as a plain float `<m>.weight` (used as is): a
// test can store W T^-1 unquantized and check that the stored format
// preserves the model's function.
//
// Memory: the online transforms are built at Open and kept, about 2.5 x 8 x
// d x k bytes per site with blocks of size k (B in double, its LU, B in
// float); 1.8 GB for a 7B model at k = 128. Linears are read on demand.
//
// Thread-safety: immutable after Open; all methods are thread-safe.
#ifndef CATQ_CORE_EVAL_QUANTIZED_MODEL_H_
#define CATQ_CORE_EVAL_QUANTIZED_MODEL_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/site_transform.h"
#include "core/eval/kv_cache_quantizer.h"
#include "core/eval/stored_quantization.h"
#include "core/io/env.h"
#include "core/math/eigen_types.h"
#include "core/model/llama_model.h"
#include "core/model/llama_weights.h"

namespace catq {

class QuantizedModel {
 public:
  // QuantizedModel::Open
  //
  // Opens `dir` and checks, before any inference: config.json and its
  // quantization_config (stored_quantization.h); embeddings, norms and
  // lm_head as LlamaModel::Open checks them; for every linear `<m>` exactly
  // one of `<m>.weight_packed` (then weight_scale, weight_shape and, for
  // asymmetric weights, weight_zero_point with the shapes and dtypes of the
  // config's grid, and weight_shape holding [out, in]) or a float `<m>.weight`
  // of shape [out, in]; every site's online tensors against its entry in the
  // sites map (online_transform_reader.h); the K/V cache quantizer of the
  // config (KvCacheQuantizer::Create). Errors name the file or tensor:
  // NotFound for a missing config.json or weights, InvalidArgument otherwise.
  // The packed values themselves are checked when a linear is read.
  static absl::StatusOr<QuantizedModel> Open(const std::string& dir, Env* env = Env::Default());

  const std::string& dir() const { return model_.dir(); }
  const LlamaConfig& config() const { return model_.config(); }
  // model: the directory as a LlamaModel whose linears are not read from it
  // (use Linear); embeddings, norms, lm_head and tensors() are the stored ones.
  const LlamaModel& model() const { return model_; }
  const StoredQuantization& quantization() const { return quantization_; }

  // is_packed: whether linear (layer, kind) is stored packed, not as float.
  // REQUIRES: 0 <= layer < num_hidden_layers.
  bool is_packed(int64_t layer, LinearKind kind) const {
    return packed_[static_cast<size_t>(layer)][static_cast<size_t>(kind)];
  }

  // Linear: the float32 weight [out, in] the quantized model computes with:
  // the dequantized packed weight ((q - zero) * scale), or the stored float
  // weight. InvalidArgument for a layer out of range; errors of the packed
  // tensors (core/output/packed_linear.h) name the tensor.
  absl::StatusOr<RowMatrixXf> Linear(int64_t layer, LinearKind kind) const;

  // kv_cache_quantizer: what the K/V cache goes through at inference, or
  // nullptr when the cache stays float (no kv_cache_scheme).
  const KvCacheQuantizer* kv_cache_quantizer() const { return kv_cache_ ? &*kv_cache_ : nullptr; }

  // OnlineTransform: the transform T applied at the site's input, or nullptr
  // when the site has none. REQUIRES: 0 <= layer < num_hidden_layers.
  const SiteTransform* OnlineTransform(int64_t layer, Site site) const {
    const std::optional<SiteTransform>& t =
        transforms_[static_cast<size_t>(layer)][static_cast<size_t>(site)];
    return t ? &*t : nullptr;
  }

 private:
  using LayerTransforms = std::array<std::optional<SiteTransform>, kAllSites.size()>;
  using LayerPacked = std::array<bool, kAllLinearKinds.size()>;

  QuantizedModel(LlamaModel model, StoredQuantization quantization, std::vector<LayerPacked> packed,
                 std::vector<LayerTransforms> transforms, std::optional<KvCacheQuantizer> kv_cache)
      : model_(std::move(model)),
        quantization_(std::move(quantization)),
        packed_(std::move(packed)),
        transforms_(std::move(transforms)),
        kv_cache_(std::move(kv_cache)) {}

  LlamaModel model_;
  StoredQuantization quantization_;
  std::vector<LayerPacked> packed_;
  std::vector<LayerTransforms> transforms_;
  std::optional<KvCacheQuantizer> kv_cache_;
};

}  // namespace catq

#endif  // CATQ_CORE_EVAL_QUANTIZED_MODEL_H_
