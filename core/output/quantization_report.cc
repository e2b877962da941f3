#include "core/output/quantization_report.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace catq {
namespace {

// JSON has no infinity or NaN: an exact weight reports null SQNR, a figure
// that could not be computed (A_max skipped at large d) null as well.
nlohmann::json FiniteOrNull(double db) { return std::isfinite(db) ? nlohmann::json(db) : nullptr; }

// The decomposition with units in the keys; null where a value is not finite.
nlohmann::json SqnrJson(const std::optional<LinearSqnrReport>& r) {
  if (!r.has_value()) return nullptr;
  return {
      {"activation_concentration_db", FiniteOrNull(r->activation_concentration_db)},
      {"weight_concentration_db", FiniteOrNull(r->weight_concentration_db)},
      {"alignment_db", FiniteOrNull(r->alignment_db)},
      {"max_alignment_db", FiniteOrNull(r->max_alignment_db)},
      {"predicted_activation_sqnr_db", FiniteOrNull(r->predicted_activation_sqnr_db)},
      {"predicted_weight_sqnr_db", FiniteOrNull(r->predicted_weight_sqnr_db)},
      {"predicted_sqnr_db", FiniteOrNull(r->predicted_sqnr_db)},
      {"measured_activation_sqnr_db", FiniteOrNull(r->measured_activation_sqnr_db)},
      {"measured_weight_sqnr_db", FiniteOrNull(r->measured_weight_sqnr_db)},
      {"measured_sqnr_db", FiniteOrNull(r->measured_sqnr_db)},
  };
}

}  // namespace

nlohmann::json SiteReportToJson(const SiteReport& site) {
  return {
      {"key", site.key},
      {"layer", site.layer},
      {"site", site.site},
      {"dim", site.dim},
      {"transform", site.transform},
      {"block_size", site.block_size},
      {"mixing_q", site.mixing_q},
      {"condition", FiniteOrNull(site.condition)},
      {"max_inverse_residual", site.max_inverse_residual},
      {"damped_blocks", site.damped_blocks},
      {"clipped_blocks", site.clipped_blocks},
      {"identity_blocks", site.identity_blocks},
      {"sample_tokens", site.sample_tokens},
      {"sqnr_before", SqnrJson(site.sqnr_before)},
      {"sqnr_after", SqnrJson(site.sqnr_after)},
      {"seconds", site.seconds},
      {"stage_seconds",
       {{"solve", site.stages.solve},
        {"quantize", site.stages.quantize},
        {"pack", site.stages.pack},
        {"measure", site.stages.measure}}},
  };
}

namespace {

nlohmann::json CalibrationJson(const CalibrationReport& c) {
  return {
      {"source", c.source},
      {"path", c.path},
      {"documents", c.documents},
      {"tokens", c.tokens},
      {"max_documents", c.max_documents},
      {"max_tokens", c.max_tokens},
      {"statistics_block_size", c.statistics_block_size},
      {"mode", CalibrationModeName(c.sequential)},
      {"seconds", c.seconds},
  };
}

// Mean over the linears with figures of measured and predicted SQNR after the
// transform (dB), and how many agree within 1 dB.
nlohmann::json SqnrTotals(const QuantizationReport& report) {
  double measured = 0.0;
  double predicted = 0.0;
  double before = 0.0;
  int count = 0;
  int within_1db = 0;
  for (const LinearReport& linear : report.linears) {
    if (!linear.sqnr_after.has_value() || !linear.sqnr_before.has_value()) continue;
    measured += linear.sqnr_after->measured_sqnr_db;
    predicted += linear.sqnr_after->predicted_sqnr_db;
    before += linear.sqnr_before->measured_sqnr_db;
    within_1db +=
        std::abs(linear.sqnr_after->measured_sqnr_db - linear.sqnr_after->predicted_sqnr_db) <= 1.0;
    ++count;
  }
  if (count == 0) return nullptr;
  return {{"linears", count},
          {"measured_sqnr_db_mean_before", before / count},
          {"measured_sqnr_db_mean", measured / count},
          {"predicted_sqnr_db_mean", predicted / count},
          {"linears_predicted_within_1db", within_1db}};
}

nlohmann::json Totals(const QuantizationReport& report) {
  double min_sqnr = std::numeric_limits<double>::infinity();
  double sum_sqnr = 0.0;
  int finite = 0;
  double max_steps = 0.0;
  for (const LinearReport& linear : report.linears) {
    max_steps = std::max(max_steps, linear.max_error_steps);
    if (!std::isfinite(linear.weight_sqnr_db)) continue;
    min_sqnr = std::min(min_sqnr, linear.weight_sqnr_db);
    sum_sqnr += linear.weight_sqnr_db;
    ++finite;
  }
  const double ratio =
      report.output_bytes > 0 ? static_cast<double>(report.input_bytes) / report.output_bytes : 0.0;
  return {
      {"linears", report.linears.size()},
      {"input_bytes", report.input_bytes},
      {"output_bytes", report.output_bytes},
      {"compression_ratio", ratio},
      {"weight_sqnr_db_mean", finite > 0 ? nlohmann::json(sum_sqnr / finite) : nullptr},
      {"weight_sqnr_db_min", finite > 0 ? nlohmann::json(min_sqnr) : nullptr},
      {"max_error_steps", max_steps},
      {"shard_files", report.shard_files},
      {"online_transform_sites", report.online_sites},
      {"folded_sites", report.folded_sites},
      {"zero_overhead", report.online_sites == 0},
      {"sqnr", SqnrTotals(report)},
  };
}

}  // namespace

nlohmann::json RecipeToJson(const Recipe& recipe) {
  nlohmann::json json = {
      {"method", std::string(MethodName(recipe.method))},
      {"block_size", recipe.block_size},
      {"damping", recipe.damping},
      {"cat_hadamard", recipe.cat_hadamard},
      {"eigen_clip", recipe.eigen_clip},
      {"normalize_weight_moments", recipe.normalize_weight_moments},
      {"mixing_seed", recipe.mixing_seed},
      {"smoothquant_alpha", recipe.smoothquant_alpha},
      {"w_bits", recipe.weights.bits},
      {"w_group_size", recipe.weights.group_size},
      {"w_symmetric", recipe.weights.symmetric},
      {"weight_quantizer", std::string(WeightQuantizerName(recipe.weight_quantizer))},
      {"gptq_damping", recipe.gptq_damping},
      {"gptq_act_order", recipe.gptq_act_order},
      {"a_bits", recipe.activation_bits},
      {"a_symmetric", recipe.activation_symmetric},
      {"fold_norm_gains", recipe.fold_norm_gains},
      {"scale_dtype", std::string(DTypeName(recipe.scale_dtype))},
      {"kv_cache_bits", recipe.kv_cache_bits},
      {"kv_cache_hadamard", recipe.kv_cache_hadamard},
  };
  // Only for cat-auto, so that fixed-k reports stay as they were.
  if (recipe.is_auto()) json["online_cost_budget"] = recipe.online_cost_budget;
  if (recipe.allocates_bits()) {
    json["average_weight_bits"] = recipe.average_weight_bits;
    json["average_activation_bits"] = recipe.average_activation_bits;
  }
  return json;
}

nlohmann::json LinearReportToJson(const LinearReport& linear) {
  return {
      {"module", linear.module},
      {"layer", linear.layer},
      {"site", linear.site},
      {"shape", {linear.rows, linear.cols}},
      {"weight_sqnr_db", FiniteOrNull(linear.weight_sqnr_db)},
      {"max_error_steps", linear.max_error_steps},
      {"sqnr_before", SqnrJson(linear.sqnr_before)},
      {"sqnr_after", SqnrJson(linear.sqnr_after)},
  };
}

nlohmann::json QuantizationReportToJson(const QuantizationReport& report) {
  nlohmann::json linears = nlohmann::json::array();
  for (const LinearReport& linear : report.linears) {
    linears.push_back(LinearReportToJson(linear));
  }
  nlohmann::json sites = nlohmann::json::array();
  for (const SiteReport& site : report.sites) sites.push_back(SiteReportToJson(site));
  nlohmann::json json = {
      {"catq_report_version", 1},
      {"model",
       {{"dir", report.model_dir}, {"name", report.model_name}, {"num_layers", report.num_layers}}},
      {"recipe", RecipeToJson(report.recipe)},
      {"calibration", CalibrationJson(report.calibration)},
      {"sites", sites},
      {"linears", linears},
      {"totals", Totals(report)},
      {"timings_seconds",
       {{"read", report.read_seconds},
        {"calibration", report.calibration_seconds},
        {"quantize", report.quantize_seconds},
        {"write", report.write_seconds},
        {"total", report.total_seconds}}},
  };
  if (!report.block_size_choice.is_null()) json["block_size_choice"] = report.block_size_choice;
  if (!report.bit_allocation.is_null()) json["bit_allocation"] = report.bit_allocation;
  return json;
}

}  // namespace catq
