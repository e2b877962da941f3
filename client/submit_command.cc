// `catq submit --model-id ID [--calib-id ID] [--eval-calib-id ID]
// [--idempotency-key K] [--calib-max-docs N --calib-max-tokens N
// --calib-samples N] [--sequential-calibration] [--export-gptq] [recipe flags]` submits a job and
// prints its id.
#include <iostream>
#include <memory>
#include <string>

#include "client/calibration_flags.h"
#include "client/command.h"
#include "client/connection_flags.h"
#include "client/proto_json.h"
#include "client/recipe_flags.h"
#include "core/util/status_macros.h"
#include "proto/recipe_conversion.h"

namespace catq::cli {
namespace {

struct SubmitFlags {
  ConnectionFlags connection;
  std::string model_id;
  std::string calib_id;
  std::string eval_calib_id;
  std::string idempotency_key;
  int64_t calib_max_docs = 0;
  int64_t calib_max_tokens = 0;
  int64_t calib_samples = -1;  // -1: the server's default
  bool sequential_calibration = false;
  uint64_t max_shard_bytes = 0;
  bool export_gptq = false;
  RecipeFlags recipe;
  bool json = false;
};

absl::StatusOr<v1::SubmitJobRequest> MakeRequest(const SubmitFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(Recipe recipe, flags.recipe.ToRecipe());
  v1::SubmitJobRequest request;
  request.set_model_id(flags.model_id);
  request.set_calibration_id(flags.calib_id);
  *request.mutable_recipe() = RecipeToProto(recipe);
  v1::CalibrationOptions& calibration = *request.mutable_calibration_options();
  calibration.set_max_documents(flags.calib_max_docs);
  calibration.set_max_tokens(flags.calib_max_tokens);
  if (flags.calib_samples >= 0) calibration.set_sample_tokens(flags.calib_samples);
  calibration.set_sequential(flags.sequential_calibration);
  request.set_eval_calibration_id(flags.eval_calib_id);
  request.set_idempotency_key(flags.idempotency_key);
  request.set_max_shard_bytes(flags.max_shard_bytes);
  request.set_export_gptq(flags.export_gptq);
  return request;
}

absl::Status RunSubmit(const SubmitFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(v1::SubmitJobRequest request, MakeRequest(flags));
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<client::QuantizerClient> client,
                        ConnectToServer(flags.connection));
  CATQ_ASSIGN_OR_RETURN(v1::SubmitJobResponse response, client->Submit(request));
  std::cout << (flags.json ? ProtoToJson(response).dump(2) : response.job().job_id()) << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddSubmitCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<SubmitFlags>();
  CLI::App* sub = app.add_subcommand("submit", "Submit a quantization job; prints its id");
  AddConnectionFlags(*sub, flags->connection);
  sub->add_option("--model-id", flags->model_id, "Model id from `catq upload --model`")->required();
  sub->add_option("--calib-id", flags->calib_id, "Calibration id from `catq upload --calib-*`");
  sub->add_option("--eval-calib-id", flags->eval_calib_id,
                  "Text calibration id to evaluate the output on (perplexity, KL to FP)");
  sub->add_option("--idempotency-key", flags->idempotency_key,
                  "A second submit with the same key returns the first job");
  AddCalibrationLimitFlags(*sub, flags->calib_max_docs, flags->calib_max_tokens);
  AddSequentialCalibrationFlag(*sub, flags->sequential_calibration);
  sub->add_option("--calib-samples", flags->calib_samples,
                  "Activation tokens kept per site to measure SQNR (0: none; default: the "
                  "server's)");
  sub->add_option("--max-shard-bytes", flags->max_shard_bytes,
                  "Largest output shard (0: the server's default, 2 GiB)")
      ->capture_default_str();
  sub->add_flag("--export-gptq", flags->export_gptq,
                "Also write the GPTQ (AutoGPTQ v1) layout, fetched as gptq/<name>; recipes with "
                "an online transform are refused");
  AddRecipeFlags(*sub, flags->recipe);
  sub->add_flag("--json", flags->json, "Print the SubmitJob response as JSON");
  sub->callback([flags, &run] { run = [flags] { return RunSubmit(*flags); }; });
}

}  // namespace catq::cli
