// File: server/model_repository.h
//
// Turns uploaded files into a model the workers can open, and opens it
// again later. An accepted model is a set of blobs (the Hugging Face layout)
// plus a directory `<models_dir>/<model_id>/` of symbolic links to them, so
// LlamaModel::Open reads the blobs in place through mmap with no copy. A
// llama2.c upload is imported (core/model/llama2c_import.h) into the
// Hugging Face layout on arrival and that is what is stored.
//
// Acceptance validates everything a job will rely on (config.json, every
// tensor's shape and dtype, via LlamaModel::Open) before any record exists,
// so a bad model is refused at upload, naming the file and tensor.
//
//   CATQ_ASSIGN_OR_RETURN(AcceptedModel m, repository.Accept(id, format, uploaded_files));
//   CATQ_ASSIGN_OR_RETURN(std::string dir, repository.Directory(record));
//
// Thread-safety: thread-safe for distinct model ids.
#ifndef CATQ_SERVER_MODEL_REPOSITORY_H_
#define CATQ_SERVER_MODEL_REPOSITORY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "catq/v1/catq.pb.h"
#include "core/io/env.h"
#include "server/blob_store.h"
#include "server/metadata_store.h"

namespace catq::server {

struct AcceptedModel {
  std::vector<StoredFile> files;  // the stored Hugging Face layout
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
};

class ModelRepository {
 public:
  ModelRepository(Env* env, BlobStore* blobs, std::string models_dir)
      : env_(env), blobs_(blobs), models_dir_(std::move(models_dir)) {}

  // Accept: validates the uploaded `files` (already in the blob store) as a
  // model of `format` and links them under `model_id`. InvalidArgument names
  // the file, tensor or field at fault.
  absl::StatusOr<AcceptedModel> Accept(const std::string& model_id, v1::ModelFormat format,
                                       const std::vector<StoredFile>& files);

  // Directory: the model's directory of links, re-created when missing (a
  // data dir restored without it), each blob verified by hash first: a
  // corrupted blob is DataLoss, never read.
  absl::StatusOr<std::string> Directory(const ModelRecord& model);

  // Remove: the model's directory of links (the blobs stay; other models
  // may share them).
  absl::Status Remove(const std::string& model_id);

 private:
  absl::Status LinkFiles(const std::vector<StoredFile>& files, const std::string& dir);
  absl::StatusOr<std::vector<StoredFile>> ImportLlama2c(const std::vector<StoredFile>& files);

  Env* const env_;
  BlobStore* const blobs_;
  const std::string models_dir_;
};

}  // namespace catq::server

#endif  // CATQ_SERVER_MODEL_REPOSITORY_H_
