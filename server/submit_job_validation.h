// File: server/submit_job_validation.h
//
// SubmitJob's checks of a request against what the tenant has stored: the
// model and calibrations it names exist (for this tenant), the recipe is
// valid and can have what the request asks of it, and the counts and key are
// in range. Every refusal names the field. The job limit and the insert are
// the service's; this is everything before them, kept apart so that it can be
// fuzzed against a real store (tests/fuzz/submit_job_fuzzer.cc).
//
//   CATQ_ASSIGN_OR_RETURN(ValidatedSubmit submit,
//                         ValidateSubmitJobRequest(*store, tenant, request));
#ifndef CATQ_SERVER_SUBMIT_JOB_VALIDATION_H_
#define CATQ_SERVER_SUBMIT_JOB_VALIDATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "catq/v1/catq.pb.h"
#include "core/cat/recipe.h"
#include "server/metadata_store.h"

namespace catq::server {

// The most bytes of an idempotency key.
inline constexpr size_t kMaxIdempotencyKeyBytes = 256;

struct ValidatedSubmit {
  Recipe recipe;      // with defaults filled
  ModelRecord model;  // the model the request names
};

// InvalidArgument naming the field, or NotFound for a model or calibration
// this tenant does not have (another tenant's ids included).
absl::StatusOr<ValidatedSubmit> ValidateSubmitJobRequest(MetadataStore& store,
                                                         const std::string& tenant,
                                                         const v1::SubmitJobRequest& request);

}  // namespace catq::server

#endif  // CATQ_SERVER_SUBMIT_JOB_VALIDATION_H_
