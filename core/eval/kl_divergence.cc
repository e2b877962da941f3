#include "core/eval/kl_divergence.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// RowLogSumExp: log sum_j exp(chunk(r, j)), taken exactly as ComputeTokenNll
// takes it (the float maximum, exp and sum in double), so that the NLLs here
// equal EvaluatePerplexity's bit for bit.
double RowLogSumExp(const Eigen::Ref<const RowMatrixXf>& chunk, Eigen::Index r) {
  const double max = chunk.row(r).maxCoeff();
  double sum = 0.0;
  for (Eigen::Index j = 0; j < chunk.cols(); ++j) sum += std::exp(chunk(r, j) - max);
  return max + std::log(sum);
}

// What one document adds up to, each sum in position order.
struct DocumentSums {
  double reference_nll = 0.0;  // Sum of float NLLs, as EvaluatePerplexity sums them.
  double candidate_nll = 0.0;
  double kl = 0.0;
  double max_kl = 0.0;
};

// The reference's logits rows of one document that predict a token, and the
// log-sum-exp of each.
struct ReferenceRows {
  RowMatrixXf logits;
  std::vector<double> log_sum_exp;
};

absl::Status CheckModels(const LlamaConfig& reference, const LlamaConfig& candidate) {
  if (reference.vocab_size != candidate.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("vocab_size: the reference has ",
                                                   reference.vocab_size, ", the candidate ",
                                                   candidate.vocab_size));
  }
  if (reference.max_position_embeddings != candidate.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_position_embeddings: the reference has ", reference.max_position_embeddings,
        ", the candidate ", candidate.max_position_embeddings));
  }
  return absl::OkStatus();
}

absl::Status CheckDocuments(const std::vector<std::vector<int32_t>>& documents, int64_t vocab) {
  for (size_t d = 0; d < documents.size(); ++d) {
    if (documents[d].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("document ", d, " is empty"));
    }
    for (size_t t = 0; t < documents[d].size(); ++t) {
      const int32_t id = documents[d][t];
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat(
            "document ", d, ", position ", t, ": token id ", id, " is outside [0, ", vocab, ")"));
      }
    }
  }
  return absl::OkStatus();
}

// The documents (truncated) that predict at least one token, with their
// indices among all documents.
struct Work {
  std::vector<TokenSpan> spans;
  std::vector<size_t> document;
};

// One group of Work items [begin, end): the reference pass, then the
// candidate pass compared row by row against it.
class GroupRunner {
 public:
  GroupRunner(const Work& work, size_t begin, size_t end, int64_t vocab,
              std::vector<DocumentSums>& sums)
      : spans_(work.spans.data() + begin, end - begin),
        document_(work.document.data() + begin),
        vocab_(vocab),
        sums_(sums),
        rows_(end - begin) {}

  absl::Status Run(const LlamaModel& reference, const ForwardOptions& reference_options,
                   const LlamaModel& candidate, const ForwardOptions& candidate_options) {
    for (size_t i = 0; i < spans_.size(); ++i) {
      const Eigen::Index predicted = static_cast<Eigen::Index>(spans_[i].size()) - 1;
      rows_[i].logits.resize(predicted, vocab_);
      rows_[i].log_sum_exp.resize(static_cast<size_t>(predicted));
    }
    CATQ_RETURN_IF_ERROR(
        RunForward(reference, spans_, reference_options,
                   [this](int64_t s, int64_t first, const Eigen::Ref<const RowMatrixXf>& chunk) {
                     return KeepReference(s, first, chunk);
                   }));
    return RunForward(candidate, spans_, candidate_options,
                      [this](int64_t s, int64_t first, const Eigen::Ref<const RowMatrixXf>& chunk) {
                        return CompareCandidate(s, first, chunk);
                      });
  }

 private:
  absl::Status KeepReference(int64_t s, int64_t first, const Eigen::Ref<const RowMatrixXf>& chunk) {
    const TokenSpan tokens = spans_[static_cast<size_t>(s)];
    ReferenceRows& rows = rows_[static_cast<size_t>(s)];
    DocumentSums& sums = sums_[document_[s]];
    for (Eigen::Index r = 0; r < chunk.rows(); ++r) {
      const int64_t position = first + r;
      if (position + 1 >= static_cast<int64_t>(tokens.size())) break;  // Nothing to predict.
      const double lse = RowLogSumExp(chunk, r);
      rows.logits.row(position) = chunk.row(r);
      rows.log_sum_exp[static_cast<size_t>(position)] = lse;
      sums.reference_nll += static_cast<float>(lse - chunk(r, tokens[position + 1]));
    }
    return absl::OkStatus();
  }

  absl::Status CompareCandidate(int64_t s, int64_t first,
                                const Eigen::Ref<const RowMatrixXf>& chunk) {
    const TokenSpan tokens = spans_[static_cast<size_t>(s)];
    const ReferenceRows& rows = rows_[static_cast<size_t>(s)];
    DocumentSums& sums = sums_[document_[s]];
    for (Eigen::Index r = 0; r < chunk.rows(); ++r) {
      const int64_t position = first + r;
      if (position + 1 >= static_cast<int64_t>(tokens.size())) break;
      const double lse = RowLogSumExp(chunk, r);
      sums.candidate_nll += static_cast<float>(lse - chunk(r, tokens[position + 1]));
      const double reference_lse = rows.log_sum_exp[static_cast<size_t>(position)];
      double kl = 0.0;
      for (Eigen::Index j = 0; j < chunk.cols(); ++j) {
        const double log_p = rows.logits(position, j) - reference_lse;
        const double log_q = chunk(r, j) - lse;
        kl += std::exp(log_p) * (log_p - log_q);
      }
      sums.kl += kl;
      sums.max_kl = std::max(sums.max_kl, kl);
    }
    return absl::OkStatus();
  }

  const absl::Span<const TokenSpan> spans_;
  const size_t* const document_;
  const int64_t vocab_;
  std::vector<DocumentSums>& sums_;
  std::vector<ReferenceRows> rows_;
};

PerplexityResult ToPerplexity(double total_nll, int64_t tokens, int64_t documents,
                              int64_t truncated) {
  PerplexityResult result;
  result.tokens = tokens;
  result.documents = documents;
  result.truncated_documents = truncated;
  result.mean_nll = total_nll / static_cast<double>(tokens);
  result.perplexity = std::exp(result.mean_nll);
  return result;
}

}  // namespace

absl::StatusOr<KlDivergenceResult> KlDivergence(const LlamaModel& reference,
                                                const ForwardOptions& reference_options,
                                                const LlamaModel& candidate,
                                                const ForwardOptions& candidate_options,
                                                const std::vector<std::vector<int32_t>>& documents,
                                                const KlOptions& options) {
  CATQ_RETURN_IF_ERROR(CheckModels(reference.config(), candidate.config()));
  const int64_t vocab = reference.config().vocab_size;
  CATQ_RETURN_IF_ERROR(CheckDocuments(documents, vocab));
  const int64_t context = reference.config().max_position_embeddings;
  Work work;
  int64_t truncated = 0;
  for (size_t d = 0; d < documents.size(); ++d) {
    const int64_t length = static_cast<int64_t>(documents[d].size());
    if (length > context) ++truncated;
    // A one-token document predicts nothing: skipping it changes no sum.
    if (length < 2) continue;
    work.spans.push_back(
        TokenSpan(documents[d]).first(static_cast<size_t>(std::min(length, context))));
    work.document.push_back(d);
  }
  if (work.spans.empty()) {
    return absl::InvalidArgumentError(
        "no document has two tokens: KL divergence needs at least one predicted token");
  }

  std::vector<DocumentSums> sums(documents.size());
  const int64_t row_bytes = vocab * static_cast<int64_t>(sizeof(float));
  size_t begin = 0;
  while (begin < work.spans.size()) {
    size_t end = begin + 1;
    int64_t bytes = static_cast<int64_t>(work.spans[begin].size() - 1) * row_bytes;
    while (end < work.spans.size()) {
      const int64_t more = static_cast<int64_t>(work.spans[end].size() - 1) * row_bytes;
      if (bytes + more > options.max_reference_logits_bytes) break;
      bytes += more;
      ++end;
    }
    GroupRunner group(work, begin, end, vocab, sums);
    CATQ_RETURN_IF_ERROR(group.Run(reference, reference_options, candidate, candidate_options));
    begin = end;
  }

  KlDivergenceResult result;
  double reference_nll = 0.0, candidate_nll = 0.0, kl = 0.0;
  for (size_t i = 0; i < work.spans.size(); ++i) {
    const DocumentSums& s = sums[work.document[i]];
    reference_nll += s.reference_nll;
    candidate_nll += s.candidate_nll;
    kl += s.kl;
    result.max_kl = std::max(result.max_kl, s.max_kl);
    result.tokens += static_cast<int64_t>(work.spans[i].size()) - 1;
  }
  const int64_t count = static_cast<int64_t>(documents.size());
  result.mean_kl = kl / static_cast<double>(result.tokens);
  result.reference = ToPerplexity(reference_nll, result.tokens, count, truncated);
  result.candidate = ToPerplexity(candidate_nll, result.tokens, count, truncated);
  return result;
}

}  // namespace catq
