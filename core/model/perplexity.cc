#include "core/model/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/util/status_macros.h"

namespace catq {

absl::StatusOr<PerplexityResult> EvaluatePerplexity(
    const LlamaModel& model, const std::vector<std::vector<int32_t>>& documents,
    const ForwardOptions& options) {
  const int64_t context = model.config().max_position_embeddings;
  PerplexityResult result;
  result.documents = static_cast<int64_t>(documents.size());
  std::vector<TokenSpan> truncated;
  truncated.reserve(documents.size());
  for (const std::vector<int32_t>& document : documents) {
    const int64_t length = static_cast<int64_t>(document.size());
    if (length > context) ++result.truncated_documents;
    truncated.push_back(TokenSpan(document).first(static_cast<size_t>(std::min(length, context))));
  }
  CATQ_ASSIGN_OR_RETURN(std::vector<std::vector<float>> nll,
                        ComputeTokenNll(model, truncated, options));
  double total = 0.0;
  for (const std::vector<float>& document : nll) {
    double sum = 0.0;
    for (float value : document) sum += value;
    total += sum;
    result.tokens += static_cast<int64_t>(document.size());
  }
  if (result.tokens == 0) {
    return absl::InvalidArgumentError(
        "no document has two tokens: perplexity needs at least one predicted token");
  }
  result.mean_nll = total / static_cast<double>(result.tokens);
  result.perplexity = std::exp(result.mean_nll);
  return result;
}

}  // namespace catq
