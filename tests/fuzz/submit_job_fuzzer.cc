// Fuzz target for SubmitJob's whole request validation: the input parsed as
// a catq.v1.SubmitJobRequest and checked by ValidateSubmitJobRequest against
// a real metadata store (SQLite in a scratch directory) holding, for tenant
// "a", a model without and one with a llama2.c tokenizer, a text and a
// statistics calibration; tenant "b" has a model and a calibration of its own.
//
// A rejection is InvalidArgument with a message, or NotFound naming an id the
// request holds; another tenant's ids are refused exactly like unknown ones.
// An accepted request names this tenant's records only, with the calibration
// its recipe needs, an evaluation text only on the model with a tokenizer,
// counts >= 0, a key of at most 256 bytes and a recipe that round-trips.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catq/v1/catq.pb.h"
#include "core/model/llama2c_import.h"
#include "core/output/site_quantizer.h"
#include "google/protobuf/stubs/logging.h"
#include "proto/recipe_conversion.h"
#include "server/metadata_store.h"
#include "server/submit_job_validation.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

constexpr char kName[] = "submit_job_fuzzer";

using catq::fuzzing::Violation;
using catq::server::CalibrationRecord;
using catq::server::MetadataStore;
using catq::server::ModelRecord;
using catq::server::StoredFile;

void MustSucceed(const absl::Status& status, const char* what) {
  if (!status.ok()) Violation(kName, absl::StrCat(what, ": ", status.ToString()));
}

ModelRecord Model(const std::string& tenant, const std::string& id, bool with_tokenizer) {
  ModelRecord model;
  model.id = id;
  model.tenant = tenant;
  model.name = id;
  model.format = catq::v1::MODEL_FORMAT_HF;
  model.files.push_back(StoredFile{"config.json", 100, std::string(64, 'c')});
  model.files.push_back(StoredFile{"model.safetensors", 1000, std::string(64, 'd')});
  if (with_tokenizer) {
    model.files.push_back(StoredFile{catq::kLlama2cTokenizerFileName, 10, std::string(64, 'e')});
  }
  model.num_layers = 2;
  model.hidden_size = 64;
  return model;
}

CalibrationRecord Calibration(const std::string& tenant, const std::string& id,
                              catq::v1::CalibrationKind kind) {
  CalibrationRecord calibration;
  calibration.id = id;
  calibration.tenant = tenant;
  calibration.name = id;
  calibration.kind = kind;
  calibration.file = StoredFile{"calibration", 10, std::string(64, 'f')};
  return calibration;
}

// The store, made once per process in a directory removed at exit.
MetadataStore& Store() {
  static MetadataStore* store = [] {
    static std::string dir = "/dev/shm/catq_submit_job_fuzzer_XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) Violation(kName, "cannot create a scratch directory");
    std::atexit([] {
      unlink((dir + "/catq.db").c_str());
      unlink((dir + "/catq.db-wal").c_str());
      unlink((dir + "/catq.db-shm").c_str());
      rmdir(dir.c_str());
    });
    auto opened = MetadataStore::Open(dir + "/catq.db");
    if (!opened.ok()) Violation(kName, opened.status().ToString());
    MetadataStore* s = opened->release();
    MustSucceed(s->InsertModel(Model("a", "m-plain", false)), "model m-plain");
    MustSucceed(s->InsertModel(Model("a", "m-tok", true)), "model m-tok");
    MustSucceed(s->InsertModel(Model("b", "m-b", true)), "model m-b");
    MustSucceed(s->InsertCalibration(Calibration("a", "c-text", catq::v1::CALIBRATION_KIND_TEXT)),
                "calibration c-text");
    MustSucceed(
        s->InsertCalibration(Calibration("a", "c-stats", catq::v1::CALIBRATION_KIND_STATISTICS)),
        "calibration c-stats");
    MustSucceed(s->InsertCalibration(Calibration("b", "c-b", catq::v1::CALIBRATION_KIND_TEXT)),
                "calibration c-b");
    return s;
  }();
  return *store;
}

constexpr const char* kTenantBIds[] = {"m-b", "c-b"};

// An id for `id` that occurs nowhere in `serialized`, so that it can be told
// apart in a message.
std::string UnknownIdFor(const std::string& serialized, const std::string& id) {
  std::string unknown = "unknown-" + id;
  while (absl::StrContains(serialized, unknown)) unknown = "x" + unknown;
  return unknown;
}

// The request with each of tenant b's ids replaced by an id nobody has.
catq::v1::SubmitJobRequest WithoutTenantB(
    catq::v1::SubmitJobRequest request,
    const std::map<std::string, std::string>& unknown_for_tenant_b) {
  auto replace = [&](const std::string& id) {
    auto found = unknown_for_tenant_b.find(id);
    return found == unknown_for_tenant_b.end() ? id : found->second;
  };
  request.set_model_id(replace(request.model_id()));
  request.set_calibration_id(replace(request.calibration_id()));
  request.set_eval_calibration_id(replace(request.eval_calibration_id()));
  return request;
}

void CheckRejection(const catq::v1::SubmitJobRequest& request, const absl::Status& status) {
  if (status.message().empty()) Violation(kName, "rejection without a message");
  if (status.code() == absl::StatusCode::kInvalidArgument) return;
  if (status.code() != absl::StatusCode::kNotFound) {
    Violation(kName, "rejection is not InvalidArgument or NotFound: " + status.ToString());
  }
  const std::string message(status.message());
  for (const std::string* id :
       {&request.model_id(), &request.calibration_id(), &request.eval_calibration_id()}) {
    if (!id->empty() && absl::StrContains(message, absl::StrCat("'", *id, "'"))) return;
  }
  Violation(kName, "NotFound names none of the request's ids: " + status.ToString());
}

void CheckAccepted(const catq::v1::SubmitJobRequest& request,
                   const catq::server::ValidatedSubmit& submit) {
  if (submit.model.id != request.model_id() || submit.model.tenant != "a") {
    Violation(kName, "accepted model '" + request.model_id() + "' is not tenant a's");
  }
  const std::string& calibration = request.calibration_id();
  if (!calibration.empty() && calibration != "c-text" && calibration != "c-stats") {
    Violation(kName, "accepted calibration '" + calibration + "'");
  }
  if (calibration.empty() && catq::RecipeNeedsStatistics(submit.recipe)) {
    Violation(kName, "accepted a recipe that needs statistics without a calibration");
  }
  const std::string& eval = request.eval_calibration_id();
  if (!eval.empty() && (eval != "c-text" || request.model_id() != "m-tok")) {
    Violation(kName, "accepted evaluation '" + eval + "' on model '" + request.model_id() + "'");
  }
  const catq::v1::CalibrationOptions& options = request.calibration_options();
  if (options.max_documents() < 0 || options.max_tokens() < 0 || options.sample_tokens() < 0) {
    Violation(kName, "accepted negative calibration counts");
  }
  if (request.idempotency_key().size() > catq::server::kMaxIdempotencyKeyBytes) {
    Violation(kName, "accepted an idempotency key over the limit");
  }
  const catq::v1::Recipe again = catq::RecipeToProto(submit.recipe);
  absl::StatusOr<catq::Recipe> back = catq::RecipeFromProto(again);
  if (!back.ok() || catq::RecipeToProto(*back).SerializeAsString() != again.SerializeAsString()) {
    Violation(kName, "accepted recipe does not round-trip");
  }
  if (catq::server::MethodOfJobRequest(request.SerializeAsString()) !=
      std::string(catq::MethodName(submit.recipe.method))) {
    Violation(kName, "the stored method differs from the recipe's");
  }
}

}  // namespace

// Protobuf logs every string field that is not UTF-8 as it rejects the
// parse; millions of such lines would drown the fuzzer's own output.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  catq::v1::SubmitJobRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  MetadataStore& store = Store();
  absl::StatusOr<catq::server::ValidatedSubmit> submit =
      catq::server::ValidateSubmitJobRequest(store, "a", request);
  if (submit.ok()) {
    CheckAccepted(request, *submit);
    return 0;
  }
  CheckRejection(request, submit.status());
  // Tenant b's ids must be indistinguishable from ids nobody has, apart from
  // the id itself in the message.
  const std::string serialized = request.SerializeAsString();
  std::map<std::string, std::string> unknown_for_tenant_b;
  for (const char* id : kTenantBIds) unknown_for_tenant_b[id] = UnknownIdFor(serialized, id);
  const catq::v1::SubmitJobRequest unknown = WithoutTenantB(request, unknown_for_tenant_b);
  if (unknown.SerializeAsString() == serialized) return 0;
  absl::StatusOr<catq::server::ValidatedSubmit> other =
      catq::server::ValidateSubmitJobRequest(store, "a", unknown);
  std::string expected(other.status().message());
  for (const auto& [id, replacement] : unknown_for_tenant_b) {
    for (size_t at = expected.find(replacement); at != std::string::npos;
         at = expected.find(replacement, at)) {
      expected.replace(at, replacement.size(), id);
    }
  }
  if (other.status().code() != submit.status().code() || expected != submit.status().message()) {
    Violation(kName, "another tenant's id is refused unlike an unknown one: " +
                         submit.status().ToString() + " vs " + other.status().ToString());
  }
  return 0;
}
