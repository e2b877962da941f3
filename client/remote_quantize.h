// File: client/remote_quantize.h
//
// `catq quantize --server`: upload the model and calibration, submit, watch,
// fetch into --out, then print the same summary as the in-process path, from
// the fetched catq_report.json. With submit.export_gptq the recipe is checked
// for the GPTQ export before anything is uploaded, and the server's export
// arrives in --out/gptq. Every step resumes when run again: uploads
// by their default upload ids, the job by an idempotency key derived from
// the request (so a rerun re-attaches to the same job), the fetch from its
// .part files.
//
//   RemoteQuantizeRequest request;
//   request.connection.server = "localhost:50051";
//   request.model = "models/llama";
//   request.out = "out/llama-w4";
//   *request.submit.mutable_recipe() = RecipeToProto(recipe);
//   CATQ_RETURN_IF_ERROR(RunRemoteQuantize(request));
#ifndef CATQ_CLIENT_REMOTE_QUANTIZE_H_
#define CATQ_CLIENT_REMOTE_QUANTIZE_H_

#include <string>

#include "absl/status/status.h"
#include "catq/v1/catq.pb.h"
#include "client/connection_flags.h"

namespace catq::cli {

struct RemoteQuantizeRequest {
  ConnectionFlags connection;
  std::string model;         // A Hugging Face directory (or a llama2.c one, see model_upload.h).
  std::string calib_text;    // Uploaded as a TEXT calibration.
  std::string calib_stats;   // Or as STATISTICS.
  std::string calib_tokens;  // Or as TOKEN_IDS; at most one of the three.
  std::string eval_text;     // Uploaded as TEXT, sent as eval_calibration_id.
  // Recipe, calibration options and max_shard_bytes; the ids and the
  // idempotency key are filled in here.
  v1::SubmitJobRequest submit;
  std::string out;
  bool json = false;   // Print the fetched report as JSON.
  bool quiet = false;  // No progress.
};

// RunRemoteQuantize: InvalidArgument for both calibration files, or (naming
// --export-gptq) export_gptq with a recipe that has an online transform; the
// client's errors; the job's FAILED or CANCELLED outcome (CheckJobSucceeded).
absl::Status RunRemoteQuantize(const RemoteQuantizeRequest& request);

// QuantizeIdempotencyKey: "quantize-" and 40 hex digits of a sha256 of
// `request` without its idempotency key (deterministic serialization): the
// same model, calibration and recipe give the same key.
std::string QuantizeIdempotencyKey(const v1::SubmitJobRequest& request);

}  // namespace catq::cli

#endif  // CATQ_CLIENT_REMOTE_QUANTIZE_H_
