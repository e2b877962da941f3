// File: client/model_upload.h
//
// What `catq upload --model` and `catq quantize --server` send as a model:
// a Hugging Face directory (recognised by its config.json), or a llama2.c
// model, given as the checkpoint and tokenizer files or as a directory that
// holds just those two.
//
//   ModelSource source;
//   source.model = "stories260K.bin";
//   source.tokenizer = "tok512.bin";
//   CATQ_ASSIGN_OR_RETURN(v1::Model model, UploadModelSource(*client, source, "", progress));
#ifndef CATQ_CLIENT_MODEL_UPLOAD_H_
#define CATQ_CLIENT_MODEL_UPLOAD_H_

#include <string>

#include "absl/status/statusor.h"
#include "catq/v1/catq.pb.h"
#include "client/quantizer_client.h"

namespace catq::cli {

struct ModelSource {
  std::string model;      // A directory, or a llama2.c checkpoint file.
  std::string tokenizer;  // The llama2.c tokenizer when `model` is a file.
  std::string format;     // "hf", "llama2c", or empty to detect.
  std::string name;       // Empty: the base name of `model` (without ".bin").
};

// DetectModelFormat: the explicit format, else llama2c when a tokenizer is
// given or `model` is a file, else hf when the directory has config.json.
// InvalidArgument naming the flag for an unknown format, a directory with no
// config.json and no format, hf with a file, or a checkpoint file without
// --tokenizer.
absl::StatusOr<v1::ModelFormat> DetectModelFormat(const ModelSource& source);

// ModelName: source.name, else the base name of source.model without ".bin".
std::string ModelName(const ModelSource& source);

// UploadModelSource: DetectModelFormat, then QuantizerClient::UploadModel
// (a directory) or UploadModelFiles (checkpoint and tokenizer).
absl::StatusOr<v1::Model> UploadModelSource(client::QuantizerClient& client,
                                            const ModelSource& source, const std::string& upload_id,
                                            const client::TransferProgress& progress);

}  // namespace catq::cli

#endif  // CATQ_CLIENT_MODEL_UPLOAD_H_
