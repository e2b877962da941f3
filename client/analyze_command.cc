// `catq analyze --model DIR --calib-text FILE [--block-size K] [--json]`:
// per layer and site, the concentration-alignment decomposition of the W x A
// SQNR with no transform, Hadamard and block CAT, measured and predicted on
// calibration samples. Quantizes nothing and writes nothing.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "client/command.h"
#include "client/recipe_flags.h"
#include "core/io/env.h"
#include "core/output/model_analysis.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct AnalyzeFlags {
  std::string model;
  std::string calib_text;
  int64_t calib_max_docs = 64;
  int64_t calib_max_tokens = 0;
  int64_t calib_samples = 512;
  int threads = 0;
  RecipeFlags recipe;
  bool json = false;
};

// One row per site: for each variant, alignment A and the measured SQNR with
// the prediction in parentheses, all in dB.
void PrintTable(const ModelAnalysis& analysis) {
  std::cout << absl::StrFormat("%-24s %6s %8s", "site", "dim", "C(x)");
  for (const std::string& name : analysis.variant_names) {
    std::cout << absl::StrFormat(" | %-26s", name + ": A, SQNR (pred)");
  }
  std::cout << "\n";
  std::vector<double> sums(analysis.variant_names.size(), 0.0);
  for (const SiteAnalysis& site : analysis.sites) {
    const LinearSqnrReport& none = *site.variants[0].report.sqnr_after;
    std::cout << absl::StrFormat("%-24s %6d %8.2f", site.key, site.dim,
                                 none.activation_concentration_db);
    for (size_t v = 0; v < site.variants.size(); ++v) {
      const LinearSqnrReport& r = *site.variants[v].report.sqnr_after;
      std::cout << absl::StrFormat(" | A %6.2f  %6.2f (%6.2f)  ", r.alignment_db,
                                   r.measured_sqnr_db, r.predicted_sqnr_db);
      sums[v] += r.measured_sqnr_db;
    }
    std::cout << "\n";
  }
  std::cout << "mean measured site SQNR (dB):";
  for (size_t v = 0; v < sums.size(); ++v) {
    std::cout << absl::StrFormat("  %s %.2f", analysis.variant_names[v],
                                 sums[v] / static_cast<double>(analysis.sites.size()));
  }
  std::cout << absl::StrFormat("\ncalibration: %d documents, %d tokens; dB throughout\n",
                               analysis.calibration.documents, analysis.calibration.tokens);
}

absl::Status RunAnalyze(const AnalyzeFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(Recipe recipe, flags.recipe.ToRecipe());
  CalibrationInput calibration;
  calibration.text_path = flags.calib_text;
  calibration.text.max_documents = flags.calib_max_docs;
  calibration.text.max_tokens = flags.calib_max_tokens;
  calibration.sample_tokens = flags.calib_samples;
  calibration.threads = flags.threads;
  CATQ_ASSIGN_OR_RETURN(ModelAnalysis analysis,
                        AnalyzeModel(Env::Default(), flags.model, recipe, calibration));
  if (flags.json) {
    std::cout << ModelAnalysisToJson(analysis).dump(2) << "\n";
  } else {
    PrintTable(analysis);
  }
  return absl::OkStatus();
}

}  // namespace

void AddAnalyzeCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<AnalyzeFlags>();
  flags->recipe.block_size = 32;
  flags->recipe.a_bits = 4;
  CLI::App* sub = app.add_subcommand(
      "analyze", "SQNR decomposition per site: none vs Hadamard vs block CAT (nothing written)");
  sub->add_option("--model", flags->model, "Hugging Face Llama directory")->required();
  sub->add_option("--calib-text", flags->calib_text, "Calibration text file")->required();
  sub->add_option("--calib-max-docs", flags->calib_max_docs, "First N documents (0: all)")
      ->capture_default_str();
  sub->add_option("--calib-max-tokens", flags->calib_max_tokens, "Token budget (0: none)")
      ->capture_default_str();
  sub->add_option("--calib-samples", flags->calib_samples, "Tokens per site measured on")
      ->capture_default_str();
  sub->add_option("--threads", flags->threads, "Forward pass threads (0: all cores)");
  AddRecipeFlags(*sub, flags->recipe);
  sub->add_flag("--json", flags->json, "Print the analysis as JSON");
  sub->callback([flags, &run] { run = [flags] { return RunAnalyze(*flags); }; });
}

}  // namespace catq::cli
