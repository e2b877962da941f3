#include "core/model/llama2c_import.h"

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/model/llama2c_format.h"
#include "core/model/llama_config.h"
#include "core/model/llama_weights.h"
#include "core/model/rope_permutation.h"
#include "core/tensor/sharded_writer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;

// Where one output tensor comes from: rows of `section`'s slice for `layer`,
// reordered for rotate-half RoPE when permute_heads > 0.
struct Source {
  const Llama2cSection* section = nullptr;
  int64_t layer = 0;
  int64_t rows = 1;
  int64_t cols = 0;
  int64_t permute_heads = 0;
  int64_t head_dim = 0;
};

std::map<std::string, Source> SourceMap(const Llama2cHeader& h, const Llama2cLayout& l) {
  const int64_t d = h.dim;
  auto rows = [](const Llama2cSection& section, int64_t layer, int64_t rows, int64_t cols) {
    return Source{.section = &section, .layer = layer, .rows = rows, .cols = cols};
  };
  auto rope = [&h](const Llama2cSection& section, int64_t layer, int64_t heads) {
    return Source{.section = &section,
                  .layer = layer,
                  .rows = heads * h.head_dim(),
                  .cols = h.dim,
                  .permute_heads = heads,
                  .head_dim = h.head_dim()};
  };
  std::map<std::string, Source> map;
  map[kEmbedTokensName] = rows(l.token_embedding, 0, h.vocab_size, d);
  for (int64_t i = 0; i < h.n_layers; ++i) {
    map[NormWeightName(i, NormKind::kInputLayernorm)] = rows(l.rms_att, i, 1, d);
    map[LinearWeightName(i, LinearKind::kQProj)] = rope(l.wq, i, h.n_heads);
    map[LinearWeightName(i, LinearKind::kKProj)] = rope(l.wk, i, h.n_kv_heads);
    map[LinearWeightName(i, LinearKind::kVProj)] = rows(l.wv, i, h.kv_dim(), d);
    map[LinearWeightName(i, LinearKind::kOProj)] = rows(l.wo, i, d, d);
    map[NormWeightName(i, NormKind::kPostAttentionLayernorm)] = rows(l.rms_ffn, i, 1, d);
    map[LinearWeightName(i, LinearKind::kGateProj)] = rows(l.w1, i, h.hidden_dim, d);
    map[LinearWeightName(i, LinearKind::kUpProj)] = rows(l.w3, i, h.hidden_dim, d);
    map[LinearWeightName(i, LinearKind::kDownProj)] = rows(l.w2, i, d, h.hidden_dim);
  }
  map[kFinalNormName] = rows(l.rms_final, 0, 1, d);
  if (!h.shared_classifier) map[kLmHeadName] = rows(l.wcls, 0, h.vocab_size, d);
  return map;
}

LlamaConfig ConfigFor(const Llama2cHeader& h) {
  LlamaConfig c;
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_hidden_layers = h.n_layers;
  c.num_attention_heads = h.n_heads;
  c.num_key_value_heads = h.n_kv_heads;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.vocab_size = h.vocab_size;
  c.tie_word_embeddings = h.shared_classifier;
  c.max_position_embeddings = h.seq_len;
  c.torch_dtype = "float32";
  c.original = {{"architectures", {"LlamaForCausalLM"}},
                {"model_type", "llama"},
                {"hidden_act", "silu"},
                {"bos_token_id", 1},
                {"eos_token_id", 2},
                {"attention_bias", false},
                {"mlp_bias", false}};
  return c;
}

// StreamTensor: appends the rows of `source` from the mapped checkpoint to
// `writer` in chunks of about kChunkBytes, checking every value is finite.
absl::Status StreamTensor(absl::string_view file, absl::string_view file_name,
                          const std::string& tensor_name, const Source& source,
                          ShardedSafetensorsWriter& writer, std::string& chunk) {
  const uint64_t base = source.section->LayerOffset(source.layer);
  const uint64_t row_bytes = static_cast<uint64_t>(source.cols) * sizeof(float);
  chunk.clear();
  for (int64_t r = 0; r < source.rows; ++r) {
    const int64_t from = source.permute_heads > 0 ? RotateHalfSourceRow(r, source.head_dim) : r;
    const uint64_t offset = base + static_cast<uint64_t>(from) * row_bytes;
    for (uint64_t at = offset; at < offset + row_bytes; at += sizeof(float)) {
      float value;
      std::memcpy(&value, file.data() + at, sizeof(value));
      if (!std::isfinite(value)) {
        return absl::DataLossError(absl::StrCat(file_name, ": ", source.section->name, " (for ",
                                                tensor_name, ") holds ", value, " at byte offset ",
                                                at));
      }
    }
    chunk.append(file.data() + offset, row_bytes);
    if (chunk.size() >= kChunkBytes) {
      CATQ_RETURN_IF_ERROR(writer.Append(chunk));
      chunk.clear();
    }
  }
  if (!chunk.empty()) CATQ_RETURN_IF_ERROR(writer.Append(chunk));
  return absl::OkStatus();
}

absl::Status WriteWeights(Env* env, absl::string_view file, absl::string_view file_name,
                          const Llama2cHeader& header, const LlamaConfig& config,
                          const std::string& out_dir) {
  const Llama2cLayout layout = ComputeLlama2cLayout(header);
  const std::map<std::string, Source> sources = SourceMap(header, layout);
  const std::vector<ExpectedTensor> expected = ExpectedLlamaTensors(config);
  std::vector<TensorSpec> specs;
  specs.reserve(expected.size());
  for (const ExpectedTensor& tensor : expected) {
    specs.push_back({tensor.name, DType::kF32, tensor.shape});
  }
  ShardedSafetensorsWriter::Options options;
  options.single_file_name = kSafetensorsSingleFileName;
  options.metadata = {{"format", "pt"}};
  CATQ_ASSIGN_OR_RETURN(
      std::unique_ptr<ShardedSafetensorsWriter> writer,
      ShardedSafetensorsWriter::Create(env, out_dir, std::move(specs), std::move(options)));
  std::string chunk;
  chunk.reserve(kChunkBytes);
  for (const ExpectedTensor& tensor : expected) {
    auto it = sources.find(tensor.name);
    if (it == sources.end()) {
      return absl::InternalError(absl::StrCat("llama2.c import: no source for ", tensor.name));
    }
    CATQ_RETURN_IF_ERROR(StreamTensor(file, file_name, tensor.name, it->second, *writer, chunk));
  }
  return writer->Finish();
}

}  // namespace

absl::Status ImportLlama2c(Env* env, const std::string& model_bin, const std::string& tokenizer_bin,
                           const std::string& out_dir) {
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> model, env->MapFile(model_bin));
  const absl::string_view file = model->bytes();
  CATQ_ASSIGN_OR_RETURN(Llama2cHeader header, ParseLlama2cHeader(file, model_bin));
  CATQ_RETURN_IF_ERROR(CheckLlama2cFileSize(ComputeLlama2cLayout(header), file.size(), model_bin));
  CATQ_ASSIGN_OR_RETURN(std::string tokenizer, env->ReadFile(tokenizer_bin));
  CATQ_RETURN_IF_ERROR(ValidateLlama2cTokenizer(tokenizer, header.vocab_size, tokenizer_bin));
  const LlamaConfig config = ConfigFor(header);
  CATQ_RETURN_IF_ERROR(ValidateLlamaConfig(config, model_bin));

  CATQ_RETURN_IF_ERROR(env->CreateDirs(out_dir));
  CATQ_RETURN_IF_ERROR(WriteWeights(env, file, model_bin, header, config, out_dir));
  CATQ_RETURN_IF_ERROR(
      WriteFileAtomically(env, absl::StrCat(out_dir, "/", kLlama2cTokenizerFileName), tokenizer));
  return WriteFileAtomically(env, absl::StrCat(out_dir, "/", kConfigFileName),
                             LlamaConfigToJson(config));
}

}  // namespace catq
