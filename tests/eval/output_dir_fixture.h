// File: tests/eval/output_dir_fixture.h
//
// Builds catq output directories in memory for the eval tests, so that a
// test can corrupt one tensor or one config field before writing it:
//
//   absl::StatusOr<OutputDir> out = MakeTransformedOutput(model, {});
//   out->SetFloats("model.layers.0.catq.attn_in.blocks", {3, 20, 20}, values);
//   ASSERT_OK(out->Write(dir));
//   QuantizedModel::Open(dir) ...
//
// MakeTransformedOutput writes what an online-transform method writes: per
// layer and site a random well-conditioned block-diagonal B (blocks of
// `block_size`, a smaller tail where it does not divide d) and, with
// `hadamard`, the mixing M of MixingMatrix::Create (the FWHT at d = 64, M =
// H_4 (x) Q_43 with a stored rot_q at d = 172), T = M B; norm gains folded into
// the weights reading attn_in and mlp_in, those norms stored as ones; every
// linear stored as W T^-1, in float (function preserving up to float
// rounding) or packed by RTN; config.json = the model's config plus
// BuildQuantizationConfig's quantization_config.
//
// Thread-safety: pure functions over the caller's objects.
#ifndef CATQ_TESTS_EVAL_OUTPUT_DIR_FIXTURE_H_
#define CATQ_TESTS_EVAL_OUTPUT_DIR_FIXTURE_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/cat/site_transform.h"
#include "core/io/env.h"
#include "core/model/llama_model.h"
#include "core/output/output_names.h"
#include "core/output/packed_linear.h"
#include "core/output/quantization_config.h"
#include "core/tensor/float_encoding.h"
#include "core/tensor/safetensors_writer.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace catq::testing {

struct StoredTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string bytes;  // Little-endian, row-major.
};

// An output directory in memory: config.json and the tensors of one shard.
struct OutputDir {
  nlohmann::json config;
  std::map<std::string, StoredTensor> tensors;

  void SetFloats(const std::string& name, std::vector<int64_t> shape,
                 const std::vector<float>& values) {
    tensors[name] = {
        DType::kF32, std::move(shape),
        std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float))};
  }
  // Floats: the values of an F32 tensor.
  std::vector<float> Floats(const std::string& name) const {
    const std::string& bytes = tensors.at(name).bytes;
    std::vector<float> values(bytes.size() / sizeof(float));
    std::memcpy(values.data(), bytes.data(), bytes.size());
    return values;
  }
  nlohmann::json& Site(const std::string& key) {
    return config["quantization_config"]["catq"]["sites"][key];
  }

  // Write: config.json and model.safetensors into `dir` (created). Tensors go
  // by decreasing element size, so each is aligned for TensorView::As.
  absl::Status Write(const std::string& dir) const {
    Env* env = Env::Default();
    CATQ_RETURN_IF_ERROR(env->CreateDirs(dir));
    std::vector<const std::pair<const std::string, StoredTensor>*> order;
    for (const auto& entry : tensors) order.push_back(&entry);
    std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
      return DTypeSize(a->second.dtype) > DTypeSize(b->second.dtype);
    });
    std::vector<TensorSpec> specs;
    for (const auto* entry : order) {
      specs.push_back({entry->first, entry->second.dtype, entry->second.shape});
    }
    CATQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                          SafetensorsWriter::Create(env, dir + "/model.safetensors", specs));
    for (const auto* entry : order) CATQ_RETURN_IF_ERROR(writer->Append(entry->second.bytes));
    CATQ_RETURN_IF_ERROR(writer->Finish());
    return WriteFileAtomically(env, dir + "/config.json", config.dump(2));
  }
};

struct TransformedOutputOptions {
  int64_t block_size = 20;
  bool hadamard = true;
  uint64_t seed = 7;
  // 16: weight-only. Written as the config's input_activations.
  int activation_bits = 16;
  // Pack W T^-1 with RTN (4 bits, this group size) instead of storing floats.
  bool pack_linears = false;
  int group_size = 32;
};

namespace fixture_internal {

// B_b = I + 0.3 G / sqrt(k), G standard normal: well conditioned, far from
// symmetric (so a transposed block is a different transform).
inline std::vector<Eigen::MatrixXd> RandomBlocks(int64_t dim, int64_t k, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal;
  std::vector<Eigen::MatrixXd> blocks;
  for (int64_t begin = 0; begin < dim; begin += k) {
    const int64_t n = std::min(k, dim - begin);
    Eigen::MatrixXd b = Eigen::MatrixXd::Identity(n, n);
    for (int64_t i = 0; i < n * n; ++i) b.data()[i] += 0.3 * normal(gen) / std::sqrt(double(k));
    blocks.push_back(std::move(b));
  }
  return blocks;
}

inline void StoreTransform(OutputDir& out, int64_t layer, Site site, const SiteTransform& t) {
  const OnlineTransformNames names =
      OnlineTransformNamesFor(static_cast<int>(layer), SiteName(site));
  const SiteTransformTensors tensors = t.ExportTensors();
  if (tensors.blocks) out.SetFloats(names.blocks, tensors.blocks->shape, tensors.blocks->values);
  if (tensors.blocks_tail) {
    out.SetFloats(names.blocks_tail, tensors.blocks_tail->shape, tensors.blocks_tail->values);
  }
  if (tensors.rot_q) out.SetFloats(names.rot_q, tensors.rot_q->shape, tensors.rot_q->values);
}

inline absl::Status StoreLinear(OutputDir& out, int64_t layer, LinearKind kind,
                                const RowMatrixXf& w, const TransformedOutputOptions& options,
                                const WeightQuantOptions& grid) {
  if (!options.pack_linears) {
    out.SetFloats(LinearWeightName(layer, kind), {w.rows(), w.cols()},
                  std::vector<float>(w.data(), w.data() + w.size()));
    return absl::OkStatus();
  }
  CATQ_ASSIGN_OR_RETURN(PackedLinear packed,
                        QuantizeAndPackLinear(LinearModuleName(layer, kind), w, grid, DType::kF32));
  for (size_t i = 0; i < packed.specs.size(); ++i) {
    out.tensors[packed.specs[i].name] = {packed.specs[i].dtype, packed.specs[i].shape,
                                         packed.bytes[i]};
  }
  return absl::OkStatus();
}

inline absl::Status CopyFloat(OutputDir& out, const LlamaModel& model, const std::string& name,
                              bool as_ones) {
  CATQ_ASSIGN_OR_RETURN(TensorView view, model.Get(name));
  CATQ_ASSIGN_OR_RETURN(std::vector<float> values, model.GetFloat(name));
  if (as_ones) std::fill(values.begin(), values.end(), 1.0f);
  out.SetFloats(name, view.shape(), values);
  return absl::OkStatus();
}

}  // namespace fixture_internal

// MakeTransformedOutput: as in the file comment.
inline absl::StatusOr<OutputDir> MakeTransformedOutput(const LlamaModel& model,
                                                       const TransformedOutputOptions& options) {
  namespace fi = fixture_internal;
  const LlamaConfig& config = model.config();
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = static_cast<int>(options.block_size);
  recipe.cat_hadamard = options.hadamard;
  recipe.activation_bits = options.activation_bits;
  recipe.weights.group_size = options.pack_linears ? options.group_size : kPerChannelGroupSize;
  OutputDir out;
  std::vector<SiteRecord> records;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (Site site : kAllSites) {
      const int64_t dim = SiteDim(config, site);
      std::optional<MixingMatrix> mixing;
      if (options.hadamard) {
        MixingOptions mixing_options;
        mixing_options.seed = options.seed;
        CATQ_ASSIGN_OR_RETURN(mixing, MixingMatrix::Create(dim, mixing_options));
      }
      const uint32_t seed =
          static_cast<uint32_t>(options.seed * 131 + layer * 4 + static_cast<uint32_t>(site));
      CATQ_ASSIGN_OR_RETURN(
          SiteTransform t,
          SiteTransform::Create(dim, fi::RandomBlocks(dim, options.block_size, seed),
                                std::move(mixing)));
      fi::StoreTransform(out, layer, site, t);
      records.push_back({static_cast<int>(layer), std::string(SiteName(site)), true,
                         options.hadamard, static_cast<int>(options.block_size), false});
      const std::optional<NormKind> norm = SitePrecedingNorm(site);
      std::vector<float> gain;
      if (norm) {
        CATQ_ASSIGN_OR_RETURN(gain, model.GetFloat(NormWeightName(layer, *norm)));
        CATQ_RETURN_IF_ERROR(fi::CopyFloat(out, model, NormWeightName(layer, *norm), true));
      }
      for (LinearKind kind : SiteLinears(site)) {
        CATQ_ASSIGN_OR_RETURN(RowMatrixXf w, model.LinearWeight(layer, kind));
        if (norm) w *= Eigen::Map<const Eigen::VectorXf>(gain.data(), gain.size()).asDiagonal();
        CATQ_ASSIGN_OR_RETURN(RowMatrixXf wt, t.TransformWeight(w));
        CATQ_RETURN_IF_ERROR(fi::StoreLinear(out, layer, kind, wt, options, recipe.weights));
      }
    }
  }
  CATQ_RETURN_IF_ERROR(fi::CopyFloat(out, model, kEmbedTokensName, false));
  CATQ_RETURN_IF_ERROR(fi::CopyFloat(out, model, kFinalNormName, false));
  if (model.lm_head_name() == kLmHeadName) {
    CATQ_RETURN_IF_ERROR(fi::CopyFloat(out, model, kLmHeadName, false));
  }
  out.config = config.original;
  out.config["quantization_config"] = BuildQuantizationConfig(recipe, records, config.head_dim());
  return out;
}

}  // namespace catq::testing

#endif  // CATQ_TESTS_EVAL_OUTPUT_DIR_FIXTURE_H_
