// File: core/model/llama_config.h
//
// The Hugging Face `config.json` of a Llama-family model, parsed and checked.
// catq runs and quantizes `LlamaForCausalLM` (model_type "llama"): RMSNorm,
// rotate-half RoPE, grouped-query attention, SwiGLU MLP, no biases. A config
// of another architecture is refused with a message naming it.
//
//   CATQ_ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(env, model_dir));
//   int64_t kv = config.kv_dim();  // num_key_value_heads * head_dim()
//   nlohmann::json out = LlamaConfigToJsonObject(config);
//   out["quantization_config"] = ...;  // the input config plus quantization_config
//
// Defaults follow transformers' LlamaConfig where a field is absent:
// num_key_value_heads = num_attention_heads, rope_theta = 10000,
// rms_norm_eps = 1e-6, tie_word_embeddings = false,
// max_position_embeddings = 2048, torch_dtype = "float32".
//
// Errors are InvalidArgument and name the source ("config.json") and the field:
//   config.json: missing field "hidden_size"
//   config.json: field "num_attention_heads" must be a positive integer, got -8
//   config.json: hidden_size 100 is not divisible by num_attention_heads 8
//
// Thread-safety: LlamaConfig is a plain value; the functions are thread-safe.
#ifndef CATQ_CORE_MODEL_LLAMA_CONFIG_H_
#define CATQ_CORE_MODEL_LLAMA_CONFIG_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"

namespace catq {

// The file name of a model directory's config.
inline constexpr char kConfigFileName[] = "config.json";

struct LlamaConfig {
  int64_t hidden_size = 0;        // d, the width of the residual stream.
  int64_t intermediate_size = 0;  // The MLP width (gate/up outputs, down input).
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // Grouped-query attention: divides num_attention_heads.
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t vocab_size = 0;
  bool tie_word_embeddings = false;  // lm_head shares model.embed_tokens.weight.
  int64_t max_position_embeddings = 2048;
  std::string torch_dtype = "float32";  // "float32", "float16" or "bfloat16".

  // The whole JSON object the config was parsed from, unknown keys included
  // (bos_token_id, rope_scaling, ...). Empty (null) for a config built in code.
  // LlamaConfigToJsonObject starts from it, so an output config is "the input
  // config" with the typed fields above written over it.
  nlohmann::json original;

  // head_dim: hidden_size / num_attention_heads.
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // kv_dim: num_key_value_heads * head_dim(), the rows of k_proj and v_proj.
  int64_t kv_dim() const { return num_key_value_heads * head_dim(); }
};

// ValidateLlamaConfig
//
// Checks the typed fields: every size positive and at most 2^24, hidden_size
// divisible by num_attention_heads, num_attention_heads by num_key_value_heads,
// head_dim even (RoPE rotates pairs), rms_norm_eps and rope_theta positive and
// finite. `source` names the config in messages.
absl::Status ValidateLlamaConfig(const LlamaConfig& config,
                                 absl::string_view source = kConfigFileName);

// ParseLlamaConfig
//
// Parses config.json text. Refuses malformed JSON (with the parser's byte
// position), a missing or mistyped field, a model_type other than "llama", an
// `architectures` entry other than "LlamaForCausalLM", hidden_act other than
// "silu", attention_bias or mlp_bias true, an explicit head_dim that differs
// from hidden_size / num_attention_heads, and whatever ValidateLlamaConfig
// refuses. `source` prefixes every message (a path or "config.json").
absl::StatusOr<LlamaConfig> ParseLlamaConfig(absl::string_view json_text,
                                             absl::string_view source = kConfigFileName);

// LoadLlamaConfig
//
// Reads and parses `dir`/config.json. A missing file is NotFound; messages
// name the full path.
absl::StatusOr<LlamaConfig> LoadLlamaConfig(Env* env, const std::string& dir);

// LlamaConfigToJsonObject
//
// `config.original` (or an empty object) with every typed field written over
// it, plus model_type "llama" and architectures ["LlamaForCausalLM"] when they
// are absent. Never throws.
nlohmann::json LlamaConfigToJsonObject(const LlamaConfig& config);

// LlamaConfigToJson
//
// LlamaConfigToJsonObject as text: keys sorted, two-space indent, a final
// newline (as transformers writes config.json). Never throws: invalid UTF-8 in
// a string is replaced by U+FFFD.
std::string LlamaConfigToJson(const LlamaConfig& config);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_LLAMA_CONFIG_H_
