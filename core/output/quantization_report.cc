#include "core/output/quantization_report.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace catq {
namespace {

// JSON has no infinity; an exact weight reports null SQNR.
nlohmann::json Decibels(double db) { return std::isfinite(db) ? nlohmann::json(db) : nullptr; }

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
  };
}

}  // namespace

nlohmann::json RecipeToJson(const Recipe& recipe) {
  return {
      {"method", std::string(MethodName(recipe.method))},
      {"block_size", recipe.block_size},
      {"damping", recipe.damping},
      {"cat_hadamard", recipe.cat_hadamard},
      {"smoothquant_alpha", recipe.smoothquant_alpha},
      {"w_bits", recipe.weights.bits},
      {"w_group_size", recipe.weights.group_size},
      {"w_symmetric", recipe.weights.symmetric},
      {"weight_quantizer", std::string(WeightQuantizerName(recipe.weight_quantizer))},
      {"a_bits", recipe.activation_bits},
      {"a_symmetric", recipe.activation_symmetric},
      {"fold_norm_gains", recipe.fold_norm_gains},
      {"scale_dtype", std::string(DTypeName(recipe.scale_dtype))},
  };
}

nlohmann::json QuantizationReportToJson(const QuantizationReport& report) {
  nlohmann::json linears = nlohmann::json::array();
  for (const LinearReport& linear : report.linears) {
    linears.push_back({
        {"module", linear.module},
        {"layer", linear.layer},
        {"site", linear.site},
        {"shape", {linear.rows, linear.cols}},
        {"weight_sqnr_db", Decibels(linear.weight_sqnr_db)},
        {"max_error_steps", linear.max_error_steps},
    });
  }
  return {
      {"catq_report_version", 1},
      {"model",
       {{"dir", report.model_dir}, {"name", report.model_name}, {"num_layers", report.num_layers}}},
      {"recipe", RecipeToJson(report.recipe)},
      {"linears", linears},
      {"totals", Totals(report)},
      {"timings_seconds",
       {{"read", report.read_seconds},
        {"quantize", report.quantize_seconds},
        {"write", report.write_seconds},
        {"total", report.total_seconds}}},
  };
}

}  // namespace catq
