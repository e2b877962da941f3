#include "core/model/llama_forward.h"

#include <cblas.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/math/blas.h"
#include "core/tensor/tensor_view.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// Query rows per block in attention: bounds the score matrix to
// kAttentionBlock x tokens floats per worker.
constexpr int64_t kAttentionBlock = 128;
// The default logits chunk: 16 MiB of float32.
constexpr int64_t kLogitsChunkFloats = int64_t{4} << 20;

int ToBlasInt(int64_t n) { return static_cast<int>(n); }

// ParallelFor: runs fn(item, worker) for every item in [0, count) on up to
// `workers` threads (the caller is worker 0), handing out items in order.
// After the first error no new item starts; that error is returned.
absl::Status ParallelFor(int64_t count, int workers,
                         const std::function<absl::Status(int64_t, int)>& fn) {
  const int threads = static_cast<int>(std::min<int64_t>(workers, count));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  absl::Mutex mu;
  absl::Status first_error;
  auto work = [&](int worker) {
    for (int64_t item = next++; item < count && !failed; item = next++) {
      absl::Status status = fn(item, worker);
      if (!status.ok()) {
        absl::MutexLock lock(&mu);
        if (first_error.ok()) first_error = std::move(status);
        failed = true;
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(std::max(threads - 1, 0)));
  for (int w = 1; w < threads; ++w) pool.emplace_back(work, w);
  work(0);
  for (std::thread& t : pool) t.join();
  absl::MutexLock lock(&mu);
  return first_error;
}

// Linear: y = beta * y + x w^T, with x [rows, in], w [out, in], y [rows, out].
void Linear(const RowMatrixXf& x, const RowMatrixXf& w, float beta, RowMatrixXf& y) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ToBlasInt(x.rows()), ToBlasInt(w.rows()),
              ToBlasInt(x.cols()), 1.0f, x.data(), ToBlasInt(x.cols()), w.data(),
              ToBlasInt(w.cols()), beta, y.data(), ToBlasInt(y.cols()));
}

// RmsNorm: out = x / sqrt(mean(x^2) + eps) * gain, row by row. The sum of
// squares is taken in double: a wide row of large values loses nothing.
void RmsNorm(const RowMatrixXf& x, const std::vector<float>& gain, double eps, RowMatrixXf& out) {
  out.resize(x.rows(), x.cols());
  const Eigen::Map<const Eigen::ArrayXf> g(gain.data(), static_cast<Eigen::Index>(gain.size()));
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const double mean_square =
        x.row(t).cast<double>().squaredNorm() / static_cast<double>(x.cols());
    const float inv = static_cast<float>(1.0 / std::sqrt(mean_square + eps));
    out.row(t).array() = x.row(t).array() * inv * g.transpose();
  }
}

// The cos and sin of every (position, frequency) pair, [tokens, head_dim/2]:
// pair i of a head turns by position * rope_theta^(-2i / head_dim), computed
// in double.
struct RopeTable {
  RowMatrixXf cos, sin;
};

RopeTable MakeRopeTable(int64_t tokens, int64_t head_dim, double theta) {
  const int64_t half = head_dim / 2;
  RopeTable table{RowMatrixXf(tokens, half), RowMatrixXf(tokens, half)};
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq =
        std::pow(theta, -static_cast<double>(2 * i) / static_cast<double>(head_dim));
    for (int64_t p = 0; p < tokens; ++p) {
      const double angle = static_cast<double>(p) * inv_freq;
      table.cos(p, i) = static_cast<float>(std::cos(angle));
      table.sin(p, i) = static_cast<float>(std::sin(angle));
    }
  }
  return table;
}

// ApplyRope: rotate-half RoPE on every head of x [tokens, heads * head_dim]:
// (a, b) = (x[i], x[i + hd/2]) becomes (a cos - b sin, b cos + a sin).
void ApplyRope(const RopeTable& table, int64_t head_dim, RowMatrixXf& x) {
  const int64_t half = head_dim / 2;
  const int64_t heads = x.cols() / head_dim;
  for (int64_t p = 0; p < x.rows(); ++p) {
    const float* c = &table.cos(p, 0);
    const float* s = &table.sin(p, 0);
    for (int64_t h = 0; h < heads; ++h) {
      float* a = &x(p, h * head_dim);
      float* b = a + half;
      for (int64_t i = 0; i < half; ++i) {
        const float ai = a[i], bi = b[i];
        a[i] = ai * c[i] - bi * s[i];
        b[i] = bi * c[i] + ai * s[i];
      }
    }
  }
}

// Attention: causal grouped-query attention of q [T, heads*hd] over k, v
// [T, kv_heads*hd] into out [T, heads*hd]. Query head h reads kv head
// h / (heads / kv_heads). Heads are strided views into q, k, v and out (no
// copies); query rows go in blocks, each against only the keys it may see.
void Attention(const RowMatrixXf& q, const RowMatrixXf& k, const RowMatrixXf& v, int64_t head_dim,
               RowMatrixXf& out, std::vector<float>& scores) {
  const int64_t tokens = q.rows();
  const int64_t heads = q.cols() / head_dim;
  const int64_t kv_heads = k.cols() / head_dim;
  const int64_t group = heads / kv_heads;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  out.resize(tokens, q.cols());
  scores.resize(static_cast<size_t>(std::min(tokens, kAttentionBlock) * tokens));
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t g = h / group;
    for (int64_t r0 = 0; r0 < tokens; r0 += kAttentionBlock) {
      const int64_t r1 = std::min(tokens, r0 + kAttentionBlock);
      const int64_t rows = r1 - r0, keys = r1;
      float* s = scores.data();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ToBlasInt(rows), ToBlasInt(keys),
                  ToBlasInt(head_dim), scale, &q(r0, h * head_dim), ToBlasInt(q.cols()),
                  &k(0, g * head_dim), ToBlasInt(k.cols()), 0.0f, s, ToBlasInt(keys));
      for (int64_t i = 0; i < rows; ++i) {
        float* row = s + i * keys;
        const int64_t visible = r0 + i + 1;  // Keys 0..position.
        const float max = *std::max_element(row, row + visible);
        double sum = 0.0;
        for (int64_t j = 0; j < visible; ++j) {
          row[j] = std::exp(row[j] - max);
          sum += row[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < visible; ++j) row[j] *= inv;
        std::fill(row + visible, row + keys, 0.0f);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ToBlasInt(rows), ToBlasInt(head_dim),
                  ToBlasInt(keys), 1.0f, s, ToBlasInt(keys), &v(0, g * head_dim),
                  ToBlasInt(v.cols()), 0.0f, &out(r0, h * head_dim), ToBlasInt(out.cols()));
    }
  }
}

// The float32 weights of one layer, as the provider gave them.
struct LayerWeights {
  std::array<std::shared_ptr<const RowMatrixXf>, kAllLinearKinds.size()> linears;
  std::shared_ptr<const std::vector<float>> input_norm, post_attention_norm;

  const RowMatrixXf& linear(LinearKind kind) const { return *linears[static_cast<size_t>(kind)]; }
};

absl::Status CheckMatrix(const RowMatrixXf* m, const std::string& name, MatrixShape want) {
  if (m == nullptr) return absl::InvalidArgumentError(absl::StrCat(name, ": provider gave null"));
  if (m->rows() != want.rows || m->cols() != want.cols) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": provider gave shape [", m->rows(), ", ",
                                                   m->cols(), "], expected [", want.rows, ", ",
                                                   want.cols, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckVector(const std::vector<float>* v, const std::string& name, int64_t size) {
  if (v == nullptr) return absl::InvalidArgumentError(absl::StrCat(name, ": provider gave null"));
  if (static_cast<int64_t>(v->size()) != size) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": provider gave ", v->size(), " values, expected ", size));
  }
  return absl::OkStatus();
}

absl::StatusOr<LayerWeights> FetchLayer(WeightProvider& provider, const LlamaConfig& config,
                                        int64_t layer) {
  LayerWeights w;
  for (LinearKind kind : kAllLinearKinds) {
    CATQ_ASSIGN_OR_RETURN(w.linears[static_cast<size_t>(kind)], provider.Linear(layer, kind));
    CATQ_RETURN_IF_ERROR(CheckMatrix(w.linears[static_cast<size_t>(kind)].get(),
                                     LinearWeightName(layer, kind), LinearShape(config, kind)));
  }
  CATQ_ASSIGN_OR_RETURN(w.input_norm, provider.NormGain(layer, NormKind::kInputLayernorm));
  CATQ_RETURN_IF_ERROR(CheckVector(
      w.input_norm.get(), NormWeightName(layer, NormKind::kInputLayernorm), config.hidden_size));
  CATQ_ASSIGN_OR_RETURN(w.post_attention_norm,
                        provider.NormGain(layer, NormKind::kPostAttentionLayernorm));
  CATQ_RETURN_IF_ERROR(CheckVector(w.post_attention_norm.get(),
                                   NormWeightName(layer, NormKind::kPostAttentionLayernorm),
                                   config.hidden_size));
  return w;
}

// What every worker of one call shares, read-only.
struct CallContext {
  const LlamaConfig& config;
  const ForwardOptions& options;
  const RopeTable& rope;
};

// Per-worker buffers, reused across sequences and layers.
struct Scratch {
  RowMatrixXf x, q, k, v, attn, gate, up;
  std::vector<float> scores;
};

absl::Status RunHooks(const CallContext& ctx, int64_t layer, Site site, int64_t sequence,
                      int worker, RowMatrixXf& activations) {
  const SiteCall call{layer, site, sequence, worker};
  for (SiteHook* hook : ctx.options.hooks) {
    CATQ_RETURN_IF_ERROR(hook->OnSite(call, activations));
  }
  return absl::OkStatus();
}

// LayerForward: one decoder layer on one sequence's residual stream h.
absl::Status LayerForward(const CallContext& ctx, const LayerWeights& w, int64_t layer,
                          int64_t sequence, int worker, Scratch& s, RowMatrixXf& h) {
  const LlamaConfig& config = ctx.config;
  const int64_t tokens = h.rows();
  const double eps = config.rms_norm_eps;

  RmsNorm(h, *w.input_norm, eps, s.x);
  CATQ_RETURN_IF_ERROR(RunHooks(ctx, layer, Site::kAttnIn, sequence, worker, s.x));
  s.q.resize(tokens, config.hidden_size);
  s.k.resize(tokens, config.kv_dim());
  s.v.resize(tokens, config.kv_dim());
  Linear(s.x, w.linear(LinearKind::kQProj), 0.0f, s.q);
  Linear(s.x, w.linear(LinearKind::kKProj), 0.0f, s.k);
  Linear(s.x, w.linear(LinearKind::kVProj), 0.0f, s.v);
  ApplyRope(ctx.rope, config.head_dim(), s.q);
  ApplyRope(ctx.rope, config.head_dim(), s.k);
  const KvCacheCall kv_call{layer, sequence, worker};
  for (KvCacheHook* hook : ctx.options.kv_hooks) {
    CATQ_RETURN_IF_ERROR(hook->OnKeysValues(kv_call, s.k, s.v));
  }
  Attention(s.q, s.k, s.v, config.head_dim(), s.attn, s.scores);
  CATQ_RETURN_IF_ERROR(RunHooks(ctx, layer, Site::kAttnOut, sequence, worker, s.attn));
  Linear(s.attn, w.linear(LinearKind::kOProj), 1.0f, h);  // h += o_proj(attn)

  RmsNorm(h, *w.post_attention_norm, eps, s.x);
  CATQ_RETURN_IF_ERROR(RunHooks(ctx, layer, Site::kMlpIn, sequence, worker, s.x));
  s.gate.resize(tokens, config.intermediate_size);
  s.up.resize(tokens, config.intermediate_size);
  Linear(s.x, w.linear(LinearKind::kGateProj), 0.0f, s.gate);
  Linear(s.x, w.linear(LinearKind::kUpProj), 0.0f, s.up);
  // silu(g) * u, in place in gate.
  s.gate.array() = s.gate.array() / (1.0f + (-s.gate.array()).exp()) * s.up.array();
  CATQ_RETURN_IF_ERROR(RunHooks(ctx, layer, Site::kMlpOut, sequence, worker, s.gate));
  Linear(s.gate, w.linear(LinearKind::kDownProj), 1.0f, h);  // h += down_proj(mlp_out)
  return absl::OkStatus();
}

// Embed: the embedding rows of `tokens`, converted from the stored dtype one
// row at a time (the table itself is never copied whole).
absl::StatusOr<RowMatrixXf> Embed(const TensorView& table, TokenSpan tokens) {
  const int64_t hidden = table.shape()[1];
  const uint64_t row_bytes = table.info().NumBytes() / static_cast<uint64_t>(table.shape()[0]);
  TensorInfo row_info;
  row_info.name = table.name();
  row_info.dtype = table.dtype();
  row_info.shape = {hidden};
  row_info.data_end = row_bytes;
  RowMatrixXf h(static_cast<Eigen::Index>(tokens.size()), hidden);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const TensorView row(row_info, table.bytes().substr(tokens[t] * row_bytes, row_bytes));
    absl::Span<float> out(&h(static_cast<Eigen::Index>(t), 0), static_cast<size_t>(hidden));
    CATQ_RETURN_IF_ERROR(row.CopyToFloat(out));
    for (float value : out) {
      if (!std::isfinite(value)) {
        return absl::DataLossError(
            absl::StrCat(table.name(), ": row ", tokens[t], " holds ", value));
      }
    }
  }
  return h;
}

absl::Status CheckSequences(const LlamaConfig& config, absl::Span<const TokenSpan> sequences) {
  for (size_t s = 0; s < sequences.size(); ++s) {
    const TokenSpan seq = sequences[s];
    if (seq.empty()) return absl::InvalidArgumentError(absl::StrCat("sequence ", s, " is empty"));
    if (static_cast<int64_t>(seq.size()) > config.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s, " has ", seq.size(),
                                                     " tokens, more than max_position_embeddings ",
                                                     config.max_position_embeddings));
    }
    for (size_t t = 0; t < seq.size(); ++t) {
      if (seq[t] < 0 || seq[t] >= config.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence ", s, ", position ", t, ": token id ", seq[t],
                         " is outside [0, vocab_size ", config.vocab_size, ")"));
      }
    }
  }
  return absl::OkStatus();
}

// RunBatch: sequences [begin, end) through the whole model.
absl::Status RunBatch(const LlamaModel& model, absl::Span<const TokenSpan> sequences, size_t begin,
                      size_t end, WeightProvider& provider, const ForwardOptions& options,
                      int workers, const LogitsVisitor& visitor) {
  const LlamaConfig& config = model.config();
  const int64_t count = static_cast<int64_t>(end - begin);
  int64_t max_tokens = 0;
  for (size_t s = begin; s < end; ++s) {
    max_tokens = std::max<int64_t>(max_tokens, static_cast<int64_t>(sequences[s].size()));
  }
  const RopeTable rope = MakeRopeTable(max_tokens, config.head_dim(), config.rope_theta);
  const CallContext ctx{config, options, rope};
  std::vector<Scratch> scratch(static_cast<size_t>(workers));

  CATQ_ASSIGN_OR_RETURN(TensorView embeddings, model.Get(kEmbedTokensName));
  std::vector<RowMatrixXf> hidden(static_cast<size_t>(count));
  CATQ_RETURN_IF_ERROR(ParallelFor(count, workers, [&](int64_t i, int) -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(hidden[static_cast<size_t>(i)],
                          Embed(embeddings, sequences[begin + static_cast<size_t>(i)]));
    return absl::OkStatus();
  }));

  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    CATQ_ASSIGN_OR_RETURN(const LayerWeights weights, FetchLayer(provider, config, layer));
    CATQ_RETURN_IF_ERROR(ParallelFor(count, workers, [&](int64_t i, int worker) {
      return LayerForward(ctx, weights, layer, static_cast<int64_t>(begin) + i, worker,
                          scratch[static_cast<size_t>(worker)], hidden[static_cast<size_t>(i)]);
    }));
  }
  if (!visitor) return absl::OkStatus();

  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<const std::vector<float>> final_norm,
                        provider.FinalNormGain());
  CATQ_RETURN_IF_ERROR(CheckVector(final_norm.get(), kFinalNormName, config.hidden_size));
  CATQ_ASSIGN_OR_RETURN(std::shared_ptr<const RowMatrixXf> lm_head, provider.LmHead());
  CATQ_RETURN_IF_ERROR(
      CheckMatrix(lm_head.get(), model.lm_head_name(), {config.vocab_size, config.hidden_size}));
  const int64_t chunk_rows = options.logits_chunk_rows > 0
                                 ? options.logits_chunk_rows
                                 : std::max<int64_t>(1, kLogitsChunkFloats / config.vocab_size);
  return ParallelFor(count, workers, [&](int64_t i, int worker) -> absl::Status {
    Scratch& s = scratch[static_cast<size_t>(worker)];
    const RowMatrixXf& h = hidden[static_cast<size_t>(i)];
    RmsNorm(h, *final_norm, config.rms_norm_eps, s.x);
    RowMatrixXf logits;
    for (int64_t r0 = 0; r0 < h.rows(); r0 += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, h.rows() - r0);
      logits.resize(rows, config.vocab_size);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ToBlasInt(rows),
                  ToBlasInt(config.vocab_size), ToBlasInt(config.hidden_size), 1.0f, &s.x(r0, 0),
                  ToBlasInt(config.hidden_size), lm_head->data(), ToBlasInt(config.hidden_size),
                  0.0f, logits.data(), ToBlasInt(config.vocab_size));
      CATQ_RETURN_IF_ERROR(visitor(static_cast<int64_t>(begin) + i, r0, logits));
    }
    // The stream is done with: free it now rather than with the batch.
    hidden[static_cast<size_t>(i)] = RowMatrixXf();
    return absl::OkStatus();
  });
}

std::vector<TokenSpan> AsSpans(const std::vector<std::vector<int32_t>>& sequences) {
  return std::vector<TokenSpan>(sequences.begin(), sequences.end());
}

}  // namespace

ModelWeightProvider::ModelWeightProvider(const LlamaModel& model, int64_t cache_limit_bytes)
    : model_(model), caching_([&] {
        int64_t bytes = 0;
        for (const ExpectedTensor& t : ExpectedLlamaTensors(model.config())) {
          int64_t n = 1;
          for (int64_t d : t.shape) n *= d;
          bytes += n * static_cast<int64_t>(sizeof(float));
        }
        return bytes <= cache_limit_bytes;
      }()) {}

absl::StatusOr<std::shared_ptr<const RowMatrixXf>> ModelWeightProvider::Matrix(
    const std::string& name) {
  if (caching_) {
    absl::MutexLock lock(&mu_);
    auto it = matrices_.find(name);
    if (it != matrices_.end()) return it->second;
  }
  CATQ_ASSIGN_OR_RETURN(RowMatrixXf m, model_.GetMatrix(name));
  auto shared = std::make_shared<const RowMatrixXf>(std::move(m));
  if (caching_) {
    absl::MutexLock lock(&mu_);
    matrices_.try_emplace(name, shared);
  }
  return shared;
}

absl::StatusOr<std::shared_ptr<const std::vector<float>>> ModelWeightProvider::Vector(
    const std::string& name) {
  if (caching_) {
    absl::MutexLock lock(&mu_);
    auto it = vectors_.find(name);
    if (it != vectors_.end()) return it->second;
  }
  CATQ_ASSIGN_OR_RETURN(std::vector<float> v, model_.GetFloat(name));
  auto shared = std::make_shared<const std::vector<float>>(std::move(v));
  if (caching_) {
    absl::MutexLock lock(&mu_);
    vectors_.try_emplace(name, shared);
  }
  return shared;
}

absl::StatusOr<std::shared_ptr<const RowMatrixXf>> ModelWeightProvider::Linear(int64_t layer,
                                                                               LinearKind kind) {
  if (layer < 0 || layer >= model_.config().num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " is out of range [0, ",
                                                   model_.config().num_hidden_layers, ")"));
  }
  return Matrix(LinearWeightName(layer, kind));
}

absl::StatusOr<std::shared_ptr<const std::vector<float>>> ModelWeightProvider::NormGain(
    int64_t layer, NormKind kind) {
  if (layer < 0 || layer >= model_.config().num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " is out of range [0, ",
                                                   model_.config().num_hidden_layers, ")"));
  }
  return Vector(NormWeightName(layer, kind));
}

absl::StatusOr<std::shared_ptr<const std::vector<float>>> ModelWeightProvider::FinalNormGain() {
  return Vector(kFinalNormName);
}

absl::StatusOr<std::shared_ptr<const RowMatrixXf>> ModelWeightProvider::LmHead() {
  return Matrix(model_.lm_head_name());
}

int ForwardWorkerCount(const ForwardOptions& options) {
  if (options.num_threads > 0) return options.num_threads;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

absl::Status RunForward(const LlamaModel& model, absl::Span<const TokenSpan> sequences,
                        const ForwardOptions& options, const LogitsVisitor& visitor) {
  if (options.max_batch_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_tokens is ", options.max_batch_tokens, ", must be positive"));
  }
  CATQ_RETURN_IF_ERROR(CheckSequences(model.config(), sequences));
  const int workers = ForwardWorkerCount(options);
  // Sequences are the unit of parallelism, and one BLAS thread per call keeps
  // every GEMM's summation order the same on any worker count (a threaded
  // OpenBLAS GEMM may block K differently), so results do not depend on
  // num_threads.
  ScopedBlasThreads single_blas_thread(1);
  std::unique_ptr<ModelWeightProvider> own_provider;
  WeightProvider* provider = options.weights;
  if (provider == nullptr) {
    own_provider = std::make_unique<ModelWeightProvider>(model, options.cache_limit_bytes);
    provider = own_provider.get();
  }
  size_t begin = 0;
  while (begin < sequences.size()) {
    size_t end = begin + 1;
    int64_t tokens = static_cast<int64_t>(sequences[begin].size());
    while (end < sequences.size() &&
           tokens + static_cast<int64_t>(sequences[end].size()) <= options.max_batch_tokens) {
      tokens += static_cast<int64_t>(sequences[end].size());
      ++end;
    }
    CATQ_RETURN_IF_ERROR(
        RunBatch(model, sequences, begin, end, *provider, options, workers, visitor));
    begin = end;
  }
  return absl::OkStatus();
}

absl::Status RunForward(const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences,
                        const ForwardOptions& options, const LogitsVisitor& visitor) {
  return RunForward(model, AsSpans(sequences), options, visitor);
}

namespace {

absl::Status CheckStreams(const LlamaConfig& config, int64_t layer,
                          const std::vector<RowMatrixXf>& hidden) {
  if (layer < 0 || layer >= config.num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer, " is out of range [0, ", config.num_hidden_layers, ")"));
  }
  for (size_t s = 0; s < hidden.size(); ++s) {
    const RowMatrixXf& h = hidden[s];
    if (h.rows() < 1 || h.rows() > config.max_position_embeddings ||
        h.cols() != config.hidden_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("residual stream ", s, " is [", h.rows(), ", ", h.cols(), "], expected [1..",
                       config.max_position_embeddings, ", ", config.hidden_size, "]"));
    }
  }
  return absl::OkStatus();
}

// The stream that sequence i runs through the layer on, given the worker.
using StreamOf = std::function<RowMatrixXf&(int64_t sequence, int worker)>;

// Runs layer `layer` on the stream of every sequence of `hidden`.
absl::Status RunOneLayer(const LlamaModel& model, int64_t layer,
                         const std::vector<RowMatrixXf>& hidden, const ForwardOptions& options,
                         const StreamOf& stream_of) {
  const LlamaConfig& config = model.config();
  CATQ_RETURN_IF_ERROR(CheckStreams(config, layer, hidden));
  const int workers = ForwardWorkerCount(options);
  ScopedBlasThreads single_blas_thread(1);  // As RunForward: bits independent of workers.
  std::unique_ptr<ModelWeightProvider> own_provider;
  WeightProvider* provider = options.weights;
  if (provider == nullptr) {
    own_provider = std::make_unique<ModelWeightProvider>(model, options.cache_limit_bytes);
    provider = own_provider.get();
  }
  int64_t max_tokens = 0;
  for (const RowMatrixXf& h : hidden) max_tokens = std::max<int64_t>(max_tokens, h.rows());
  const RopeTable rope = MakeRopeTable(max_tokens, config.head_dim(), config.rope_theta);
  const CallContext ctx{config, options, rope};
  std::vector<Scratch> scratch(static_cast<size_t>(workers));
  CATQ_ASSIGN_OR_RETURN(const LayerWeights weights, FetchLayer(*provider, config, layer));
  return ParallelFor(static_cast<int64_t>(hidden.size()), workers, [&](int64_t i, int worker) {
    return LayerForward(ctx, weights, layer, i, worker, scratch[static_cast<size_t>(worker)],
                        stream_of(i, worker));
  });
}

}  // namespace

absl::StatusOr<std::vector<RowMatrixXf>> EmbedSequences(
    const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences,
    const ForwardOptions& options) {
  const std::vector<TokenSpan> spans = AsSpans(sequences);
  CATQ_RETURN_IF_ERROR(CheckSequences(model.config(), spans));
  CATQ_ASSIGN_OR_RETURN(TensorView embeddings, model.Get(kEmbedTokensName));
  std::vector<RowMatrixXf> hidden(sequences.size());
  CATQ_RETURN_IF_ERROR(ParallelFor(static_cast<int64_t>(spans.size()), ForwardWorkerCount(options),
                                   [&](int64_t i, int) -> absl::Status {
                                     CATQ_ASSIGN_OR_RETURN(
                                         hidden[static_cast<size_t>(i)],
                                         Embed(embeddings, spans[static_cast<size_t>(i)]));
                                     return absl::OkStatus();
                                   }));
  return hidden;
}

absl::Status AdvanceLayer(const LlamaModel& model, int64_t layer, std::vector<RowMatrixXf>& hidden,
                          const ForwardOptions& options) {
  return RunOneLayer(model, layer, hidden, options, [&](int64_t i, int) -> RowMatrixXf& {
    return hidden[static_cast<size_t>(i)];
  });
}

absl::Status ObserveLayer(const LlamaModel& model, int64_t layer,
                          const std::vector<RowMatrixXf>& hidden, const ForwardOptions& options) {
  std::vector<RowMatrixXf> copies(static_cast<size_t>(ForwardWorkerCount(options)));
  return RunOneLayer(model, layer, hidden, options, [&](int64_t i, int worker) -> RowMatrixXf& {
    RowMatrixXf& copy = copies[static_cast<size_t>(worker)];
    copy = hidden[static_cast<size_t>(i)];
    return copy;
  });
}

absl::StatusOr<RowMatrixXf> ComputeLogits(const LlamaModel& model, TokenSpan tokens,
                                          const ForwardOptions& options) {
  RowMatrixXf logits(static_cast<Eigen::Index>(tokens.size()), model.config().vocab_size);
  const TokenSpan sequences[] = {tokens};
  CATQ_RETURN_IF_ERROR(
      RunForward(model, sequences, options,
                 [&](int64_t, int64_t first, const Eigen::Ref<const RowMatrixXf>& chunk) {
                   logits.middleRows(first, chunk.rows()) = chunk;
                   return absl::OkStatus();
                 }));
  return logits;
}

absl::StatusOr<std::vector<std::vector<float>>> ComputeTokenNll(
    const LlamaModel& model, absl::Span<const TokenSpan> sequences, const ForwardOptions& options) {
  std::vector<std::vector<float>> nll(sequences.size());
  for (size_t s = 0; s < sequences.size(); ++s) {
    nll[s].resize(sequences[s].empty() ? 0 : sequences[s].size() - 1);
  }
  CATQ_RETURN_IF_ERROR(RunForward(
      model, sequences, options,
      [&](int64_t s, int64_t first, const Eigen::Ref<const RowMatrixXf>& chunk) {
        const TokenSpan tokens = sequences[static_cast<size_t>(s)];
        std::vector<float>& out = nll[static_cast<size_t>(s)];
        for (Eigen::Index r = 0; r < chunk.rows(); ++r) {
          const int64_t position = first + r;
          if (position + 1 >= static_cast<int64_t>(tokens.size())) break;  // Nothing to predict.
          const double max = chunk.row(r).maxCoeff();
          double sum = 0.0;
          for (Eigen::Index j = 0; j < chunk.cols(); ++j) sum += std::exp(chunk(r, j) - max);
          const double log_sum_exp = max + std::log(sum);
          out[static_cast<size_t>(position)] =
              static_cast<float>(log_sum_exp - chunk(r, tokens[static_cast<size_t>(position + 1)]));
        }
        return absl::OkStatus();
      }));
  return nll;
}

absl::StatusOr<std::vector<std::vector<float>>> ComputeTokenNll(
    const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences,
    const ForwardOptions& options) {
  return ComputeTokenNll(model, AsSpans(sequences), options);
}

}  // namespace catq
