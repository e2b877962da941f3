// `catq quantize --model DIR --out DIR [recipe flags] [--export-gptq] [--json]`:
// quantizes a model and prints a per-layer summary. Without --server it runs
// in this process (streaming, one linear in memory at a time); with --server
// HOST:PORT on a catq server (upload, submit, watch, fetch:
// remote_quantize.h). --export-gptq also writes the GPTQ layout into
// OUT/gptq (core/output/gptq_export.h), checked against the recipe and model
// before anything is quantized.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/calibration_flags.h"
#include "client/command.h"
#include "client/connection_flags.h"
#include "client/progress.h"
#include "client/recipe_flags.h"
#include "client/remote_quantize.h"
#include "client/report_summary.h"
#include "core/eval/output_evaluation.h"
#include "core/io/env.h"
#include "core/model/llama_model.h"
#include "core/output/gptq_export.h"
#include "core/output/in_process_quantizer.h"
#include "core/util/status_macros.h"
#include "proto/recipe_conversion.h"

namespace catq::cli {
namespace {

struct QuantizeFlags {
  ConnectionFlags connection;
  std::string model;
  std::string out;
  std::string calib_text;
  std::string calib_stats;
  std::string calib_tokens;
  std::string eval_text;
  int64_t calib_max_docs = 0;
  int64_t calib_max_tokens = 0;
  int64_t calib_samples = 512;
  bool sequential_calibration = false;
  int threads = 0;
  RecipeFlags recipe;
  uint64_t max_shard_bytes = uint64_t{2} << 30;
  bool replace = false;
  bool export_gptq = false;
  bool json = false;
  bool quiet = false;
};

// Perplexity and KL to FP of the output as stored (from its shards), for
// catq_report.json's "evaluation".
absl::StatusOr<nlohmann::json> EvaluateOutput(const QuantizeFlags& flags) {
  ForwardOptions options;
  options.num_threads = flags.threads;
  CATQ_ASSIGN_OR_RETURN(OutputEvaluation evaluation,
                        catq::EvaluateOutput(flags.model, flags.out, flags.eval_text, options));
  return OutputEvaluationToJson(evaluation, flags.eval_text);
}

// The same quantization on a catq server (remote_quantize.h).
absl::Status RunOnServer(const QuantizeFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(Recipe recipe, flags.recipe.ToRecipe());
  RemoteQuantizeRequest request;
  request.connection = flags.connection;
  request.model = flags.model;
  request.calib_text = flags.calib_text;
  request.calib_stats = flags.calib_stats;
  request.calib_tokens = flags.calib_tokens;
  request.eval_text = flags.eval_text;
  *request.submit.mutable_recipe() = RecipeToProto(recipe);
  v1::CalibrationOptions& calibration = *request.submit.mutable_calibration_options();
  calibration.set_max_documents(flags.calib_max_docs);
  calibration.set_max_tokens(flags.calib_max_tokens);
  calibration.set_sample_tokens(flags.calib_samples);
  calibration.set_sequential(flags.sequential_calibration);
  request.submit.set_max_shard_bytes(flags.max_shard_bytes);
  request.submit.set_export_gptq(flags.export_gptq);
  request.out = flags.out;
  request.json = flags.json;
  request.quiet = flags.quiet;
  return RunRemoteQuantize(request);
}

// The GPTQ layout of the output just written, into OUT/gptq.
absl::StatusOr<nlohmann::json> ExportGptq(const QuantizeFlags& flags) {
  GptqExportOptions options;
  options.max_shard_bytes = flags.max_shard_bytes;
  const std::string dir = absl::StrCat(flags.out, "/", kGptqExportDirName);
  CATQ_ASSIGN_OR_RETURN(GptqExportSummary summary,
                        ExportGptqLayout(Env::Default(), flags.out, dir, options));
  return nlohmann::json{{"dir", dir},
                        {"linears", summary.linears},
                        {"copied_tensors", summary.copied_tensors},
                        {"data_bytes", summary.data_bytes},
                        {"files", summary.files}};
}

absl::Status RunQuantize(const QuantizeFlags& flags) {
  if (!flags.connection.server.empty()) return RunOnServer(flags);
  CATQ_ASSIGN_OR_RETURN(Recipe recipe, flags.recipe.ToRecipe());
  if (flags.export_gptq) {
    CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(flags.model));
    CATQ_RETURN_IF_ERROR(Prefix("--export-gptq", CheckGptqExportable(model, recipe)));
  }
  ProgressPrinter progress("quantize", flags.quiet || flags.json);
  InProcessOptions options;
  options.max_shard_bytes = flags.max_shard_bytes;
  options.replace = flags.replace;
  options.calibration.text_path = flags.calib_text;
  options.calibration.statistics_path = flags.calib_stats;
  options.calibration.token_ids_path = flags.calib_tokens;
  options.calibration.text.max_documents = flags.calib_max_docs;
  options.calibration.text.max_tokens = flags.calib_max_tokens;
  options.calibration.sample_tokens = flags.calib_samples;
  options.calibration.sequential = flags.sequential_calibration;
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
  nlohmann::json gptq;
  if (flags.export_gptq) {
    CATQ_ASSIGN_OR_RETURN(gptq, ExportGptq(flags));
  }
  if (flags.json) {
    if (flags.export_gptq) json["gptq_export"] = gptq;
    std::cout << json.dump(2) << "\n";
  } else {
    PrintReportSummary(json, flags.out, std::cout);
    if (flags.export_gptq) {
      std::cout << "GPTQ layout: " << gptq["dir"].get<std::string>() << " ("
                << gptq["linears"].get<int64_t>() << " linears, " << gptq["files"].size()
                << " files)\n";
    }
  }
  return absl::OkStatus();
}

}  // namespace

void AddQuantizeCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<QuantizeFlags>();
  CLI::App* sub = app.add_subcommand("quantize", "Quantize a model directory to int4");
  AddConnectionFlags(*sub, flags->connection, /*server_from_env=*/false);
  sub->add_option("--model", flags->model, "Hugging Face Llama directory")->required();
  sub->add_option("--out", flags->out,
                  "Output directory (must not exist unless --replace; with --server, a rerun "
                  "continues fetching into it)")
      ->required();
  sub->add_option("--calib-text", flags->calib_text, "Calibration text file");
  sub->add_option("--eval-text", flags->eval_text,
                  "Evaluate the stored output on this text (perplexity, KL to FP) into the report");
  sub->add_option("--calib-stats", flags->calib_stats,
                  "Precomputed site statistics (safetensors; see `catq calibrate`)");
  sub->add_option("--calib-tokens", flags->calib_tokens,
                  "Calibration token ids: little-endian int32, documents separated by -1 (for "
                  "a tokenizer catq does not have)");
  AddCalibrationLimitFlags(*sub, flags->calib_max_docs, flags->calib_max_tokens);
  AddSequentialCalibrationFlag(*sub, flags->sequential_calibration);
  sub->add_option("--calib-samples", flags->calib_samples,
                  "Activation tokens kept per site to measure SQNR (0: none)")
      ->capture_default_str();
  sub->add_option("--threads", flags->threads, "Forward pass threads (0: all cores)")
      ->capture_default_str();
  AddRecipeFlags(*sub, flags->recipe);
  sub->add_option("--max-shard-bytes", flags->max_shard_bytes, "Largest output shard")
      ->capture_default_str();
  sub->add_flag("--replace", flags->replace, "Replace an existing output directory");
  sub->add_flag("--export-gptq", flags->export_gptq,
                "Also write the GPTQ (AutoGPTQ v1) layout into OUT/gptq; recipes with an online "
                "transform are refused");
  sub->add_flag("--json", flags->json, "Print the report as JSON");
  sub->add_flag("--quiet", flags->quiet, "No progress output");
  sub->callback([flags, &run] { run = [flags] { return RunQuantize(*flags); }; });
}

}  // namespace catq::cli
