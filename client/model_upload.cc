#include "client/model_upload.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

namespace fs = std::filesystem;

bool IsDirectory(const std::string& path) {
  std::error_code error;
  return fs::is_directory(path, error);
}

bool HasConfigJson(const std::string& dir) {
  std::error_code error;
  return fs::is_regular_file(fs::path(dir) / "config.json", error);
}

absl::StatusOr<v1::ModelFormat> ParseFormat(const std::string& format) {
  if (format == "hf") return v1::MODEL_FORMAT_HF;
  if (format == "llama2c") return v1::MODEL_FORMAT_LLAMA2C;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: unknown '", format, "' (hf or llama2c)"));
}

absl::Status CheckSourceFits(const ModelSource& source, v1::ModelFormat format) {
  const bool dir = IsDirectory(source.model);
  if (format == v1::MODEL_FORMAT_HF && (!dir || !source.tokenizer.empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat("--model ", source.model, ": hf needs a directory and no --tokenizer"));
  }
  if (format == v1::MODEL_FORMAT_LLAMA2C && !dir && source.tokenizer.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--model ", source.model, ": a llama2.c checkpoint needs --tokenizer TOKENIZER.bin"));
  }
  if (dir && !source.tokenizer.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tokenizer goes with --model CHECKPOINT.bin, not with a directory (", source.model, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ModelFormat> GuessFormat(const ModelSource& source) {
  if (!source.tokenizer.empty() || !IsDirectory(source.model)) return v1::MODEL_FORMAT_LLAMA2C;
  if (HasConfigJson(source.model)) return v1::MODEL_FORMAT_HF;
  return absl::InvalidArgumentError(
      absl::StrCat("--model ", source.model,
                   ": no config.json, so not a Hugging Face directory; for llama2.c pass "
                   "--format llama2c (or --model CHECKPOINT.bin --tokenizer TOKENIZER.bin)"));
}

}  // namespace

absl::StatusOr<v1::ModelFormat> DetectModelFormat(const ModelSource& source) {
  if (source.model.empty()) return absl::InvalidArgumentError("--model is required");
  std::error_code error;
  if (!fs::exists(source.model, error)) {
    return absl::NotFoundError(
        absl::StrCat("--model ", source.model, ": no such file or directory"));
  }
  v1::ModelFormat format;
  if (source.format.empty()) {
    CATQ_ASSIGN_OR_RETURN(format, GuessFormat(source));
  } else {
    CATQ_ASSIGN_OR_RETURN(format, ParseFormat(source.format));
  }
  CATQ_RETURN_IF_ERROR(CheckSourceFits(source, format));
  return format;
}

std::string ModelName(const ModelSource& source) {
  if (!source.name.empty()) return source.name;
  fs::path path = fs::path(source.model).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();  // "models/llama/"
  return path.extension() == ".bin" ? path.stem().string() : path.filename().string();
}

absl::StatusOr<v1::Model> UploadModelSource(client::QuantizerClient& client,
                                            const ModelSource& source, const std::string& upload_id,
                                            const client::TransferProgress& progress) {
  CATQ_ASSIGN_OR_RETURN(v1::ModelFormat format, DetectModelFormat(source));
  if (IsDirectory(source.model)) {
    return client.UploadModel(source.model, ModelName(source), format, upload_id, progress);
  }
  return client.UploadModelFiles({source.model, source.tokenizer}, ModelName(source), format,
                                 upload_id, progress);
}

}  // namespace catq::cli
