#include "core/model/llama_config.h"

#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

using Json = nlohmann::json;

// Sizes above this are refused, so that products of two of them fit easily
// in 64 bits and a corrupt config cannot ask for absurd allocations.
constexpr int64_t kMaxDim = int64_t{1} << 24;

constexpr char kLlamaModelType[] = "llama";
constexpr char kLlamaArchitecture[] = "LlamaForCausalLM";

// A JSON value for an error message, cut to a readable length.
std::string Shown(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

absl::Status Invalid(absl::string_view source, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

// The value under `key`, or nullptr when absent or null (transformers writes
// null for unset optional fields).
const Json* Find(const Json& object, absl::string_view key) {
  auto it = object.find(std::string(key));
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// ReadPositiveInt: a required (no default) or optional positive integer field.
absl::StatusOr<int64_t> ReadPositiveInt(const Json& object, absl::string_view key,
                                        absl::string_view source,
                                        std::optional<int64_t> fallback = std::nullopt) {
  const Json* value = Find(object, key);
  if (value == nullptr) {
    if (fallback.has_value()) return *fallback;
    return Invalid(source, absl::StrCat("missing field \"", key, "\""));
  }
  const bool fits =
      value->is_number_integer() &&
      (!value->is_number_unsigned() || value->get<uint64_t>() <= static_cast<uint64_t>(kMaxDim));
  if (!fits || value->get<int64_t>() <= 0) {
    return Invalid(source, absl::StrCat("field \"", key, "\" must be a positive integer, got ",
                                        Shown(*value)));
  }
  return value->get<int64_t>();
}

absl::StatusOr<double> ReadNumber(const Json& object, absl::string_view key,
                                  absl::string_view source, double fallback) {
  const Json* value = Find(object, key);
  if (value == nullptr) return fallback;
  if (!value->is_number()) {
    return Invalid(source,
                   absl::StrCat("field \"", key, "\" must be a number, got ", Shown(*value)));
  }
  return value->get<double>();
}

absl::StatusOr<bool> ReadBool(const Json& object, absl::string_view key, absl::string_view source,
                              bool fallback) {
  const Json* value = Find(object, key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) {
    return Invalid(source,
                   absl::StrCat("field \"", key, "\" must be true or false, got ", Shown(*value)));
  }
  return value->get<bool>();
}

absl::StatusOr<std::string> ReadString(const Json& object, absl::string_view key,
                                       absl::string_view source, std::string fallback) {
  const Json* value = Find(object, key);
  if (value == nullptr) return fallback;
  if (!value->is_string()) {
    return Invalid(source,
                   absl::StrCat("field \"", key, "\" must be a string, got ", Shown(*value)));
  }
  return value->get<std::string>();
}

// CheckArchitecture: model_type, architectures, hidden_act and the bias flags
// say whether this is a model catq can run.
absl::Status CheckArchitecture(const Json& object, absl::string_view source) {
  CATQ_ASSIGN_OR_RETURN(std::string model_type,
                        ReadString(object, "model_type", source, kLlamaModelType));
  if (model_type != kLlamaModelType) {
    return Invalid(source, absl::StrCat("model_type \"", model_type,
                                        "\" is not supported (catq runs Llama-family models: "
                                        "model_type \"llama\")"));
  }
  if (const Json* archs = Find(object, "architectures"); archs != nullptr) {
    if (!archs->is_array()) {
      return Invalid(source, absl::StrCat("field \"architectures\" must be a list of strings, got ",
                                          Shown(*archs)));
    }
    for (const Json& arch : *archs) {
      if (!arch.is_string()) {
        return Invalid(source, absl::StrCat("field \"architectures\" must be a list of strings, "
                                            "got an entry ",
                                            Shown(arch)));
      }
      if (arch.get<std::string>() != kLlamaArchitecture) {
        return Invalid(source, absl::StrCat("architecture \"", arch.get<std::string>(),
                                            "\" is not supported (catq runs Llama-family models: "
                                            "LlamaForCausalLM)"));
      }
    }
  }
  CATQ_ASSIGN_OR_RETURN(std::string act, ReadString(object, "hidden_act", source, "silu"));
  if (act != "silu") {
    return Invalid(source, absl::StrCat("hidden_act \"", act,
                                        "\" is not supported (Llama's SwiGLU MLP uses \"silu\")"));
  }
  for (absl::string_view bias : {"attention_bias", "mlp_bias"}) {
    CATQ_ASSIGN_OR_RETURN(bool has_bias, ReadBool(object, bias, source, false));
    if (has_bias) {
      return Invalid(source,
                     absl::StrCat(bias, " true is not supported (catq's Llama has no biases)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateLlamaConfig(const LlamaConfig& c, absl::string_view source) {
  const std::pair<absl::string_view, int64_t> sizes[] = {
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings},
  };
  for (const auto& [name, value] : sizes) {
    if (value <= 0 || value > kMaxDim) {
      return Invalid(source, absl::StrCat("field \"", name, "\" must be a positive integer up to ",
                                          kMaxDim, ", got ", value));
    }
  }
  if (c.hidden_size % c.num_attention_heads != 0) {
    return Invalid(
        source, absl::StrCat("hidden_size ", c.hidden_size,
                             " is not divisible by num_attention_heads ", c.num_attention_heads));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return Invalid(
        source, absl::StrCat("num_attention_heads ", c.num_attention_heads,
                             " is not divisible by num_key_value_heads ", c.num_key_value_heads));
  }
  if (c.head_dim() % 2 != 0) {
    return Invalid(source, absl::StrCat("head_dim ", c.head_dim(),
                                        " (hidden_size / num_attention_heads) is odd; RoPE "
                                        "rotates pairs of dimensions"));
  }
  if (!std::isfinite(c.rms_norm_eps) || c.rms_norm_eps <= 0) {
    return Invalid(source,
                   absl::StrCat("field \"rms_norm_eps\" must be positive, got ", c.rms_norm_eps));
  }
  if (!std::isfinite(c.rope_theta) || c.rope_theta <= 0) {
    return Invalid(source,
                   absl::StrCat("field \"rope_theta\" must be positive, got ", c.rope_theta));
  }
  return absl::OkStatus();
}

absl::StatusOr<LlamaConfig> ParseLlamaConfig(absl::string_view json_text,
                                             absl::string_view source) {
  Json object;
  try {
    object = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::exception& e) {
    return Invalid(source, absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!object.is_object()) {
    return Invalid(source, absl::StrCat("must hold a JSON object, got ", Shown(object)));
  }
  CATQ_RETURN_IF_ERROR(CheckArchitecture(object, source));

  LlamaConfig c;
  CATQ_ASSIGN_OR_RETURN(c.hidden_size, ReadPositiveInt(object, "hidden_size", source));
  CATQ_ASSIGN_OR_RETURN(c.intermediate_size, ReadPositiveInt(object, "intermediate_size", source));
  CATQ_ASSIGN_OR_RETURN(c.num_hidden_layers, ReadPositiveInt(object, "num_hidden_layers", source));
  CATQ_ASSIGN_OR_RETURN(c.num_attention_heads,
                        ReadPositiveInt(object, "num_attention_heads", source));
  CATQ_ASSIGN_OR_RETURN(c.num_key_value_heads, ReadPositiveInt(object, "num_key_value_heads",
                                                               source, c.num_attention_heads));
  CATQ_ASSIGN_OR_RETURN(c.vocab_size, ReadPositiveInt(object, "vocab_size", source));
  CATQ_ASSIGN_OR_RETURN(c.max_position_embeddings,
                        ReadPositiveInt(object, "max_position_embeddings", source, int64_t{2048}));
  CATQ_ASSIGN_OR_RETURN(c.rms_norm_eps, ReadNumber(object, "rms_norm_eps", source, 1e-6));
  CATQ_ASSIGN_OR_RETURN(c.rope_theta, ReadNumber(object, "rope_theta", source, 10000.0));
  CATQ_ASSIGN_OR_RETURN(c.tie_word_embeddings,
                        ReadBool(object, "tie_word_embeddings", source, false));
  // Newer transformers write "dtype"; older ones "torch_dtype".
  CATQ_ASSIGN_OR_RETURN(std::string dtype, ReadString(object, "dtype", source, "float32"));
  CATQ_ASSIGN_OR_RETURN(c.torch_dtype, ReadString(object, "torch_dtype", source, dtype));
  CATQ_RETURN_IF_ERROR(ValidateLlamaConfig(c, source));

  if (Find(object, "head_dim") != nullptr) {
    CATQ_ASSIGN_OR_RETURN(int64_t head_dim, ReadPositiveInt(object, "head_dim", source));
    if (head_dim != c.head_dim()) {
      return Invalid(source, absl::StrCat("head_dim ", head_dim,
                                          " differs from hidden_size / num_attention_heads = ",
                                          c.head_dim(), "; catq supports only the Llama default"));
    }
  }
  c.original = std::move(object);
  return c;
}

absl::StatusOr<LlamaConfig> LoadLlamaConfig(Env* env, const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kConfigFileName);
  CATQ_ASSIGN_OR_RETURN(std::string text, env->ReadFile(path));
  return ParseLlamaConfig(text, path);
}

nlohmann::json LlamaConfigToJsonObject(const LlamaConfig& c) {
  Json out = c.original.is_object() ? c.original : Json::object();
  if (!out.contains("model_type")) out["model_type"] = kLlamaModelType;
  if (!out.contains("architectures")) out["architectures"] = Json::array({kLlamaArchitecture});
  out["hidden_size"] = c.hidden_size;
  out["intermediate_size"] = c.intermediate_size;
  out["num_hidden_layers"] = c.num_hidden_layers;
  out["num_attention_heads"] = c.num_attention_heads;
  out["num_key_value_heads"] = c.num_key_value_heads;
  out["rms_norm_eps"] = c.rms_norm_eps;
  out["rope_theta"] = c.rope_theta;
  out["vocab_size"] = c.vocab_size;
  out["tie_word_embeddings"] = c.tie_word_embeddings;
  out["max_position_embeddings"] = c.max_position_embeddings;
  if (out.contains("dtype")) out["dtype"] = c.torch_dtype;
  out["torch_dtype"] = c.torch_dtype;
  return out;
}

std::string LlamaConfigToJson(const LlamaConfig& config) {
  return LlamaConfigToJsonObject(config).dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace catq
