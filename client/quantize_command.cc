// `catq quantize --model DIR --out DIR [recipe flags] [--json]`: quantizes a
// model and prints a per-layer summary. Without --server it runs in this
// process (streaming, one linear in memory at a time).
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "client/command.h"
#include "client/eval_documents.h"
#include "client/progress.h"
#include "client/recipe_flags.h"
#include "core/eval/evaluate.h"
#include "core/io/env.h"
#include "core/output/in_process_quantizer.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct QuantizeFlags {
  std::string server;
  std::string model;
  std::string out;
  std::string calib_text;
  std::string calib_stats;
  std::string eval_text;
  int64_t calib_max_docs = 0;
  int64_t calib_max_tokens = 0;
  int64_t calib_samples = 512;
  int threads = 0;
  RecipeFlags recipe;
  uint64_t max_shard_bytes = uint64_t{2} << 30;
  bool replace = false;
  bool json = false;
  bool quiet = false;
};

// Per layer and site, the output SQNR measured on the calibration samples
// after the transform and, in parentheses, without it (W x vs Q(W') Q(T x)).
void PrintSqnrSummary(const QuantizationReport& report) {
  if (report.sites.empty() || !report.sites[0].sqnr_after.has_value()) return;
  std::map<int64_t, std::map<std::string, const SiteReport*>> by_layer;
  for (const SiteReport& site : report.sites) by_layer[site.layer][site.site] = &site;
  std::cout << absl::StrFormat("%-6s %16s %16s %16s %16s   (measured SQNR, dB: %s (none))\n",
                               "layer", "attn_in", "attn_out", "mlp_in", "mlp_out",
                               MethodName(report.recipe.method));
  for (const auto& [layer, sites] : by_layer) {
    std::cout << absl::StrFormat("%-6d", layer);
    for (const char* name : {"attn_in", "attn_out", "mlp_in", "mlp_out"}) {
      auto it = sites.find(name);
      if (it == sites.end() || !it->second->sqnr_after.has_value()) {
        std::cout << absl::StrFormat(" %16s", "-");
        continue;
      }
      std::cout << absl::StrFormat(" %7.2f (%6.2f)", it->second->sqnr_after->measured_sqnr_db,
                                   it->second->sqnr_before->measured_sqnr_db);
    }
    std::cout << "\n";
  }
  const nlohmann::json sqnr = QuantizationReportToJson(report)["totals"]["sqnr"];
  if (sqnr.is_null()) return;
  std::cout << absl::StrFormat(
      "per-linear measured SQNR mean %.2f dB (none: %.2f dB), predicted %.2f dB; prediction "
      "within 1 dB on %d of %d linears; calibration %d documents, %d tokens\n",
      sqnr["measured_sqnr_db_mean"].get<double>(),
      sqnr["measured_sqnr_db_mean_before"].get<double>(),
      sqnr["predicted_sqnr_db_mean"].get<double>(), sqnr["linears_predicted_within_1db"].get<int>(),
      sqnr["linears"].get<int>(), report.calibration.documents, report.calibration.tokens);
}

// Mean weight SQNR per layer and site, the figure a user scans first.
void PrintSummary(const QuantizationReport& report, const std::string& out) {
  std::map<int64_t, std::map<std::string, std::pair<double, int>>> by_layer;
  for (const LinearReport& linear : report.linears) {
    auto& [sum, count] = by_layer[linear.layer][linear.site];
    sum += linear.weight_sqnr_db;
    ++count;
  }
  std::cout << absl::StrFormat("%-6s %10s %10s %10s %10s   (weight SQNR, dB)\n", "layer", "attn_in",
                               "attn_out", "mlp_in", "mlp_out");
  for (const auto& [layer, sites] : by_layer) {
    std::cout << absl::StrFormat("%-6d", layer);
    for (const char* site : {"attn_in", "attn_out", "mlp_in", "mlp_out"}) {
      auto it = sites.find(site);
      const double mean = it == sites.end() ? NAN : it->second.first / it->second.second;
      std::cout << absl::StrFormat(" %10.2f", mean);
    }
    std::cout << "\n";
  }
  const nlohmann::json totals = QuantizationReportToJson(report)["totals"];
  std::cout << absl::StrFormat(
      "%d linears quantized (%s), %d -> %d bytes (%.2fx), weight SQNR mean %.2f dB, min %.2f "
      "dB, max error %.3f steps, %.2f s\n",
      report.linears.size(), MethodName(report.recipe.method), report.input_bytes,
      report.output_bytes, totals["compression_ratio"].get<double>(),
      totals["weight_sqnr_db_mean"].get<double>(), totals["weight_sqnr_db_min"].get<double>(),
      totals["max_error_steps"].get<double>(), report.total_seconds);
  PrintSqnrSummary(report);
  std::cout << "output: " << out << " (config.json, catq_report.json, " << report.shard_files.size()
            << " shard(s))\n";
}

// Perplexity and KL to FP of the output as stored (from its shards), for
// catq_report.json's "evaluation".
absl::StatusOr<nlohmann::json> EvaluateOutput(const QuantizeFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(LlamaModel fp, LlamaModel::Open(flags.model));
  CATQ_ASSIGN_OR_RETURN(QuantizedModel quantized, QuantizedModel::Open(flags.out));
  CATQ_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> documents,
                        ReadEvalDocuments(flags.model, flags.eval_text, fp.config().vocab_size));
  CATQ_ASSIGN_OR_RETURN(KlDivergenceResult r,
                        CompareQuantizedToReference(fp, quantized, documents));
  return nlohmann::json{{"text", flags.eval_text},
                        {"documents", r.candidate.documents},
                        {"tokens", r.candidate.tokens},
                        {"perplexity", r.candidate.perplexity},
                        {"fp_perplexity", r.reference.perplexity},
                        {"kl_to_fp", r.mean_kl},
                        {"units", {{"kl_to_fp", "nats per predicted token"}}}};
}

absl::Status RunQuantize(const QuantizeFlags& flags) {
  if (!flags.server.empty()) {
    return absl::UnimplementedError(
        "--server: the gRPC service is not built yet; omit --server to quantize in this process");
  }
  CATQ_ASSIGN_OR_RETURN(Recipe recipe, flags.recipe.ToRecipe());
  ProgressPrinter progress("quantize", flags.quiet || flags.json);
  InProcessOptions options;
  options.max_shard_bytes = flags.max_shard_bytes;
  options.replace = flags.replace;
  options.calibration.text_path = flags.calib_text;
  options.calibration.statistics_path = flags.calib_stats;
  options.calibration.text.max_documents = flags.calib_max_docs;
  options.calibration.text.max_tokens = flags.calib_max_tokens;
  options.calibration.sample_tokens = flags.calib_samples;
  options.calibration.threads = flags.threads;
  options.on_linear = [&progress](const LinearReport& linear, int64_t done, int64_t total) {
    progress.Update(done, total,
                    absl::StrFormat("%s  SQNR %.2f dB", linear.module, linear.weight_sqnr_db));
  };
  absl::StatusOr<QuantizationReport> report =
      QuantizeModelInProcess(Env::Default(), flags.model, flags.out, recipe, options);
  progress.Finish();
  CATQ_RETURN_IF_ERROR(report.status());
  nlohmann::json json = QuantizationReportToJson(*report);
  if (!flags.eval_text.empty()) {
    CATQ_ASSIGN_OR_RETURN(json["evaluation"], EvaluateOutput(flags));
    CATQ_RETURN_IF_ERROR(
        WriteFileAtomically(Env::Default(), flags.out + "/catq_report.json", json.dump(2) + "\n"));
  }
  if (flags.json) {
    std::cout << json.dump(2) << "\n";
  } else {
    PrintSummary(*report, flags.out);
    if (json.contains("evaluation")) {
      const nlohmann::json& e = json["evaluation"];
      std::cout << absl::StrFormat(
          "evaluation on %s: perplexity %.4f (FP %.4f), KL to FP %.4f nats/token, %d tokens\n",
          flags.eval_text, e["perplexity"].get<double>(), e["fp_perplexity"].get<double>(),
          e["kl_to_fp"].get<double>(), e["tokens"].get<int64_t>());
    }
  }
  return absl::OkStatus();
}

}  // namespace

void AddQuantizeCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<QuantizeFlags>();
  CLI::App* sub = app.add_subcommand("quantize", "Quantize a model directory to int4");
  sub->add_option("--server", flags->server, "HOST:PORT of a catq server (default: in process)");
  sub->add_option("--model", flags->model, "Hugging Face Llama directory")->required();
  sub->add_option("--out", flags->out, "Output directory (must not exist unless --replace)")
      ->required();
  sub->add_option("--calib-text", flags->calib_text, "Calibration text file");
  sub->add_option("--eval-text", flags->eval_text,
                  "Evaluate the stored output on this text (perplexity, KL to FP) into the report");
  sub->add_option("--calib-stats", flags->calib_stats,
                  "Precomputed site statistics (safetensors; see `catq calibrate`)");
  sub->add_option("--calib-max-docs", flags->calib_max_docs,
                  "Calibrate on the first N documents (0: all)")
      ->capture_default_str();
  sub->add_option("--calib-max-tokens", flags->calib_max_tokens,
                  "Calibration token budget (0: no limit)")
      ->capture_default_str();
  sub->add_option("--calib-samples", flags->calib_samples,
                  "Activation tokens kept per site to measure SQNR (0: none)")
      ->capture_default_str();
  sub->add_option("--threads", flags->threads, "Forward pass threads (0: all cores)")
      ->capture_default_str();
  AddRecipeFlags(*sub, flags->recipe);
  sub->add_option("--max-shard-bytes", flags->max_shard_bytes, "Largest output shard")
      ->capture_default_str();
  sub->add_flag("--replace", flags->replace, "Replace an existing output directory");
  sub->add_flag("--json", flags->json, "Print the report as JSON");
  sub->add_flag("--quiet", flags->quiet, "No progress output");
  sub->callback([flags, &run] { run = [flags] { return RunQuantize(*flags); }; });
}

}  // namespace catq::cli
