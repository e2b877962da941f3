#include "core/output/in_process_quantizer.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "core/io/staged_directory.h"
#include "core/output/auto_bits.h"
#include "core/output/auto_block_size.h"
#include "core/output/calibration_data.h"
#include "core/output/layer_quantizer.h"
#include "core/output/output_assembler.h"
#include "core/output/output_plan.h"
#include "core/output/site_quantizer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

absl::Status CheckRecipeSupported(const Recipe& recipe, const InProcessOptions& options) {
  const CalibrationInput& calibration = options.calibration;
  CATQ_RETURN_IF_ERROR(Prefix("recipe", recipe.Validate()));
  if (!calibration.text_path.empty() + !calibration.token_ids_path.empty() +
          !calibration.statistics_path.empty() >
      1) {
    return absl::InvalidArgumentError(
        "calibration: give one of a text file, a token id file or a statistics file");
  }
  if (RecipeNeedsStatistics(recipe) && calibration.empty() && options.calibration_data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "recipe.method '", MethodName(recipe.method), "' with weight quantizer '",
        WeightQuantizerName(recipe.weight_quantizer),
        "' needs calibration: a text file (--calib-text), token ids (--calib-tokens) or "
        "statistics (--calib-stats)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<QuantizationReport> QuantizeModelInProcess(Env* env, const std::string& model_dir,
                                                          const std::string& out_dir,
                                                          const Recipe& recipe,
                                                          const InProcessOptions& options) {
  const uint64_t start = env->NowMicros();
  CATQ_RETURN_IF_ERROR(CheckRecipeSupported(recipe, options));
  CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(model_dir, env));
  // The plan checks that the output can store the recipe before any work.
  CATQ_RETURN_IF_ERROR(PlanOutput(model, recipe).status());
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<StagedDirectory> staged,
                        StagedDirectory::Create(env, out_dir, options.replace));

  QuantizationReport report = NewQuantizationReport(model, model_dir, recipe);
  CalibrationData loaded;
  if (options.calibration_data != nullptr) {
    report.calibration.source = "preloaded";
    CATQ_RETURN_IF_ERROR(
        CheckStatisticsCover(model.config(), options.calibration_data->statistics));
  } else {
    CATQ_ASSIGN_OR_RETURN(loaded, LoadCalibration(env, model, model_dir, recipe,
                                                  options.calibration, &report.calibration));
  }
  const CalibrationData& inputs =
      options.calibration_data != nullptr ? *options.calibration_data : loaded;
  report.calibration_seconds = report.calibration.seconds;
  // cat-auto: one block size per site, chosen once from the statistics
  // before any layer is quantized (the service resolves the same way).
  Recipe resolved = recipe;
  const LayerStatisticsSource layer_statistics =
      [&](int64_t layer) -> absl::StatusOr<SiteStatisticsMap> {
    SiteStatisticsMap layer_stats;
    for (Site site : kAllSites) {
      const std::string key = SiteQualifiedName(layer, site);
      auto it = inputs.statistics.find(key);
      if (it != inputs.statistics.end()) layer_stats.emplace(key, it->second);
    }
    return layer_stats;
  };
  if (recipe.is_auto()) {
    CATQ_ASSIGN_OR_RETURN(AutoBlockSizes chosen,
                          ResolveAutoBlockSizes(model, recipe, layer_statistics));
    resolved = std::move(chosen.recipe);
    report.recipe = resolved;
    report.block_size_choice = std::move(chosen.report);
  }
  // Mixed precision: each site's bits, chosen after its block size.
  if (recipe.allocates_bits()) {
    CATQ_ASSIGN_OR_RETURN(AutoBits chosen, ResolveAutoBits(model, resolved, layer_statistics));
    resolved = std::move(chosen.recipe);
    report.recipe = resolved;
    report.bit_allocation = std::move(chosen.report);
  }

  AssembleOptions assemble;
  assemble.max_shard_bytes = options.max_shard_bytes;
  assemble.start_micros = start;
  assemble.on_linear = options.on_linear;
  const LayerResultSource quantize_layer = [&](int64_t layer) {
    return QuantizeLayer(model, resolved, layer, inputs);
  };
  CATQ_RETURN_IF_ERROR(AssembleOutput(env, model, model_dir, resolved, quantize_layer, assemble,
                                      staged->path(), &report));
  CATQ_RETURN_IF_ERROR(staged->Publish());
  return report;
}

}  // namespace catq
