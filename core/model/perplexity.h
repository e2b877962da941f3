// File: core/model/perplexity.h
//
// Perplexity of a Llama model on tokenized documents (see text_documents.h),
// as catq reports it: each document is truncated to the model's context
// (max_position_embeddings tokens), every position but the first is predicted
// from the ones before it, and the mean negative log-likelihood over all
// predicted tokens of all documents (each token weighs the same, so long
// documents weigh more) gives perplexity = exp(mean NLL). Documents run in
// parallel through RunForward (llama_forward.h), so the forward options,
// hooks and weight providers included, apply: the perplexity of a fake-
// quantized model is this call with its provider and hooks.
//
//   CATQ_ASSIGN_OR_RETURN(std::vector<std::string> docs, ReadTextDocuments(env, text_path));
//   CATQ_ASSIGN_OR_RETURN(PerplexityResult r,
//                         EvaluatePerplexity(model, TokenizeDocuments(tokenizer, docs), {}));
//   std::cout << r.perplexity << " over " << r.tokens << " tokens\n";
//
// Thread-safety: as RunForward.
#ifndef CATQ_CORE_MODEL_PERPLEXITY_H_
#define CATQ_CORE_MODEL_PERPLEXITY_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/llama_forward.h"
#include "core/model/llama_model.h"

namespace catq {

struct PerplexityResult {
  double mean_nll = 0.0;            // Nats per predicted token.
  double perplexity = 0.0;          // exp(mean_nll).
  int64_t tokens = 0;               // Predicted tokens: the sum of (length after truncation - 1).
  int64_t documents = 0;            // Documents evaluated (all given).
  int64_t truncated_documents = 0;  // Documents cut to max_position_embeddings.
};

// EvaluatePerplexity
//
// As above. InvalidArgument when no document has two tokens (nothing to
// predict); RunForward's errors otherwise (an empty document, a bad token id).
// The sum of NLLs is taken in double, per document then over documents in
// order, so the result does not depend on the thread count.
absl::StatusOr<PerplexityResult> EvaluatePerplexity(
    const LlamaModel& model, const std::vector<std::vector<int32_t>>& documents,
    const ForwardOptions& options = {});

}  // namespace catq

#endif  // CATQ_CORE_MODEL_PERPLEXITY_H_
