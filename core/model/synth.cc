#include "core/model/synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/model/gaussian.h"
#include "core/model/llama_weights.h"
#include "core/tensor/float_encoding.h"
#include "core/tensor/sharded_writer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

constexpr size_t kChunkElements = size_t{1} << 18;  // 1 MiB of float32.
// The stream index of the outlier-channel draw, apart from every tensor's.
constexpr uint64_t kOutlierStream = ~uint64_t{0};

// How a tensor's values are drawn.
enum class Role : uint8_t {
  kEmbedding,       // N(0, 1), outlier columns scaled.
  kLayerNorm,       // Gains with outliers (input_layernorm, post_attention_layernorm).
  kFinalNorm,       // Gains, no outliers.
  kNormReader,      // Linear reading a norm's output: columns divided by its gains.
  kResidualWriter,  // o_proj, down_proj: also scaled by 1/sqrt(2 * layers).
  kLinear,          // lm_head.
};

struct Plan {
  Role role = Role::kLinear;
  uint64_t norm_stream = 0;  // kNormReader: the tensor index of the preceding norm.
};

absl::Status BadOption(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("synth: ", what));
}

absl::StatusOr<std::string> TorchDType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return std::string("float32");
    case DType::kF16:
      return std::string("float16");
    case DType::kBF16:
      return std::string("bfloat16");
    default:
      return BadOption(
          absl::StrCat("dtype ", DTypeName(dtype), " is not a float type (F32, F16, BF16)"));
  }
}

// NormGains: the gains of the norm that is tensor `stream`: 1 + 0.1 N(0, 1),
// or uniform in [min, max] on `outliers` (sorted).
std::vector<float> NormGains(const SynthOptions& options, uint64_t stream, int64_t hidden,
                             const std::vector<int64_t>& outliers) {
  GaussianGenerator gen(MixSeed(options.seed, stream));
  std::vector<float> gains(static_cast<size_t>(hidden));
  for (int64_t c = 0; c < hidden; ++c) {
    const double normal = gen.Normal();
    if (std::binary_search(outliers.begin(), outliers.end(), c)) {
      const double span = options.outlier_gain_max - options.outlier_gain_min;
      gains[static_cast<size_t>(c)] =
          static_cast<float>(options.outlier_gain_min + span * gen.Uniform());
    } else {
      gains[static_cast<size_t>(c)] = static_cast<float>(1.0 + 0.1 * normal);
    }
  }
  return gains;
}

std::map<std::string, Plan> MakePlans(const LlamaConfig& config,
                                      const std::vector<ExpectedTensor>& tensors) {
  std::map<std::string, uint64_t> index;
  for (size_t t = 0; t < tensors.size(); ++t) index[tensors[t].name] = t;
  std::map<std::string, Plan> plans;
  plans[kEmbedTokensName] = {Role::kEmbedding};
  plans[kFinalNormName] = {Role::kFinalNorm};
  plans[kLmHeadName] = {Role::kLinear};
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (NormKind norm : {NormKind::kInputLayernorm, NormKind::kPostAttentionLayernorm}) {
      plans[NormWeightName(layer, norm)] = {Role::kLayerNorm};
    }
    for (LinearKind kind : kAllLinearKinds) {
      const std::optional<NormKind> norm = SitePrecedingNorm(SiteOfLinear(kind));
      plans[LinearWeightName(layer, kind)] =
          norm.has_value() ? Plan{Role::kNormReader, index[NormWeightName(layer, *norm)]}
                           : Plan{Role::kResidualWriter};
    }
  }
  return plans;
}

// Appends `values` converted to `dtype`, little-endian.
absl::Status AppendAs(DType dtype, absl::Span<const float> values, std::string& bytes,
                      ShardedSafetensorsWriter& writer) {
  CATQ_ASSIGN_OR_RETURN(bytes, EncodeFloats(values, dtype));
  return writer.Append(bytes);
}

// WriteTensor: draws tensor `stream` chunk by chunk and appends it.
absl::Status WriteTensor(const SynthOptions& options, const LlamaConfig& config,
                         const std::vector<int64_t>& outliers, const ExpectedTensor& tensor,
                         uint64_t stream, const Plan& plan, ShardedSafetensorsWriter& writer) {
  const int64_t cols = tensor.shape.back();
  std::string bytes;
  if (plan.role == Role::kLayerNorm || plan.role == Role::kFinalNorm) {
    const std::vector<float> gains = NormGains(
        options, stream, cols, plan.role == Role::kLayerNorm ? outliers : std::vector<int64_t>{});
    return AppendAs(options.dtype, gains, bytes, writer);
  }
  // Every other tensor: N(0, stddev^2) times a per-column scale.
  double stddev = 1.0 / std::sqrt(static_cast<double>(cols));
  std::vector<float> column_scale(static_cast<size_t>(cols), 1.0f);
  if (plan.role == Role::kEmbedding) {
    stddev = 1.0;
    for (int64_t c : outliers)
      column_scale[static_cast<size_t>(c)] = options.residual_outlier_scale;
  } else if (plan.role == Role::kNormReader) {
    const std::vector<float> gains = NormGains(options, plan.norm_stream, cols, outliers);
    for (size_t c = 0; c < gains.size(); ++c) column_scale[c] = 1.0f / gains[c];
  } else if (plan.role == Role::kResidualWriter) {
    stddev /= std::sqrt(2.0 * static_cast<double>(config.num_hidden_layers));
  }
  GaussianGenerator gen(MixSeed(options.seed, stream));
  uint64_t total = 1;
  for (int64_t dim : tensor.shape) total *= static_cast<uint64_t>(dim);
  std::vector<float> chunk;
  chunk.reserve(kChunkElements);
  size_t column = 0;
  for (uint64_t done = 0; done < total;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkElements, total - done));
    chunk.resize(n);
    for (size_t i = 0; i < n; ++i) {
      chunk[i] = static_cast<float>(gen.Normal() * stddev) * column_scale[column];
      if (++column == column_scale.size()) column = 0;
    }
    CATQ_RETURN_IF_ERROR(AppendAs(options.dtype, chunk, bytes, writer));
    done += n;
  }
  return absl::OkStatus();
}

LlamaConfig Preset(int64_t hidden, int64_t intermediate, int64_t layers, int64_t heads,
                   int64_t kv_heads, int64_t vocab, int64_t context, bool tied,
                   double rope_theta = 10000.0) {
  LlamaConfig c;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.vocab_size = vocab;
  c.max_position_embeddings = context;
  c.tie_word_embeddings = tied;
  c.rope_theta = rope_theta;
  c.rms_norm_eps = 1e-5;
  return c;
}

}  // namespace

absl::StatusOr<LlamaConfig> SynthPresetConfig(absl::string_view preset) {
  if (preset == "tiny") return Preset(64, 172, 2, 8, 4, 512, 256, false);
  if (preset == "small") return Preset(256, 688, 4, 8, 4, 2048, 1024, false);
  if (preset == "1b") return Preset(2048, 8192, 16, 32, 8, 128256, 131072, true, 500000.0);
  if (preset == "7b") return Preset(4096, 11008, 32, 32, 32, 32000, 4096, false);
  return BadOption(
      absl::StrCat("unknown preset \"", preset, "\" (expected tiny, small, 1b or 7b)"));
}

std::vector<int64_t> SynthOutlierChannels(const SynthOptions& options, int64_t hidden) {
  // A partial Fisher-Yates shuffle of [0, hidden).
  std::vector<int64_t> channels(static_cast<size_t>(hidden));
  for (int64_t c = 0; c < hidden; ++c) channels[static_cast<size_t>(c)] = c;
  GaussianGenerator gen(MixSeed(options.seed, kOutlierStream));
  const auto count = static_cast<size_t>(options.outlier_channels);
  for (size_t i = 0; i < count; ++i) {
    const size_t j = i + static_cast<size_t>(gen.Below(channels.size() - i));
    std::swap(channels[i], channels[j]);
  }
  channels.resize(count);
  std::sort(channels.begin(), channels.end());
  return channels;
}

absl::StatusOr<LlamaConfig> SynthConfig(const SynthOptions& options) {
  CATQ_ASSIGN_OR_RETURN(LlamaConfig config, SynthPresetConfig(options.preset));
  CATQ_ASSIGN_OR_RETURN(config.torch_dtype, TorchDType(options.dtype));
  if (options.num_layers < 0 || options.num_layers > (int64_t{1} << 24)) {
    return BadOption(absl::StrCat("num_layers ", options.num_layers, " is out of range"));
  }
  if (options.num_layers > 0) config.num_hidden_layers = options.num_layers;
  if (options.outlier_channels < 0 || options.outlier_channels > config.hidden_size) {
    return BadOption(absl::StrCat("outlier_channels ", options.outlier_channels,
                                  " must be in [0, hidden_size ", config.hidden_size, "]"));
  }
  if (!(options.outlier_gain_min > 0) || !(options.outlier_gain_max >= options.outlier_gain_min) ||
      !std::isfinite(options.outlier_gain_max)) {
    return BadOption(absl::StrCat("outlier gains [", options.outlier_gain_min, ", ",
                                  options.outlier_gain_max, "] must be a finite positive range"));
  }
  if (!(options.residual_outlier_scale > 0) || !std::isfinite(options.residual_outlier_scale)) {
    return BadOption(absl::StrCat("residual_outlier_scale ", options.residual_outlier_scale,
                                  " must be finite and positive"));
  }
  if (options.max_shard_bytes == 0) return BadOption("max_shard_bytes must be positive");
  config.original = {{"architectures", {"LlamaForCausalLM"}},
                     {"model_type", "llama"},
                     {"hidden_act", "silu"},
                     {"bos_token_id", 1},
                     {"eos_token_id", 2},
                     {"catq_synthetic",
                      {{"preset", options.preset},
                       {"seed", options.seed},
                       {"outlier_channels", SynthOutlierChannels(options, config.hidden_size)},
                       {"outlier_gain_min", options.outlier_gain_min},
                       {"outlier_gain_max", options.outlier_gain_max},
                       {"residual_outlier_scale", options.residual_outlier_scale}}}};
  CATQ_RETURN_IF_ERROR(ValidateLlamaConfig(config, "synth"));
  return config;
}

absl::Status WriteSyntheticModel(Env* env, const SynthOptions& options,
                                 const std::string& out_dir) {
  CATQ_ASSIGN_OR_RETURN(LlamaConfig config, SynthConfig(options));
  const std::vector<int64_t> outliers = SynthOutlierChannels(options, config.hidden_size);
  const std::vector<ExpectedTensor> tensors = ExpectedLlamaTensors(config);
  const std::map<std::string, Plan> plans = MakePlans(config, tensors);
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const ExpectedTensor& tensor : tensors)
    specs.push_back({tensor.name, options.dtype, tensor.shape});

  ShardedSafetensorsWriter::Options writer_options;
  writer_options.max_shard_bytes = options.max_shard_bytes;
  writer_options.single_file_name = kSafetensorsSingleFileName;
  writer_options.metadata = {{"format", "pt"},
                             {"catq_synthetic_preset", options.preset},
                             {"catq_synthetic_seed", absl::StrCat(options.seed)}};
  CATQ_RETURN_IF_ERROR(env->CreateDirs(out_dir));
  CATQ_ASSIGN_OR_RETURN(
      std::unique_ptr<ShardedSafetensorsWriter> writer,
      ShardedSafetensorsWriter::Create(env, out_dir, std::move(specs), std::move(writer_options)));
  for (size_t t = 0; t < tensors.size(); ++t) {
    CATQ_RETURN_IF_ERROR(
        WriteTensor(options, config, outliers, tensors[t], t, plans.at(tensors[t].name), *writer));
  }
  CATQ_RETURN_IF_ERROR(writer->Finish());
  return WriteFileAtomically(env, absl::StrCat(out_dir, "/", kConfigFileName),
                             LlamaConfigToJson(config));
}

}  // namespace catq
