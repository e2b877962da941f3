// `catq calibrate --model DIR (--calib-text FILE | --calib-tokens FILE) --out
// STATS.safetensors [--block-size K] [--calib-max-docs N] [--calib-max-tokens
// N] [--no-fold-norm-gains] [--threads N]`: runs the calibration forward pass
// and writes the site statistics (core/cat/site_statistics.h), exactly what
// the server's calibration stage and `catq quantize` compute for a block-CAT
// recipe with that block size and fold flag: full Sx matrices where every site
// has at most 8192 channels, else the k x k diagonal blocks. The file is a
// calibration input of its own (`catq quantize --calib-stats`, an upload of
// kind statistics), and what a collector in another framework must reproduce.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/calibration_flags.h"
#include "client/command.h"
#include "core/cat/recipe.h"
#include "core/cat/site_statistics.h"
#include "core/io/env.h"
#include "core/model/llama_model.h"
#include "core/output/calibration_data.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct CalibrateFlags {
  std::string model;
  std::string calib_text;
  std::string calib_tokens;
  std::string out;
  int block_size = 128;
  int64_t calib_max_docs = 0;
  int64_t calib_max_tokens = 0;
  bool no_fold_norm_gains = false;
  int threads = 0;
};

absl::Status RunCalibrate(const CalibrateFlags& flags) {
  if (flags.calib_text.empty() == flags.calib_tokens.empty()) {
    return absl::InvalidArgumentError("give exactly one of --calib-text and --calib-tokens");
  }
  // The statistics depend on the recipe only through these two fields.
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = flags.block_size;
  recipe.fold_norm_gains = !flags.no_fold_norm_gains;
  CATQ_RETURN_IF_ERROR(recipe.Validate());

  CalibrationInput input;
  input.text_path = flags.calib_text;
  input.token_ids_path = flags.calib_tokens;
  input.text.max_documents = flags.calib_max_docs;
  input.text.max_tokens = flags.calib_max_tokens;
  input.sample_tokens = 0;  // Samples only feed the report's SQNR.
  input.threads = flags.threads;

  Env* env = Env::Default();
  CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(flags.model, env));
  CalibrationReport report;
  CATQ_ASSIGN_OR_RETURN(CalibrationData data,
                        LoadCalibration(env, model, flags.model, recipe, input, &report));
  CATQ_RETURN_IF_ERROR(WriteSiteStatistics(env, flags.out, data.statistics));
  std::cout << "calibrated " << flags.model << " on " << report.documents << " documents, "
            << report.tokens << " tokens: " << data.statistics.size() << " sites ("
            << (report.statistics_block_size == 0
                    ? std::string("full Sx")
                    : absl::StrCat(report.statistics_block_size, "x", report.statistics_block_size,
                                   " blocks"))
            << ", norm gains " << (recipe.fold_norm_gains ? "folded" : "kept") << ") -> "
            << flags.out << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddCalibrateCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<CalibrateFlags>();
  CLI::App* sub = app.add_subcommand(
      "calibrate", "Write the site statistics of a calibration text or token ids (safetensors)");
  sub->add_option("--model", flags->model, "Hugging Face Llama directory")->required();
  CLI::Option* text = sub->add_option("--calib-text", flags->calib_text, "Calibration text file");
  CLI::Option* tokens =
      sub->add_option("--calib-tokens", flags->calib_tokens,
                      "Calibration token ids: little-endian int32, documents separated by -1");
  text->excludes(tokens);
  sub->add_option("--out", flags->out, "Statistics file to write (safetensors)")->required();
  sub->add_option("--block-size", flags->block_size,
                  "Block CAT k: sites over 8192 channels keep only their k x k diagonal blocks")
      ->capture_default_str();
  AddCalibrationLimitFlags(*sub, flags->calib_max_docs, flags->calib_max_tokens);
  sub->add_flag("--no-fold-norm-gains", flags->no_fold_norm_gains,
                "Statistics of the inputs with the RMSNorm gains applied (default: without, as "
                "the folded model sees them)");
  sub->add_option("--threads", flags->threads, "Forward pass threads (0: all cores)")
      ->capture_default_str();
  sub->callback([flags, &run] { run = [flags] { return RunCalibrate(*flags); }; });
}

}  // namespace catq::cli
