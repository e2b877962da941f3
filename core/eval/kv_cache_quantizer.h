// File: core/eval/kv_cache_quantizer.h
//
// KvCacheQuantizer: the KvCacheHook (llama_forward.h) that makes a forward
// pass attend over what an int4 (or int8) K/V cache holds. For every token and
// every KV head, the head's vector (a key after RoPE, or a value) is
//
//   1. rotated by the normalized Hadamard H of head_dim (MixingMatrix: the
//      fast Walsh-Hadamard transform for a power of two, H_(2^a) (x) Q_q
//      otherwise, seeded by mixing_seed), when `hadamard` is on;
//   2. put on its own asymmetric b-bit grid, group = head_dim (the per-token
//      activation grid of core/quant/activation_quant.h: range [min(y, 0),
//      max(y, 0)], scale = range / (2^b - 1), integer zero point, round half
//      to even) and replaced by the values the grid stands for;
//   3. rotated back by H^T.
//
// An engine would keep H k and H v in the cache and rotate the queries by H
// too (q . k = Hq . Hk) and the attention output back by H^T (or fold H^T
// into o_proj): step 3 computes the same thing without touching the queries.
// The rotation spreads an outlier channel of a head over all of head_dim, so
// the per-(token, head) range, and the step, shrinks.
//
//   CATQ_ASSIGN_OR_RETURN(KvCacheQuantizer kv,
//                         KvCacheQuantizer::Create(config.head_dim(), {.bits = 4}));
//   options.kv_hooks.push_back(&kv);
//
// At 16 bits the quantizer leaves keys and values untouched (off).
//
// Thread-safety: immutable after Create; OnKeysValues may run concurrently
// on different buffers.
#ifndef CATQ_CORE_EVAL_KV_CACHE_QUANTIZER_H_
#define CATQ_CORE_EVAL_KV_CACHE_QUANTIZER_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/cat/mixing_matrix.h"
#include "core/math/eigen_types.h"
#include "core/model/llama_forward.h"

namespace catq {

// The K/V cache bits that mean "not quantized".
inline constexpr int kFloatKvCacheBits = 16;

struct KvCacheQuantizerOptions {
  // Bits per cached element: 2..8, or kFloatKvCacheBits (off). Default off.
  int bits = kFloatKvCacheBits;
  // Rotate each head by the normalized Hadamard before the grid. Default true.
  bool hadamard = true;
  // Seed of the random orthogonal factor Q_q of the mixing when head_dim is
  // not a power of two (MixingOptions::seed). Default 0.
  uint64_t mixing_seed = 0;
};

class KvCacheQuantizer : public KvCacheHook {
 public:
  // KvCacheQuantizer::Create
  //
  // A quantizer of heads `head_dim` wide. InvalidArgument naming the field
  // for head_dim < 1, bits outside [2, 8] other than 16, and the errors of
  // MixingMatrix::Create for head_dim (when hadamard is on).
  static absl::StatusOr<KvCacheQuantizer> Create(int64_t head_dim,
                                                 const KvCacheQuantizerOptions& options);

  int64_t head_dim() const { return head_dim_; }
  const KvCacheQuantizerOptions& options() const { return options_; }
  // mixing: H, or null when hadamard is off.
  const MixingMatrix* mixing() const { return mixing_ ? &*mixing_ : nullptr; }

  // FakeQuantizeHeads
  //
  // Steps 1-3 above on every head_dim-wide group of every row of `x`
  // ([tokens, heads * head_dim]); nothing at 16 bits. InvalidArgument when
  // x's width is not a multiple of head_dim.
  absl::Status FakeQuantizeHeads(Eigen::Ref<RowMatrixXf> x) const;

  // OnKeysValues: FakeQuantizeHeads of the keys, then of the values; errors
  // name the layer.
  absl::Status OnKeysValues(const KvCacheCall& call, Eigen::Ref<RowMatrixXf> keys,
                            Eigen::Ref<RowMatrixXf> values) override;

 private:
  KvCacheQuantizer(int64_t head_dim, const KvCacheQuantizerOptions& options,
                   std::optional<MixingMatrix> mixing)
      : head_dim_(head_dim), options_(options), mixing_(std::move(mixing)) {}

  // Steps 1-3 on the rows of `heads` [n, head_dim], one (token, head) each.
  void FakeQuantizeRows(Eigen::Ref<RowMatrixXf> heads) const;

  int64_t head_dim_;
  KvCacheQuantizerOptions options_;
  std::optional<MixingMatrix> mixing_;
};

}  // namespace catq

#endif  // CATQ_CORE_EVAL_KV_CACHE_QUANTIZER_H_
