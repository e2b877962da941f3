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
#include <optional>
#include <string>
#include <vector>

#include "core/cat/recipe.h"
#include "core/cat/sqnr_analysis.h"
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
  // The SQNR decomposition on the calibration samples (sqnr_analysis.h), of
  // the original weight on the original activations and of the quantized
  // weight W T^-1 on T x; absent without samples.
  std::optional<LinearSqnrReport> sqnr_before;
  std::optional<LinearSqnrReport> sqnr_after;
};

// Where a site's time went. The stages are what an operator tunes: the
// solve grows with k, quantize with GPTQ, measure with the sample tokens.
struct StageSeconds {
  double solve = 0.0;     // statistics to T (eigen-solves, Hadamard setup) and cond(T)
  double quantize = 0.0;  // W T^-1 and the weight quantizer (RTN or GPTQ)
  double pack = 0.0;      // int4 packing, scales, dequantized copy
  double measure = 0.0;   // SQNR before and after on the samples
};

// One activation site: its transform and the site-level SQNR figures.
struct SiteReport {
  std::string key;  // "model.layers.3.mlp_in"
  int64_t layer = 0;
  std::string site;
  int64_t dim = 0;
  std::string transform = "identity";  // identity, smoothquant, hadamard, cat
  int64_t block_size = 0;              // k of the block factor, 0 when none
  int64_t mixing_q = 0;                // q of the mixing matrix, 0 when none
  // cond_2(T), max |T_b X_b - I| and the blocks that needed damping, clipping
  // or stayed identity (block CAT only; see BlockCatReport).
  double condition = 1.0;
  double max_inverse_residual = 0.0;
  int64_t damped_blocks = 0;
  int64_t clipped_blocks = 0;
  int64_t identity_blocks = 0;
  int64_t sample_tokens = 0;
  std::optional<LinearSqnrReport> sqnr_before;  // the site's linears as one
  std::optional<LinearSqnrReport> sqnr_after;
  double seconds = 0.0;  // solve, transform, quantize and measure
  StageSeconds stages;   // where those seconds went
};

// Where the calibration statistics came from.
struct CalibrationReport {
  std::string source = "none";  // none, text, statistics
  std::string path;
  int64_t documents = 0;      // text: documents used
  int64_t tokens = 0;         // text: tokens run through the model
  int64_t max_documents = 0;  // the limits asked for (0: none)
  int64_t max_tokens = 0;
  int64_t statistics_block_size = 0;  // 0: full Sx matrices
  // Sequential mode: each layer measured behind the quantized layers before
  // it (core/output/sequential_calibration.h); written as "mode".
  bool sequential = false;
  double seconds = 0.0;
};

// CalibrationModeName: "sequential", or "fp" (every layer measured behind
// the float model), as the report writes CalibrationReport::sequential.
inline const char* CalibrationModeName(bool sequential) { return sequential ? "sequential" : "fp"; }

struct QuantizationReport {
  std::string model_dir;  // The input, as given.
  std::string model_name;
  int64_t num_layers = 0;
  Recipe recipe;
  std::vector<LinearReport> linears;
  std::vector<SiteReport> sites;  // empty for RTN without calibration
  CalibrationReport calibration;
  uint64_t input_bytes = 0;   // All input tensors.
  uint64_t output_bytes = 0;  // All output tensors (data, without headers).
  std::vector<std::string> shard_files;
  // Sites whose transform runs online at inference (quantization_config
  // sites[...].online, stored as `.catq.` tensors) and sites whose diagonal
  // transform was folded into the weights. No online site: the output is
  // zero-overhead, plain compressed-tensors (and GPTQ when 4-bit) to a
  // standard engine. Written as totals.online_transform_sites,
  // totals.folded_sites and totals.zero_overhead.
  int64_t online_sites = 0;
  int64_t folded_sites = 0;
  double read_seconds = 0.0;         // Reading and converting input weights.
  double calibration_seconds = 0.0;  // The calibration forward pass or reading statistics.
  double quantize_seconds = 0.0;     // Transforms, quantization and packing.
  double write_seconds = 0.0;        // Writing shards, index, config, report.
  double total_seconds = 0.0;
  // cat-auto: the block size chosen per site, its predicted gain and the
  // online cost (core/output/auto_block_size.h); null otherwise.
  nlohmann::json block_size_choice;
  // Mixed precision: the bits chosen per site and their predicted SQNR
  // (core/output/auto_bits.h); null otherwise.
  nlohmann::json bit_allocation;
};

// The report's JSON: {"catq_version", "model", "recipe", "linears": [...],
// "totals": {...}, "timings_seconds": {...}}.
nlohmann::json QuantizationReportToJson(const QuantizationReport& report);

// One site's and one linear's entries of the report, as in "sites" and
// "linears" (also printed by `catq analyze --json`).
nlohmann::json SiteReportToJson(const SiteReport& site);
nlohmann::json LinearReportToJson(const LinearReport& linear);

// The recipe as JSON, every field by its option name (also used in the report
// and by the CLI's --json output).
nlohmann::json RecipeToJson(const Recipe& recipe);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_QUANTIZATION_REPORT_H_
