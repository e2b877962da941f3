// File: core/eval/output_evaluation.h
//
// The evaluation a quantization can end with (architecture.md section 4,
// catq_report.json "evaluation"): perplexity of the output as stored (its
// packed shards, run fake-quantized), of the floating-point model it came
// from, and the mean KL divergence between them, on the documents of a text
// file. `catq quantize --eval-text` and the server's evaluation stage both
// call this, so their reports agree.
//
//   CATQ_ASSIGN_OR_RETURN(OutputEvaluation e,
//                         EvaluateOutput(model_dir, output_dir, text_path, {}));
//   CATQ_RETURN_IF_ERROR(AddEvaluationToReport(env, output_dir, e, "eval.txt"));
#ifndef CATQ_CORE_EVAL_OUTPUT_EVALUATION_H_
#define CATQ_CORE_EVAL_OUTPUT_EVALUATION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/io/env.h"
#include "core/model/llama_forward.h"
#include "nlohmann/json.hpp"

namespace catq {

struct OutputEvaluation {
  int64_t documents = 0;
  int64_t tokens = 0;  // predicted tokens
  double perplexity = 0.0;
  double fp_perplexity = 0.0;
  double kl_to_fp = 0.0;  // nats per predicted token
};

// EvaluateOutput: the figures above for `output_dir` (a catq output of the
// model in `model_dir`) on `text_path`, tokenized with the model's
// tokenizer. Errors name the directory or file at fault.
absl::StatusOr<OutputEvaluation> EvaluateOutput(const std::string& model_dir,
                                                const std::string& output_dir,
                                                const std::string& text_path,
                                                const ForwardOptions& options);

// OutputEvaluationToJson: the report's "evaluation" object; `text_name`
// names the text (a path, or the name of an uploaded calibration).
nlohmann::json OutputEvaluationToJson(const OutputEvaluation& evaluation,
                                      const std::string& text_name);

// AddEvaluationToReport: rewrites `output_dir`/catq_report.json (atomically)
// with the "evaluation" object added.
absl::Status AddEvaluationToReport(Env* env, const std::string& output_dir,
                                   const OutputEvaluation& evaluation,
                                   const std::string& text_name);

}  // namespace catq

#endif  // CATQ_CORE_EVAL_OUTPUT_EVALUATION_H_
