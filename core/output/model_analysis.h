// File: core/output/model_analysis.h
//
// `catq analyze`: for every site of every layer, the SQNR decomposition
// (C(x), C(W), A, A_max, predicted and measured SQNR; cat-method.md section
// 1) with no transform, with the Hadamard mixing and with block CAT at the
// chosen k, on the calibration samples, so a user sees where alignment is
// lost before quantizing anything. Nothing is written.
//
//   CATQ_ASSIGN_OR_RETURN(ModelAnalysis analysis,
//                         AnalyzeModel(env, "models/m", recipe, calibration));
//   for (const SiteAnalysis& site : analysis.sites) site.variants[2].report.sqnr_after ...
//
// Thread-safety: independent calls may run concurrently.
#ifndef CATQ_CORE_OUTPUT_MODEL_ANALYSIS_H_
#define CATQ_CORE_OUTPUT_MODEL_ANALYSIS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/recipe.h"
#include "core/io/env.h"
#include "core/output/calibration_data.h"
#include "core/output/quantization_report.h"
#include "nlohmann/json.hpp"

namespace catq {

// One transform applied to one site.
struct SiteVariant {
  SiteReport report;                  // sqnr_after: with this transform
  std::vector<LinearReport> linears;  // the site's linears, same figures
};

struct SiteAnalysis {
  std::string key;  // "model.layers.3.mlp_in"
  int64_t layer = 0;
  std::string site;
  int64_t dim = 0;
  std::vector<SiteVariant> variants;  // in ModelAnalysis::variant_names order
};

struct ModelAnalysis {
  std::vector<std::string> variant_names;  // "none", "hadamard", "cat k=32"
  CalibrationReport calibration;
  std::vector<SiteAnalysis> sites;
};

// AnalysisRecipes: the variants analyzed, built from `base` (its grids,
// weight quantizer, damping and options): none, hadamard, cat with
// base.block_size. Names go to `names`.
std::vector<Recipe> AnalysisRecipes(const Recipe& base, std::vector<std::string>* names);

// AnalyzeModel
//
// Calibrates once from `calibration` (text: samples are needed for the
// measured figures) and runs each variant's site task on every site.
// Errors: those of the model, the calibration and the site tasks (naming the
// site); InvalidArgument when `calibration` is empty or keeps no samples.
absl::StatusOr<ModelAnalysis> AnalyzeModel(Env* env, const std::string& model_dir,
                                           const Recipe& base, const CalibrationInput& calibration);

// ModelAnalysisToJson: {"variants", "calibration", "sites": [{"key", "dim",
// "variants": {name: {site report fields, "linears": [...]}}}]}.
nlohmann::json ModelAnalysisToJson(const ModelAnalysis& analysis);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_MODEL_ANALYSIS_H_
