// File: core/output/quantization_report.h
//
// catq_report.json: what a quantization job did, per linear and in total,
// with every number's unit in its key (architecture.md section 4). The
// in-process quantizer and the service fill the same struct.
//
//   QuantizationReport report;
//   report.linears.push_back({...});
//   CATQ_RETURN_IF_ERROR(WriteFileAtomically(env, path, QuantizationReportToJson(report).dump(2)));
//
// Plain data.
#ifndef CATQ_CORE_OUTPUT_QUANTIZATION_REPORT_H_
#define CATQ_CORE_OUTPUT_QUANTIZATION_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/cat/recipe.h"
#include "nlohmann/json.hpp"

namespace catq {

struct LinearReport {
  std::string module;  // e.g. "model.layers.0.self_attn.q_proj"
  int64_t layer = 0;
  std::string site;  // The activation site it reads: "attn_in", ...
  int64_t rows = 0;  // out features
  int64_t cols = 0;  // in features
  // 10 log10(||W||^2 / ||W - Q(W)||^2) of the weight as quantized (after any
  // transform and folded norm gain), in dB.
  double weight_sqnr_db = 0.0;
  // Largest |W - Q(W)| in units of the element's step; <= 0.5 for RTN.
  double max_error_steps = 0.0;
};

struct QuantizationReport {
  std::string model_dir;  // The input, as given.
  std::string model_name;
  int64_t num_layers = 0;
  Recipe recipe;
  std::vector<LinearReport> linears;
  uint64_t input_bytes = 0;   // All input tensors.
  uint64_t output_bytes = 0;  // All output tensors (data, without headers).
  std::vector<std::string> shard_files;
  double read_seconds = 0.0;      // Reading and converting input weights.
  double quantize_seconds = 0.0;  // RTN and packing.
  double write_seconds = 0.0;     // Writing shards, index, config, report.
  double total_seconds = 0.0;
};

// The report's JSON: {"catq_version", "model", "recipe", "linears": [...],
// "totals": {...}, "timings_seconds": {...}}.
nlohmann::json QuantizationReportToJson(const QuantizationReport& report);

// The recipe as JSON, every field by its option name (also used in the report
// and by the CLI's --json output).
nlohmann::json RecipeToJson(const Recipe& recipe);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_QUANTIZATION_REPORT_H_
