// File: core/eval/kl_divergence.h
//
// How far a candidate model's next-token distributions are from a reference
// model's on the same documents: the mean over predicted tokens of
//
//   KL(P_ref || P_cand) = sum_v P_ref(v) (log P_ref(v) - log P_cand(v))   (nats)
//
// with P the softmax of a logits row. Where the models are confidently wrong,
// quantization noise can lower perplexity; KL cannot be fooled that way, and
// it is 0 exactly when the distributions agree (architecture.md section 5,
// `catq eval --quantized`).
//
//   ForwardOptions fp;                        // the reference as it is
//   ForwardOptions fake_quant = ...;          // provider + hooks of the candidate
//   CATQ_ASSIGN_OR_RETURN(KlDivergenceResult kl,
//                         KlDivergence(fp_model, fp, q_model, fake_quant, documents));
//   std::cout << kl.mean_kl << " nats/token\n";
//
// How it runs. Documents are truncated to the context as perplexity.h does,
// then taken in groups whose reference logits fit max_reference_logits_bytes
// as float32 (a longer document is a group of its own). For each group the
// reference runs first and keeps its logits rows (and their log-sum-exp); then
// the candidate runs and each of its logits chunks is compared with the kept
// rows at once, so candidate logits are never held and reference logits only
// for one group. All sums are in double, per document in position order, then
// over documents in order: the result does not depend on the thread count.
// The same pass gives both models' perplexities, equal bit for bit to
// EvaluatePerplexity with the same options.
//
// Thread-safety: as RunForward.
#ifndef CATQ_CORE_EVAL_KL_DIVERGENCE_H_
#define CATQ_CORE_EVAL_KL_DIVERGENCE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/llama_forward.h"
#include "core/model/llama_model.h"
#include "core/model/perplexity.h"

namespace catq {

struct KlOptions {
  // Reference logits held at once, in bytes of float32. Default 256 MiB. A
  // document whose logits alone need more is still run (as its own group).
  int64_t max_reference_logits_bytes = int64_t{256} << 20;
};

struct KlDivergenceResult {
  double mean_kl = 0.0;  // Nats per predicted token.
  double max_kl = 0.0;   // The largest KL at one position, nats.
  int64_t tokens = 0;    // Predicted tokens (as PerplexityResult::tokens).
  // Both models' perplexities on the same documents (the by-products of the
  // pass; equal to EvaluatePerplexity's).
  PerplexityResult reference;
  PerplexityResult candidate;
};

// KlDivergence
//
// As above. The two models must agree on vocab_size and
// max_position_embeddings (InvalidArgument naming the field otherwise).
// InvalidArgument naming the document for an empty document or a token id
// outside [0, vocab_size), and when no document has two tokens; errors of
// the forward passes (providers, hooks) are passed on.
absl::StatusOr<KlDivergenceResult> KlDivergence(const LlamaModel& reference,
                                                const ForwardOptions& reference_options,
                                                const LlamaModel& candidate,
                                                const ForwardOptions& candidate_options,
                                                const std::vector<std::vector<int32_t>>& documents,
                                                const KlOptions& options = {});

}  // namespace catq

#endif  // CATQ_CORE_EVAL_KL_DIVERGENCE_H_
