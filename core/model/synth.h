// File: core/model/synth.h
//
// Synthetic Llama-shaped models of any size, with random weights and the
// outlier channels real LLMs have, for scale tests and demos. `catq synth`
// calls WriteSyntheticModel.
//
//   SynthOptions options;
//   options.preset = "7b";
//   options.dtype = DType::kBF16;
//   options.num_layers = 1;  // a one-layer slice of the 7b shape
//   CATQ_RETURN_IF_ERROR(WriteSyntheticModel(Env::Default(), options, out_dir));
//
// Presets (SynthPresetConfig):
//   tiny   hidden 64,   intermediate 172,   2 layers,  8 heads,  4 kv heads, vocab 512,
//          context 256, lm_head untied
//   small  hidden 256,  intermediate 688,   4 layers,  8 heads,  4 kv heads, vocab 2048,
//          context 1024, untied
//   1b     Llama-3.2-1B shape: hidden 2048, intermediate 8192, 16 layers, 32 heads, 8 kv
//          heads, vocab 128256, context 131072, rope_theta 500000, tied (no rope_scaling)
//   7b     Llama-2-7B shape: hidden 4096, intermediate 11008, 32 layers, 32 heads, 32 kv
//          heads, vocab 32000, context 4096, untied
//
// The weights. Tensor t (in ExpectedLlamaTensors order) draws from its own
// GaussianGenerator seeded with MixSeed(seed, t) (see gaussian.h), so the
// bytes depend only on the options, not on chunking or the machine.
//   - model.embed_tokens.weight: N(0, 1), with the columns of the outlier
//     channels multiplied by residual_outlier_scale;
//   - input_layernorm and post_attention_layernorm gains g: 1 + 0.1 N(0, 1),
//     except on the outlier channels, where g is uniform in
//     [outlier_gain_min, outlier_gain_max];
//   - q, k, v, gate and up (the readers of those norms): N(0, 1/in) with
//     column c divided by g[c] of the preceding norm of the same layer, as in
//     a trained model whose weights compensate the gains: the folded weight
//     W diag(g) is exactly N(0, 1/in);
//   - o_proj and down_proj (writers into the residual stream): N(0, 1/in)
//     times 1/sqrt(2 * num_layers) (GPT-2's residual scaling), so the stream
//     stays O(1) over depth and the outlier channels survive every layer;
//   - lm_head: N(0, 1/hidden); model.norm.weight: 1 + 0.1 N(0, 1).
// The outlier channels are one set of `outlier_channels` hidden dimensions,
// drawn from the seed and shared by all layers (as the "massive activation"
// channels of real models are). Effect: the residual stream carries them at
// about residual_outlier_scale times the typical channel, and the norm gains
// amplify them again, so attn_in and mlp_in have a few channels ~200-500x the
// typical magnitude when the gains are kept, and still ~10x after the gains
// are folded into the following weights. The channels are recorded in
// config.json under "catq_synthetic".
//
// The output: config.json (torch_dtype from `dtype`) and model.safetensors, or
// shards of at most max_shard_bytes with model.safetensors.index.json. No
// tokenizer is written: evaluate a synthetic model on token ids, not text.
// Written streaming, 1 MiB at a time: memory stays bounded by a chunk.
//
// Thread-safety: thread-safe for distinct out_dir.
#ifndef CATQ_CORE_MODEL_SYNTH_H_
#define CATQ_CORE_MODEL_SYNTH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"
#include "core/model/llama_config.h"
#include "core/tensor/dtype.h"

namespace catq {

struct SynthOptions {
  // "tiny", "small", "1b" or "7b".
  std::string preset = "tiny";
  // Stored dtype of every tensor: kF32, kF16 or kBF16. Values are drawn in
  // float32 and rounded, so a bf16 model is the f32 model of the same seed
  // rounded to bf16.
  DType dtype = DType::kF32;
  uint64_t seed = 0;
  // Decoder layers; 0 keeps the preset's.
  int64_t num_layers = 0;
  // The most bytes per shard (default 2 GiB). A model that fits one shard is
  // written as a single model.safetensors without an index.
  uint64_t max_shard_bytes = uint64_t{2} << 30;
  // Number of outlier hidden channels (0 for none); at most hidden_size.
  int64_t outlier_channels = 4;
  // Range of the RMSNorm gains on outlier channels.
  float outlier_gain_min = 20.0f;
  float outlier_gain_max = 50.0f;
  // Factor on the embedding columns of outlier channels (1: no residual outliers).
  float residual_outlier_scale = 10.0f;
};

// SynthPresetConfig: the config of a preset. InvalidArgument naming an
// unknown preset and listing the known ones.
absl::StatusOr<LlamaConfig> SynthPresetConfig(absl::string_view preset);

// SynthConfig: the config WriteSyntheticModel writes for `options`: the
// preset with num_layers and torch_dtype applied, and "catq_synthetic"
// recording preset, seed and outlier channels. InvalidArgument naming the bad
// option.
absl::StatusOr<LlamaConfig> SynthConfig(const SynthOptions& options);

// SynthOutlierChannels: the sorted outlier channels for `options` and hidden
// size `hidden`. REQUIRES: 0 <= options.outlier_channels <= hidden.
std::vector<int64_t> SynthOutlierChannels(const SynthOptions& options, int64_t hidden);

// WriteSyntheticModel: writes the model described above into `out_dir`
// (created if needed). Errors come from option validation (InvalidArgument)
// or the filesystem (e.g. ResourceExhausted on a full disk).
absl::Status WriteSyntheticModel(Env* env, const SynthOptions& options, const std::string& out_dir);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_SYNTH_H_
