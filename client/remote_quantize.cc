#include "client/remote_quantize.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "client/model_upload.h"
#include "client/remote_progress.h"
#include "client/report_summary.h"
#include "core/io/sha256.h"
#include "core/output/gptq_export.h"
#include "core/util/status_macros.h"
#include "proto/recipe_conversion.h"

namespace catq::cli {
namespace {

std::string DeterministicBytes(const google::protobuf::MessageLite& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return bytes;
}

void Note(bool quiet, const std::string& line) {
  if (!quiet) std::cerr << line << "\n";
}

absl::StatusOr<v1::Model> UploadModel(client::QuantizerClient& client, const std::string& model,
                                      bool quiet) {
  ModelSource source;
  source.model = model;
  TransferProgressPrinter progress("upload model", quiet);
  absl::StatusOr<v1::Model> uploaded = UploadModelSource(client, source, "", progress.Callback());
  progress.Finish();
  if (uploaded.ok()) Note(quiet, absl::StrCat("model ", uploaded->model_id()));
  return uploaded;
}

absl::StatusOr<std::string> UploadCalibration(client::QuantizerClient& client,
                                              const std::string& path, v1::CalibrationKind kind,
                                              bool quiet) {
  TransferProgressPrinter progress(absl::StrCat("upload ", path), quiet);
  absl::StatusOr<v1::Calibration> uploaded = client.UploadCalibration(
      path, kind, std::filesystem::path(path).filename().string(), "", progress.Callback());
  progress.Finish();
  CATQ_RETURN_IF_ERROR(uploaded.status());
  Note(quiet, absl::StrCat("calibration ", uploaded->calibration_id(), " (", path, ")"));
  return uploaded->calibration_id();
}

// The request with every upload done and the idempotency key set.
absl::StatusOr<v1::SubmitJobRequest> UploadInputs(client::QuantizerClient& client,
                                                  const RemoteQuantizeRequest& request,
                                                  bool quiet) {
  v1::SubmitJobRequest submit = request.submit;
  CATQ_ASSIGN_OR_RETURN(v1::Model model, UploadModel(client, request.model, quiet));
  submit.set_model_id(model.model_id());
  if (!request.calib_text.empty()) {
    CATQ_ASSIGN_OR_RETURN(
        *submit.mutable_calibration_id(),
        UploadCalibration(client, request.calib_text, v1::CALIBRATION_KIND_TEXT, quiet));
  }
  if (!request.calib_stats.empty()) {
    CATQ_ASSIGN_OR_RETURN(
        *submit.mutable_calibration_id(),
        UploadCalibration(client, request.calib_stats, v1::CALIBRATION_KIND_STATISTICS, quiet));
  }
  if (!request.calib_tokens.empty()) {
    CATQ_ASSIGN_OR_RETURN(
        *submit.mutable_calibration_id(),
        UploadCalibration(client, request.calib_tokens, v1::CALIBRATION_KIND_TOKEN_IDS, quiet));
  }
  if (!request.eval_text.empty()) {
    CATQ_ASSIGN_OR_RETURN(
        *submit.mutable_eval_calibration_id(),
        UploadCalibration(client, request.eval_text, v1::CALIBRATION_KIND_TEXT, quiet));
  }
  submit.set_idempotency_key(QuantizeIdempotencyKey(submit));
  return submit;
}

absl::Status FetchInto(client::QuantizerClient& client, const std::string& job_id,
                       const std::string& out, bool quiet) {
  TransferProgressPrinter progress("fetch", quiet);
  absl::StatusOr<client::FetchStats> fetched = client.Fetch(job_id, out, progress.Callback());
  progress.Finish();
  return fetched.status();
}

absl::StatusOr<nlohmann::json> ReadReport(const std::string& out) {
  const std::string path = absl::StrCat(out, "/catq_report.json");
  CATQ_ASSIGN_OR_RETURN(std::string text, Env::Default()->ReadFile(path));
  nlohmann::json report = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded()) return absl::DataLossError(absl::StrCat(path, ": not valid JSON"));
  return report;
}

}  // namespace

std::string QuantizeIdempotencyKey(const v1::SubmitJobRequest& request) {
  v1::SubmitJobRequest keyless = request;
  keyless.clear_idempotency_key();
  return absl::StrCat("quantize-", Sha256Hex(DeterministicBytes(keyless)).substr(0, 40));
}

absl::Status RunRemoteQuantize(const RemoteQuantizeRequest& request) {
  if (!request.calib_text.empty() + !request.calib_stats.empty() + !request.calib_tokens.empty() >
      1) {
    return absl::InvalidArgumentError(
        "--calib-text, --calib-tokens and --calib-stats: give at most one");
  }
  if (request.submit.export_gptq()) {
    // Refused now rather than by SubmitJob after the uploads.
    CATQ_ASSIGN_OR_RETURN(Recipe recipe, RecipeFromProto(request.submit.recipe()));
    CATQ_RETURN_IF_ERROR(Prefix("--export-gptq", CheckRecipeGptqExportable(recipe)));
  }
  const bool quiet = request.quiet || request.json;
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<client::QuantizerClient> client,
                        ConnectToServer(request.connection));
  CATQ_ASSIGN_OR_RETURN(v1::SubmitJobRequest submit, UploadInputs(*client, request, quiet));
  CATQ_ASSIGN_OR_RETURN(v1::SubmitJobResponse submitted, client->Submit(submit));
  const std::string& job_id = submitted.job().job_id();
  Note(quiet,
       absl::StrCat(submitted.deduplicated() ? "re-attached to job " : "submitted job ", job_id));
  CATQ_ASSIGN_OR_RETURN(v1::Job job, WatchJobWithProgress(*client, job_id, quiet));
  CATQ_RETURN_IF_ERROR(CheckJobSucceeded(job));
  CATQ_RETURN_IF_ERROR(FetchInto(*client, job_id, request.out, quiet));
  CATQ_ASSIGN_OR_RETURN(nlohmann::json report, ReadReport(request.out));
  if (request.json) {
    std::cout << report.dump(2) << "\n";
  } else {
    PrintReportSummary(report, request.out, std::cout);
    if (request.submit.export_gptq()) {
      std::cout << "GPTQ layout: " << request.out << "/" << kGptqExportDirName << "\n";
    }
  }
  return absl::OkStatus();
}

}  // namespace catq::cli
