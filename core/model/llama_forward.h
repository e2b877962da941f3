// File: core/model/llama_forward.h
//
// The float32 forward pass of a Llama-family model (see llama_weights.h for
// what a layer computes): token embedding, per layer RMSNorm -> q/k/v ->
// rotate-half RoPE (Hugging Face's convention, base rope_theta) -> causal
// grouped-query attention scaled by 1/sqrt(head_dim) -> o_proj, RMSNorm ->
// SwiGLU MLP, residual adds; then the final RMSNorm and lm_head (tied or
// not). RMSNorm is x / sqrt(mean(x^2) + rms_norm_eps) * gain. Linears run
// through BLAS sgemm as [tokens, in] x [out, in]^T.
//
// Hooks for the rest of catq:
//   - WeightProvider supplies each linear's weight and each norm's gain, so a
//     caller can run the model on dequantized or transformed weights. The
//     default, ModelWeightProvider, reads the model.
//   - SiteHook is called at each of the four sites of every layer with the
//     activations [tokens, SiteDim] of one sequence, before the linears that
//     read them. It may only look (calibration statistics) or change them in
//     place (an online transform, an activation fake-quantizer); the linears
//     read what it leaves.
//   - KvCacheHook is called once per layer and sequence with the keys (after
//     RoPE) and values that attention reads, what an inference engine keeps
//     in its K/V cache. It may change them in place (a K/V cache
//     fake-quantizer); attention reads what it leaves.
//
//   CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(dir));
//   CATQ_ASSIGN_OR_RETURN(RowMatrixXf logits, ComputeLogits(model, ids));  // [tokens, vocab]
//   ForwardOptions options;
//   options.hooks.push_back(&second_moment_collector);
//   CATQ_RETURN_IF_ERROR(RunForward(model, documents, options));  // hooks only, no lm_head
//
// How it runs. Sequences are taken in batches of at most max_batch_tokens
// tokens (a longer sequence is a batch of its own). A batch goes through the
// model layer by layer: the layer's weights are fetched once from the
// provider (on the calling thread), then the batch's sequences run through the
// layer in parallel on ForwardWorkerCount(options) threads, one sequence per
// thread at a time. What stays in memory is the batch's residual streams
// ([tokens, hidden] float32 each), one layer's float32 weights (or the whole
// model's, when ModelWeightProvider caches it) and per-thread scratch; logits
// are made `logits_chunk_rows` rows at a time, never [tokens, vocab] for a
// whole batch. Results do not depend on the thread count or the batching:
// every sequence is computed by the same operations in the same order. (Only
// logits_chunk_rows may change the last bit of a logit: BLAS picks its
// kernels by the shape.)
//
// BLAS threads: when it runs more than one worker, the forward pass sets
// OpenBLAS to one thread (openblas_set_num_threads(1), a process-wide
// setting), as catq's worker pool does at startup: the parallelism comes from
// the workers, and BLAS threads inside them would oversubscribe the cores.
//
// Thread-safety: the functions are thread-safe given thread-safe hooks and
// providers that are not shared between concurrent calls (ModelWeightProvider
// is thread-safe). A call invokes its hooks and visitor concurrently from its
// worker threads.
#ifndef CATQ_CORE_MODEL_LLAMA_FORWARD_H_
#define CATQ_CORE_MODEL_LLAMA_FORWARD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/math/eigen_types.h"
#include "core/model/llama_model.h"
#include "core/model/llama_weights.h"

namespace catq {

// A token sequence, as the forward pass reads it (ids in [0, vocab_size)).
using TokenSpan = absl::Span<const int32_t>;

// The default weight cache limit of ModelWeightProvider: 256 MiB of float32.
inline constexpr int64_t kDefaultWeightCacheBytes = int64_t{256} << 20;

// WeightProvider
//
// Where the forward pass takes its float32 weights from. Each method returns
// a shared, immutable object, so that a provider can hand out a cached matrix
// without a copy or a freshly made one that the forward pass frees after use.
// The forward pass checks every shape and names the weight when one is wrong.
// It calls a provider only from the thread that called it.
class WeightProvider {
 public:
  virtual ~WeightProvider() = default;

  // Linear: the weight of (layer, kind), [out, in] = LinearShape(config, kind).
  virtual absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Linear(int64_t layer,
                                                                    LinearKind kind) = 0;
  // NormGain: the gain of a layer's RMSNorm, [hidden]. A provider of weights
  // with the gains folded in returns ones.
  virtual absl::StatusOr<std::shared_ptr<const std::vector<float>>> NormGain(int64_t layer,
                                                                             NormKind kind) = 0;
  // FinalNormGain: model.norm.weight, [hidden].
  virtual absl::StatusOr<std::shared_ptr<const std::vector<float>>> FinalNormGain() = 0;
  // LmHead: the output projection, [vocab, hidden].
  virtual absl::StatusOr<std::shared_ptr<const RowMatrixXf>> LmHead() = 0;
};

// ModelWeightProvider
//
// A LlamaModel's own weights, converted to float32 (and checked finite) from
// the mapped checkpoint. When all of them together take at most
// `cache_limit_bytes` as float32, each is kept after its first use (small
// models: every later call is free); otherwise each call converts afresh, so
// that memory stays bounded by what the caller holds. Override a method to
// replace some weights and keep the rest, in the manner of EnvWrapper:
//
//   class QuantizedLinears : public ModelWeightProvider {
//     using ModelWeightProvider::ModelWeightProvider;
//     absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Linear(int64_t layer,
//                                                               LinearKind kind) override;
//   };
//
// Thread-safe. The model must outlive the provider.
class ModelWeightProvider : public WeightProvider {
 public:
  explicit ModelWeightProvider(const LlamaModel& model,
                               int64_t cache_limit_bytes = kDefaultWeightCacheBytes);

  // caching: whether weights are kept after first use.
  bool caching() const { return caching_; }
  const LlamaModel& model() const { return model_; }

  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Linear(int64_t layer,
                                                            LinearKind kind) override;
  absl::StatusOr<std::shared_ptr<const std::vector<float>>> NormGain(int64_t layer,
                                                                     NormKind kind) override;
  absl::StatusOr<std::shared_ptr<const std::vector<float>>> FinalNormGain() override;
  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> LmHead() override;

 private:
  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Matrix(const std::string& name);
  absl::StatusOr<std::shared_ptr<const std::vector<float>>> Vector(const std::string& name);

  const LlamaModel& model_;
  const bool caching_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const RowMatrixXf>> matrices_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const std::vector<float>>> vectors_
      ABSL_GUARDED_BY(mu_);
};

// Where a SiteHook call is.
struct SiteCall {
  int64_t layer = 0;
  Site site = Site::kAttnIn;
  // sequence: the index of the sequence in the call's `sequences`.
  int64_t sequence = 0;
  // worker: the calling worker thread, in [0, ForwardWorkerCount(options)).
  // One worker makes one call at a time, so per-worker state needs no lock.
  int worker = 0;
};

// SiteHook
//
// Called at the input of every site of every layer, for each sequence:
//   attn_in  the input of q/k/v_proj: input_layernorm's output, gain applied
//   attn_out the input of o_proj: the attention output, heads side by side
//   mlp_in   the input of gate/up_proj: post_attention_layernorm's output
//   mlp_out  the input of down_proj: silu(gate_proj(x)) * up_proj(x)
// `activations` is [tokens of the sequence, SiteDim(config, site)], row t the
// token at position t. A hook may change it in place; the site's linears read
// the result. An error stops the forward pass and is returned from it.
// Called concurrently from several workers (for different sequences).
class SiteHook {
 public:
  virtual ~SiteHook() = default;
  virtual absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> activations) = 0;
};

// Where a KvCacheHook call is.
struct KvCacheCall {
  int64_t layer = 0;
  // sequence, worker: as in SiteCall.
  int64_t sequence = 0;
  int worker = 0;
};

// KvCacheHook
//
// Called in every layer, for each sequence, between the projections and
// attention: `keys` is k_proj's output after RoPE, `values` v_proj's output,
// each [tokens of the sequence, num_key_value_heads * head_dim], KV head g in
// columns [g * head_dim, (g + 1) * head_dim), row t the token at position t.
// A hook may change both in place; attention (every query head of the group)
// reads the result. Queries are not shown: an orthogonal rotation of the keys
// that a hook undoes before returning is the same as rotating queries and
// keys alike. An error stops the forward pass and is returned from it.
// Called concurrently from several workers (for different sequences).
class KvCacheHook {
 public:
  virtual ~KvCacheHook() = default;
  virtual absl::Status OnKeysValues(const KvCacheCall& call, Eigen::Ref<RowMatrixXf> keys,
                                    Eigen::Ref<RowMatrixXf> values) = 0;
};

// LogitsVisitor
//
// Receives the logits of rows [first_position, first_position +
// logits.rows()) of sequence `sequence`, [rows, vocab]. Each sequence's rows
// arrive in order, on one worker; different sequences' rows concurrently.
// The view is valid only during the call.
using LogitsVisitor = std::function<absl::Status(int64_t sequence, int64_t first_position,
                                                 const Eigen::Ref<const RowMatrixXf>& logits)>;

struct ForwardOptions {
  // num_threads: worker threads that run sequences in parallel. Default 0:
  // std::thread::hardware_concurrency().
  int num_threads = 0;
  // weights: the provider of linears, norm gains and lm_head. Default null: a
  // ModelWeightProvider of the model, made for the call, caching up to
  // cache_limit_bytes. Not owned.
  WeightProvider* weights = nullptr;
  // cache_limit_bytes: for the default provider (see ModelWeightProvider).
  int64_t cache_limit_bytes = kDefaultWeightCacheBytes;
  // hooks: called at every site in this order, each seeing what the previous
  // one left. Not owned.
  std::vector<SiteHook*> hooks;
  // kv_hooks: called in every layer with the keys and values, in this order,
  // each seeing what the previous one left. Not owned.
  std::vector<KvCacheHook*> kv_hooks;
  // max_batch_tokens: the tokens whose residual streams are held at once
  // (default 65536: 256 KiB per unit of hidden_size). Must be positive.
  int64_t max_batch_tokens = int64_t{1} << 16;
  // logits_chunk_rows: rows of logits made at once per sequence. Default 0:
  // as many as fit in 16 MiB of float32 (at least one).
  int64_t logits_chunk_rows = 0;
};

// ForwardWorkerCount: the number of worker threads `options` asks for (at
// least 1).
int ForwardWorkerCount(const ForwardOptions& options);

// RunForward
//
// Runs the model on every sequence, calling the hooks; then, when `visitor`
// is set, the final norm and lm_head, passing every row's logits to it (with
// no visitor, the final norm and lm_head are skipped: a calibration pass needs
// only the hooks). InvalidArgument for an empty sequence, one longer than
// max_position_embeddings, or a token id outside [0, vocab_size) (naming the
// sequence and position), a non-positive max_batch_tokens, or a provided
// weight of the wrong shape (naming it); errors of the provider, hooks and
// visitor are passed on. On error, hooks and visitor may have seen part of
// the work.
absl::Status RunForward(const LlamaModel& model, absl::Span<const TokenSpan> sequences,
                        const ForwardOptions& options, const LogitsVisitor& visitor = nullptr);
absl::Status RunForward(const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences,
                        const ForwardOptions& options, const LogitsVisitor& visitor = nullptr);

// Layer by layer. A caller that needs the residual streams between layers
// (sequential calibration: layer l measured on the output of layers 0..l-1
// run quantized) keeps them itself and runs one decoder layer at a time:
//
//   CATQ_ASSIGN_OR_RETURN(std::vector<RowMatrixXf> hidden, EmbedSequences(model, sequences));
//   CATQ_RETURN_IF_ERROR(ObserveLayer(model, 0, hidden, float_options));  // hooks only
//   CATQ_RETURN_IF_ERROR(AdvanceLayer(model, 0, hidden, quantized_options));
//
// Each sequence goes through the same operations as in RunForward, so a
// hook sees the same bits either way. Both run on ForwardWorkerCount(options)
// threads (one BLAS thread, as RunForward) with options.weights and hooks;
// SiteCall::sequence is the index in `hidden`. max_batch_tokens and the
// logits options do not apply: the caller holds every stream.

// EmbedSequences: the residual stream before layer 0 of every sequence,
// [tokens, hidden] each. Errors as RunForward's for the sequences.
absl::StatusOr<std::vector<RowMatrixXf>> EmbedSequences(
    const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences,
    const ForwardOptions& options = {});

// AdvanceLayer: every stream becomes decoder layer `layer`'s output.
// InvalidArgument for a layer out of range, an empty stream, one longer than
// max_position_embeddings or not hidden_size wide; provider and hook errors
// are passed on (the streams are then partly advanced).
absl::Status AdvanceLayer(const LlamaModel& model, int64_t layer, std::vector<RowMatrixXf>& hidden,
                          const ForwardOptions& options);

// ObserveLayer: runs layer `layer` on a per-worker copy of every stream for
// the hooks alone; `hidden` is left as it was. Memory: one stream per
// worker. Errors as AdvanceLayer.
absl::Status ObserveLayer(const LlamaModel& model, int64_t layer,
                          const std::vector<RowMatrixXf>& hidden, const ForwardOptions& options);

// ComputeLogits: the logits of one sequence, [tokens, vocab]; row t scores
// the token at position t + 1. Errors as RunForward.
absl::StatusOr<RowMatrixXf> ComputeLogits(const LlamaModel& model, TokenSpan tokens,
                                          const ForwardOptions& options = {});

// ComputeTokenNll
//
// For each sequence s of length T, T - 1 values: element t is the negative
// log-likelihood (nats) of token t + 1 given tokens 0..t, from a log-softmax
// of each logits row computed in double. Only a chunk of logits rows exists at
// a time. Errors as RunForward.
absl::StatusOr<std::vector<std::vector<float>>> ComputeTokenNll(
    const LlamaModel& model, absl::Span<const TokenSpan> sequences,
    const ForwardOptions& options = {});
absl::StatusOr<std::vector<std::vector<float>>> ComputeTokenNll(
    const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences,
    const ForwardOptions& options = {});

}  // namespace catq

#endif  // CATQ_CORE_MODEL_LLAMA_FORWARD_H_
