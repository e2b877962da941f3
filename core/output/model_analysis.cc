#include "core/output/model_analysis.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/output/site_quantizer.h"
#include "core/util/status_macros.h"

namespace catq {

std::vector<Recipe> AnalysisRecipes(const Recipe& base, std::vector<std::string>* names) {
  std::vector<Recipe> recipes;
  for (Method method : {Method::kRtn, Method::kHadamard, Method::kCat}) {
    Recipe recipe = base;
    recipe.method = method;
    recipes.push_back(recipe);
  }
  *names = {"none", "hadamard", absl::StrCat("cat k=", base.block_size)};
  return recipes;
}

absl::StatusOr<ModelAnalysis> AnalyzeModel(Env* env, const std::string& model_dir,
                                           const Recipe& base,
                                           const CalibrationInput& calibration) {
  CATQ_RETURN_IF_ERROR(Prefix("recipe", base.Validate()));
  if (calibration.text_path.empty() || calibration.sample_tokens <= 0) {
    return absl::InvalidArgumentError(
        "analyze measures SQNR on activation samples: give calibration text and keep samples");
  }
  CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(model_dir, env));
  ModelAnalysis analysis;
  const std::vector<Recipe> recipes = AnalysisRecipes(base, &analysis.variant_names);
  CATQ_ASSIGN_OR_RETURN(CalibrationData data, LoadCalibration(env, model, model_dir, recipes.back(),
                                                              calibration, &analysis.calibration));
  for (int64_t layer = 0; layer < model.config().num_hidden_layers; ++layer) {
    for (Site site : kAllSites) {
      const std::string key = SiteQualifiedName(layer, site);
      SiteAnalysis entry;
      entry.key = key;
      entry.layer = layer;
      entry.site = std::string(SiteName(site));
      for (const Recipe& recipe : recipes) {
        CATQ_ASSIGN_OR_RETURN(SiteWeights weights, ReadSiteWeights(model, layer, site, recipe));
        entry.dim = weights.dim();
        CATQ_ASSIGN_OR_RETURN(
            SiteResult result,
            QuantizeSite(recipe, weights, &data.statistics.at(key), &data.samples.at(key)));
        entry.variants.push_back({std::move(result.report), std::move(result.linears)});
      }
      analysis.sites.push_back(std::move(entry));
    }
  }
  return analysis;
}

nlohmann::json ModelAnalysisToJson(const ModelAnalysis& analysis) {
  nlohmann::json sites = nlohmann::json::array();
  for (const SiteAnalysis& site : analysis.sites) {
    nlohmann::json variants = nlohmann::json::object();
    for (size_t v = 0; v < site.variants.size(); ++v) {
      nlohmann::json entry = SiteReportToJson(site.variants[v].report);
      nlohmann::json linears = nlohmann::json::array();
      for (const LinearReport& linear : site.variants[v].linears) {
        linears.push_back(LinearReportToJson(linear));
      }
      entry["linears"] = std::move(linears);
      variants[analysis.variant_names[v]] = std::move(entry);
    }
    sites.push_back({{"key", site.key},
                     {"layer", site.layer},
                     {"site", site.site},
                     {"dim", site.dim},
                     {"variants", std::move(variants)}});
  }
  nlohmann::json calibration = {{"source", analysis.calibration.source},
                                {"path", analysis.calibration.path},
                                {"documents", analysis.calibration.documents},
                                {"tokens", analysis.calibration.tokens}};
  return {{"variants", analysis.variant_names},
          {"calibration", std::move(calibration)},
          {"sites", std::move(sites)}};
}

}  // namespace catq
