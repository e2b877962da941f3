// `catq upload --model DIR [--format hf|llama2c] [--name N]` (llama2.c:
// `--model CHECKPOINT.bin --tokenizer TOKENIZER.bin`) prints the model id;
// `catq upload --calib-text FILE | --calib-stats FILE | --calib-tokens FILE`
// prints the calibration id. Rerunning an interrupted upload resumes it.
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/connection_flags.h"
#include "client/model_upload.h"
#include "client/proto_json.h"
#include "client/remote_progress.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct UploadFlags {
  ConnectionFlags connection;
  ModelSource model;
  std::string calib_text;
  std::string calib_stats;
  std::string calib_tokens;
  std::string upload_id;
  bool json = false;
  bool quiet = false;
};

// The one calibration file given, with its kind; an empty path when none.
absl::StatusOr<std::pair<std::string, v1::CalibrationKind>> CalibrationFile(
    const UploadFlags& flags) {
  std::vector<std::pair<std::string, v1::CalibrationKind>> given;
  if (!flags.calib_text.empty()) given.emplace_back(flags.calib_text, v1::CALIBRATION_KIND_TEXT);
  if (!flags.calib_stats.empty()) {
    given.emplace_back(flags.calib_stats, v1::CALIBRATION_KIND_STATISTICS);
  }
  if (!flags.calib_tokens.empty()) {
    given.emplace_back(flags.calib_tokens, v1::CALIBRATION_KIND_TOKEN_IDS);
  }
  const bool model = !flags.model.model.empty();
  if (given.size() + (model ? 1 : 0) != 1) {
    return absl::InvalidArgumentError(
        "give exactly one of --model, --calib-text, --calib-stats and --calib-tokens");
  }
  if (given.empty()) return std::make_pair(std::string(), v1::CALIBRATION_KIND_UNSPECIFIED);
  return given[0];
}

absl::Status UploadModel(client::QuantizerClient& client, const UploadFlags& flags) {
  TransferProgressPrinter progress("upload", flags.quiet || flags.json);
  absl::StatusOr<v1::Model> model =
      UploadModelSource(client, flags.model, flags.upload_id, progress.Callback());
  progress.Finish();
  CATQ_RETURN_IF_ERROR(model.status());
  std::cout << (flags.json ? ProtoToJson(*model).dump(2) : model->model_id()) << "\n";
  return absl::OkStatus();
}

absl::Status UploadCalibration(client::QuantizerClient& client, const UploadFlags& flags,
                               const std::string& path, v1::CalibrationKind kind) {
  const std::string name =
      flags.model.name.empty() ? std::filesystem::path(path).filename().string() : flags.model.name;
  TransferProgressPrinter progress("upload", flags.quiet || flags.json);
  absl::StatusOr<v1::Calibration> calibration =
      client.UploadCalibration(path, kind, name, flags.upload_id, progress.Callback());
  progress.Finish();
  CATQ_RETURN_IF_ERROR(calibration.status());
  std::cout << (flags.json ? ProtoToJson(*calibration).dump(2) : calibration->calibration_id())
            << "\n";
  return absl::OkStatus();
}

absl::Status RunUpload(const UploadFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(auto calibration, CalibrationFile(flags));
  if (calibration.first.empty()) CATQ_RETURN_IF_ERROR(DetectModelFormat(flags.model).status());
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<client::QuantizerClient> client,
                        ConnectToServer(flags.connection));
  if (calibration.first.empty()) return UploadModel(*client, flags);
  return UploadCalibration(*client, flags, calibration.first, calibration.second);
}

}  // namespace

void AddUploadCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<UploadFlags>();
  CLI::App* sub =
      app.add_subcommand("upload", "Upload a model or calibration to a catq server; prints its id");
  AddConnectionFlags(*sub, flags->connection);
  sub->add_option("--model", flags->model.model,
                  "Model: a Hugging Face directory, or a llama2.c checkpoint (with --tokenizer)");
  sub->add_option("--tokenizer", flags->model.tokenizer, "llama2.c tokenizer (tokenizer.bin)");
  sub->add_option("--format", flags->model.format,
                  "hf or llama2c (default: hf when the directory has config.json)");
  sub->add_option("--name", flags->model.name, "Name to store it under (default: file name)");
  sub->add_option("--calib-text", flags->calib_text, "Calibration text file");
  sub->add_option("--calib-stats", flags->calib_stats, "Precomputed site statistics (safetensors)");
  sub->add_option("--calib-tokens", flags->calib_tokens,
                  "Calibration token ids (little-endian int32, documents separated by -1)");
  sub->add_option("--upload-id", flags->upload_id,
                  "Upload id (default: derived from the content, so a rerun resumes)");
  sub->add_flag("--json", flags->json, "Print the stored model or calibration as JSON");
  sub->add_flag("--quiet", flags->quiet, "No progress output");
  sub->callback([flags, &run] { run = [flags] { return RunUpload(*flags); }; });
}

}  // namespace catq::cli
