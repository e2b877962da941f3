#include "core/eval/output_evaluation.h"

#include <vector>

#include "core/eval/eval_documents.h"
#include "core/eval/evaluate.h"
#include "core/eval/quantized_model.h"
#include "core/model/llama_model.h"
#include "core/util/status_macros.h"

namespace catq {

absl::StatusOr<OutputEvaluation> EvaluateOutput(const std::string& model_dir,
                                                const std::string& output_dir,
                                                const std::string& text_path,
                                                const ForwardOptions& options) {
  CATQ_ASSIGN_OR_RETURN(LlamaModel fp, LlamaModel::Open(model_dir));
  absl::StatusOr<QuantizedModel> quantized = QuantizedModel::Open(output_dir);
  if (!quantized.ok()) return Prefix(output_dir, quantized.status());
  CATQ_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> documents,
                        ReadEvalDocuments(model_dir, text_path, fp.config().vocab_size));
  CATQ_ASSIGN_OR_RETURN(KlDivergenceResult r,
                        CompareQuantizedToReference(fp, *quantized, documents, options));
  OutputEvaluation evaluation;
  evaluation.documents = r.candidate.documents;
  evaluation.tokens = r.candidate.tokens;
  evaluation.perplexity = r.candidate.perplexity;
  evaluation.fp_perplexity = r.reference.perplexity;
  evaluation.kl_to_fp = r.mean_kl;
  return evaluation;
}

nlohmann::json OutputEvaluationToJson(const OutputEvaluation& evaluation,
                                      const std::string& text_name) {
  return nlohmann::json{{"text", text_name},
                        {"documents", evaluation.documents},
                        {"tokens", evaluation.tokens},
                        {"perplexity", evaluation.perplexity},
                        {"fp_perplexity", evaluation.fp_perplexity},
                        {"kl_to_fp", evaluation.kl_to_fp},
                        {"units", {{"kl_to_fp", "nats per predicted token"}}}};
}

absl::Status AddEvaluationToReport(Env* env, const std::string& output_dir,
                                   const OutputEvaluation& evaluation,
                                   const std::string& text_name) {
  const std::string path = output_dir + "/catq_report.json";
  CATQ_ASSIGN_OR_RETURN(std::string text, env->ReadFile(path));
  nlohmann::json report = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded() || !report.is_object()) {
    return absl::DataLossError(path + ": not a JSON object");
  }
  report["evaluation"] = OutputEvaluationToJson(evaluation, text_name);
  return WriteFileAtomically(env, path, report.dump(2) + "\n");
}

}  // namespace catq
