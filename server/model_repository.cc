#include "server/model_repository.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/model/llama2c_import.h"
#include "core/model/llama_model.h"
#include "core/util/status_macros.h"

namespace catq::server {
namespace {

namespace fs = std::filesystem;

absl::Status FilesystemError(const std::string& what, const std::error_code& error) {
  return absl::InternalError(absl::StrCat(what, ": ", error.message()));
}

// The llama2.c upload's two files: the tokenizer is the one named tok*.bin
// or tokenizer.bin, the checkpoint the other.
absl::Status SplitLlama2cFiles(const std::vector<StoredFile>& files, const StoredFile** checkpoint,
                               const StoredFile** tokenizer) {
  if (files.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "files: a llama2c upload is a checkpoint and a tokenizer, got ", files.size(), " files"));
  }
  for (const StoredFile& file : files) {
    const std::string name = fs::path(file.path).filename().string();
    const bool is_tokenizer = absl::StartsWith(name, "tok") && absl::EndsWith(name, ".bin");
    (is_tokenizer ? *tokenizer : *checkpoint) = &file;
  }
  if (*checkpoint == nullptr || *tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        "files: a llama2c upload needs one tokenizer named tok*.bin or tokenizer.bin and one "
        "checkpoint");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ModelRepository::LinkFiles(const std::vector<StoredFile>& files,
                                        const std::string& dir) {
  std::error_code error;
  fs::remove_all(dir, error);
  for (const StoredFile& file : files) {
    CATQ_ASSIGN_OR_RETURN(std::string blob, blobs_->Path(file.sha256));
    const fs::path link = fs::path(dir) / file.path;
    fs::create_directories(link.parent_path(), error);
    if (error) return FilesystemError(link.parent_path().string(), error);
    fs::create_symlink(fs::absolute(blob), link, error);
    if (error) return FilesystemError(link.string(), error);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoredFile>> ModelRepository::ImportLlama2c(
    const std::vector<StoredFile>& files) {
  const StoredFile* checkpoint = nullptr;
  const StoredFile* tokenizer = nullptr;
  CATQ_RETURN_IF_ERROR(SplitLlama2cFiles(files, &checkpoint, &tokenizer));
  CATQ_ASSIGN_OR_RETURN(std::string checkpoint_path, blobs_->Path(checkpoint->sha256));
  CATQ_ASSIGN_OR_RETURN(std::string tokenizer_path, blobs_->Path(tokenizer->sha256));
  const std::string staging = blobs_->NewTempPath();
  absl::Status imported = catq::ImportLlama2c(env_, checkpoint_path, tokenizer_path, staging);
  std::vector<StoredFile> stored;
  if (imported.ok()) {
    for (const fs::directory_entry& entry : fs::directory_iterator(staging)) {
      StoredFile file;
      file.path = entry.path().filename().string();
      absl::StatusOr<std::string> sha = Sha256OfFile(env_, entry.path().string());
      if (!sha.ok()) {
        imported = sha.status();
        break;
      }
      file.sha256 = *sha;
      file.size = entry.file_size();
      imported = blobs_->PutFile(entry.path().string(), file.sha256);
      if (!imported.ok()) break;
      stored.push_back(std::move(file));
    }
  }
  std::error_code ignored;
  fs::remove_all(staging, ignored);
  if (!imported.ok()) {
    // The importer names the files by their blob paths and its output by the
    // staging directory; say which upload file that is, and no server path.
    // Longer names win where two start at the same place.
    const std::string message =
        absl::StrReplaceAll(imported.message(), {{checkpoint_path, checkpoint->path},
                                                 {tokenizer_path, tokenizer->path},
                                                 {staging + "/", ""},
                                                 {staging, "the imported model"},
                                                 {blobs_->root(), "blobs"}});
    // What the importer refuses (a truncated or malformed checkpoint, a NaN
    // in it) is the client's bad input; a full disk or an OS failure keeps
    // its code.
    const bool bad_input = absl::IsDataLoss(imported) || absl::IsInvalidArgument(imported) ||
                           absl::IsOutOfRange(imported);
    return absl::Status(bad_input ? absl::StatusCode::kInvalidArgument : imported.code(),
                        absl::StrCat(checkpoint->path, " (llama2c): ", message));
  }
  std::sort(stored.begin(), stored.end(),
            [](const StoredFile& a, const StoredFile& b) { return a.path < b.path; });
  return stored;
}

absl::StatusOr<AcceptedModel> ModelRepository::Accept(const std::string& model_id,
                                                      v1::ModelFormat format,
                                                      const std::vector<StoredFile>& files) {
  AcceptedModel accepted;
  if (format == v1::MODEL_FORMAT_LLAMA2C) {
    CATQ_ASSIGN_OR_RETURN(accepted.files, ImportLlama2c(files));
  } else if (format == v1::MODEL_FORMAT_HF) {
    accepted.files = files;
  } else {
    return absl::InvalidArgumentError("format: must be MODEL_FORMAT_HF or MODEL_FORMAT_LLAMA2C");
  }
  const std::string dir = absl::StrCat(models_dir_, "/", model_id);
  CATQ_RETURN_IF_ERROR(LinkFiles(accepted.files, dir));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir, env_);
  if (!model.ok()) {
    Remove(model_id).IgnoreError();
    // Messages name files by their path in the model directory; keep the
    // file and tensor, drop the server's directory ("<dir>/config.json" is
    // "config.json", "missing from <dir>" is "missing from the upload").
    // Longer names win where two start at the same place.
    return absl::InvalidArgumentError(
        absl::StrReplaceAll(model.status().message(),
                            {{dir + "/", ""}, {dir, "the upload"}, {blobs_->root(), "blobs"}}));
  }
  accepted.num_layers = model->config().num_hidden_layers;
  accepted.hidden_size = model->config().hidden_size;
  return accepted;
}

absl::StatusOr<std::string> ModelRepository::Directory(const ModelRecord& model) {
  for (const StoredFile& file : model.files) {
    CATQ_RETURN_IF_ERROR(Prefix(file.path, blobs_->VerifiedPath(file.sha256).status()));
  }
  const std::string dir = absl::StrCat(models_dir_, "/", model.id);
  if (!env_->FileExists(absl::StrCat(dir, "/config.json"))) {
    CATQ_RETURN_IF_ERROR(LinkFiles(model.files, dir));
  }
  return dir;
}

absl::Status ModelRepository::Remove(const std::string& model_id) {
  std::error_code error;
  fs::remove_all(absl::StrCat(models_dir_, "/", model_id), error);
  if (error) return FilesystemError(model_id, error);
  return absl::OkStatus();
}

}  // namespace catq::server
