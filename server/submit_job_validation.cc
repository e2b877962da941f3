#include "server/submit_job_validation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/model/llama2c_import.h"
#include "core/model/model_tokenizer.h"
#include "core/output/gptq_export.h"
#include "core/output/site_quantizer.h"
#include "core/util/status_macros.h"
#include "proto/recipe_conversion.h"

namespace catq::server {
namespace {

// The evaluation text is tokenized with the model's tokenizer
// (core/model/model_tokenizer.h), so it must name a text calibration and the
// model must have tokenizer.model or tokenizer.bin.
absl::Status CheckEvaluation(MetadataStore& store, const std::string& tenant,
                             const ModelRecord& model, const std::string& eval_calibration_id) {
  CATQ_ASSIGN_OR_RETURN(CalibrationRecord eval, store.GetCalibration(tenant, eval_calibration_id));
  if (eval.kind != v1::CALIBRATION_KIND_TEXT) {
    return absl::InvalidArgumentError("eval_calibration_id: must name a text calibration");
  }
  const bool has_tokenizer =
      std::any_of(model.files.begin(), model.files.end(),
                  [](const StoredFile& f) { return IsModelTokenizerFile(f.path); });
  if (!has_tokenizer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval_calibration_id: model '", model.id, "' has neither ", kSentencePieceModelFileName,
        " (SentencePiece) nor ", kLlama2cTokenizerFileName,
        " (llama2.c) to tokenize the evaluation text with"));
  }
  return absl::OkStatus();
}

// Sequential calibration runs the model over the calibration layer by layer,
// so it needs one it can run: text or token ids, not uploaded statistics.
absl::Status CheckSequentialCalibration(MetadataStore& store, const std::string& tenant,
                                        const std::string& calibration_id) {
  if (calibration_id.empty()) {
    return absl::InvalidArgumentError(
        "calibration_options.sequential: needs a calibration_id (text or token ids)");
  }
  CATQ_ASSIGN_OR_RETURN(CalibrationRecord calibration,
                        store.GetCalibration(tenant, calibration_id));
  if (calibration.kind == v1::CALIBRATION_KIND_STATISTICS) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration_options.sequential: calibration '", calibration.name,
        "' holds precomputed statistics; sequential mode runs the model over text or token ids"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ValidatedSubmit> ValidateSubmitJobRequest(MetadataStore& store,
                                                         const std::string& tenant,
                                                         const v1::SubmitJobRequest& request) {
  if (request.model_id().empty()) return absl::InvalidArgumentError("model_id: required");
  ValidatedSubmit submit;
  CATQ_ASSIGN_OR_RETURN(submit.recipe, RecipeFromProto(request.recipe()));
  const Recipe& recipe = submit.recipe;
  if (request.export_gptq()) {
    // What the recipe decides; a site that cannot fold on this model fails
    // the job at assembly, naming the site.
    CATQ_RETURN_IF_ERROR(Prefix("export_gptq", CheckRecipeGptqExportable(recipe)));
  }
  CATQ_ASSIGN_OR_RETURN(submit.model, store.GetModel(tenant, request.model_id()));
  if (!request.calibration_id().empty()) {
    CATQ_RETURN_IF_ERROR(store.GetCalibration(tenant, request.calibration_id()).status());
  } else if (RecipeNeedsStatistics(recipe)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration_id: recipe.method '", MethodName(recipe.method), "' with weight quantizer '",
        WeightQuantizerName(recipe.weight_quantizer), "' needs calibration"));
  }
  if (!request.eval_calibration_id().empty()) {
    CATQ_RETURN_IF_ERROR(
        CheckEvaluation(store, tenant, submit.model, request.eval_calibration_id()));
  }
  const v1::CalibrationOptions& options = request.calibration_options();
  if (options.max_documents() < 0 || options.max_tokens() < 0 ||
      (options.has_sample_tokens() && options.sample_tokens() < 0)) {
    return absl::InvalidArgumentError("calibration_options: counts must be >= 0");
  }
  if (options.sequential()) {
    CATQ_RETURN_IF_ERROR(CheckSequentialCalibration(store, tenant, request.calibration_id()));
  }
  if (request.idempotency_key().size() > kMaxIdempotencyKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("idempotency_key: at most ", kMaxIdempotencyKeyBytes, " bytes"));
  }
  return submit;
}

}  // namespace catq::server
