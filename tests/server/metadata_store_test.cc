#include "server/metadata_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <optional>
#include <ostream>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "catq/v1/catq.pb.h"
#include "core/io/env.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq::server {

// Readable failure output for the records' parts.
void PrintTo(const StoredFile& file, std::ostream* os) {
  *os << "{" << file.path << ", " << file.size << ", " << file.sha256 << "}";
}
void PrintTo(JobState state, std::ostream* os) {
  *os << "JobState(" << static_cast<int>(state) << ")";
}
void PrintTo(TaskState state, std::ostream* os) {
  *os << "TaskState(" << static_cast<int>(state) << ")";
}

namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A digest-shaped string; the store does not check digests, the blob store does.
std::string Sha(char c) { return std::string(64, c); }

auto Fields(const UploadRecord& u) {
  return std::tie(u.tenant, u.id, u.kind, u.name, u.format, u.files, u.complete, u.result_id,
                  u.create_time_ms);
}
auto Fields(const ModelRecord& m) {
  return std::tie(m.id, m.tenant, m.name, m.format, m.files, m.num_layers, m.hidden_size,
                  m.create_time_ms);
}
auto Fields(const CalibrationRecord& c) {
  return std::tie(c.id, c.tenant, c.name, c.kind, c.file, c.create_time_ms);
}
auto Fields(const JobRecord& j) {
  return std::tie(j.id, j.tenant, j.model_id, j.calibration_id, j.eval_calibration_id,
                  j.idempotency_key, j.request, j.state, j.error, j.tasks_total, j.tasks_done,
                  j.create_time_ms, j.update_time_ms, j.calibration_sha256, j.result_files);
}
auto Fields(const TaskRecord& t) {
  return std::tie(t.job_id, t.index, t.layer, t.state, t.attempts, t.result_sha256, t.summary);
}

UploadRecord MakeUpload(const std::string& tenant, const std::string& id) {
  UploadRecord upload;
  upload.tenant = tenant;
  upload.id = id;
  upload.kind = UploadKind::kModel;
  upload.name = "stories";
  upload.format = 2;
  upload.files = {{"config.json", 120, Sha('a')}, {"model.safetensors", 4096, Sha('b')}};
  upload.create_time_ms = 1000;
  return upload;
}

ModelRecord MakeModel(const std::string& tenant, const std::string& id, int64_t time_ms) {
  ModelRecord model;
  model.id = id;
  model.tenant = tenant;
  model.name = absl::StrCat("name-", id);
  model.format = 1;
  model.files = {{"config.json", 120, Sha('a')}, {"model.safetensors", 4096, Sha('b')}};
  model.num_layers = 5;
  model.hidden_size = 64;
  model.create_time_ms = time_ms;
  return model;
}

CalibrationRecord MakeCalibration(const std::string& tenant, const std::string& id) {
  CalibrationRecord calibration;
  calibration.id = id;
  calibration.tenant = tenant;
  calibration.name = "tinystories";
  calibration.kind = 1;
  calibration.file = {"text.txt", 777, Sha('c')};
  calibration.create_time_ms = 2000;
  return calibration;
}

JobRecord MakeJob(const std::string& tenant, const std::string& id, int64_t time_ms,
                  const std::string& key = "") {
  JobRecord job;
  job.id = id;
  job.tenant = tenant;
  job.model_id = "m1";
  job.calibration_id = "c1";
  job.idempotency_key = key;
  // Serialized protobufs hold any byte, NUL included.
  job.request = std::string("\x0a\x00\xff\x01", 4);
  job.create_time_ms = time_ms;
  job.update_time_ms = time_ms;
  return job;
}

std::vector<TaskRecord> MakeTasks(const std::string& job_id, int n) {
  std::vector<TaskRecord> tasks(n);
  for (int i = 0; i < n; ++i) {
    tasks[i].job_id = job_id;
    tasks[i].index = i;
    tasks[i].layer = i / 2;
  }
  return tasks;
}

std::vector<std::string> Ids(const std::vector<JobRecord>& jobs) {
  std::vector<std::string> ids;
  for (const JobRecord& job : jobs) ids.push_back(job.id);
  return ids;
}

class MetadataStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();  // Closes the database first.
    absl::StatusOr<std::unique_ptr<MetadataStore>> store = MetadataStore::Open(path());
    ASSERT_OK(store);
    store_ = *std::move(store);
  }
  std::string path() const { return dir_.Join("catq.db"); }
  // InsertJob that must store a new job.
  void Insert(const JobRecord& job) {
    absl::StatusOr<std::pair<JobRecord, bool>> inserted = store_->InsertJob(job);
    ASSERT_OK(inserted);
    EXPECT_FALSE(inserted->second);
  }
  JobState StateOf(const std::string& tenant, const std::string& id) {
    absl::StatusOr<JobRecord> job = store_->GetJob(tenant, id);
    EXPECT_OK(job);
    return job.ok() ? job->state : JobState::kQueued;
  }

  testing::TempDir dir_;
  std::unique_ptr<MetadataStore> store_;
};

TEST_F(MetadataStoreTest, OpenInMissingDirectoryNamesThePath) {
  const std::string bad = dir_.Join("missing/catq.db");
  EXPECT_STATUS(MetadataStore::Open(bad), absl::StatusCode::kInternal, bad);
}

TEST_F(MetadataStoreTest, OpenRejectsAFileThatIsNotADatabase) {
  const std::string bad = dir_.Join("junk.db");
  ASSERT_OK(WriteFileAtomically(Env::Default(), bad, std::string(4096, 'x')));
  EXPECT_STATUS(MetadataStore::Open(bad), absl::StatusCode::kInternal, bad);
}

TEST(IsTerminal, OnlySucceededFailedCancelled) {
  EXPECT_FALSE(IsTerminal(JobState::kQueued));
  EXPECT_FALSE(IsTerminal(JobState::kCalibrating));
  EXPECT_FALSE(IsTerminal(JobState::kQuantizing));
  EXPECT_FALSE(IsTerminal(JobState::kAssembling));
  EXPECT_FALSE(IsTerminal(JobState::kEvaluating));
  EXPECT_TRUE(IsTerminal(JobState::kSucceeded));
  EXPECT_TRUE(IsTerminal(JobState::kFailed));
  EXPECT_TRUE(IsTerminal(JobState::kCancelled));
}

// --- Uploads ---------------------------------------------------------------

TEST_F(MetadataStoreTest, BeginUploadStoresAndGetUploadReads) {
  const UploadRecord upload = MakeUpload("a", "u1");
  absl::StatusOr<UploadRecord> begun = store_->BeginUpload(upload);
  ASSERT_OK(begun);
  EXPECT_EQ(Fields(*begun), Fields(upload));
  absl::StatusOr<UploadRecord> got = store_->GetUpload("a", "u1");
  ASSERT_OK(got);
  EXPECT_EQ(Fields(*got), Fields(upload));
  EXPECT_STATUS(store_->GetUpload("a", "nope"), absl::StatusCode::kNotFound,
                "upload 'nope': not found");
}

TEST_F(MetadataStoreTest, BeginUploadWithTheSameHeaderResumes) {
  ASSERT_OK(store_->BeginUpload(MakeUpload("a", "u1")));
  ASSERT_OK(store_->CompleteUpload("a", "u1", "m1"));
  UploadRecord again = MakeUpload("a", "u1");
  again.create_time_ms = 5000;  // Not part of the header.
  absl::StatusOr<UploadRecord> resumed = store_->BeginUpload(again);
  ASSERT_OK(resumed);
  EXPECT_TRUE(resumed->complete);
  EXPECT_EQ(resumed->result_id, "m1");
  EXPECT_EQ(resumed->create_time_ms, 1000);
}

TEST_F(MetadataStoreTest, BeginUploadWithADifferentHeaderIsFailedPrecondition) {
  ASSERT_OK(store_->BeginUpload(MakeUpload("a", "u1")));
  UploadRecord other = MakeUpload("a", "u1");
  other.files[0].sha256 = Sha('f');
  EXPECT_STATUS(store_->BeginUpload(other), absl::StatusCode::kFailedPrecondition,
                "upload 'u1': exists with a different header: files[0].sha256");
  other = MakeUpload("a", "u1");
  other.files.pop_back();
  EXPECT_STATUS(store_->BeginUpload(other), absl::StatusCode::kFailedPrecondition, "files.size");
  other = MakeUpload("a", "u1");
  other.kind = UploadKind::kCalibration;
  EXPECT_STATUS(store_->BeginUpload(other), absl::StatusCode::kFailedPrecondition, "kind");
  other = MakeUpload("a", "u1");
  other.name = "other";
  EXPECT_STATUS(store_->BeginUpload(other), absl::StatusCode::kFailedPrecondition, "name");
  // The stored upload is unchanged.
  absl::StatusOr<UploadRecord> got = store_->GetUpload("a", "u1");
  ASSERT_OK(got);
  EXPECT_EQ(Fields(*got), Fields(MakeUpload("a", "u1")));
}

TEST_F(MetadataStoreTest, CompleteUploadIsIdempotentForTheSameResult) {
  ASSERT_OK(store_->BeginUpload(MakeUpload("a", "u1")));
  ASSERT_OK(store_->CompleteUpload("a", "u1", "m1"));
  ASSERT_OK(store_->CompleteUpload("a", "u1", "m1"));
  EXPECT_STATUS(store_->CompleteUpload("a", "u1", "m2"), absl::StatusCode::kFailedPrecondition,
                "already complete as 'm1'");
  EXPECT_STATUS(store_->CompleteUpload("a", "nope", "m1"), absl::StatusCode::kNotFound,
                "upload 'nope': not found");
  absl::StatusOr<UploadRecord> got = store_->GetUpload("a", "u1");
  ASSERT_OK(got);
  EXPECT_TRUE(got->complete);
  EXPECT_EQ(got->result_id, "m1");
}

// --- Models and calibrations -------------------------------------------------

TEST_F(MetadataStoreTest, ModelsInsertGetListDelete) {
  ASSERT_OK(store_->InsertModel(MakeModel("a", "m2", 20)));
  ASSERT_OK(store_->InsertModel(MakeModel("a", "m1", 10)));
  EXPECT_STATUS(store_->InsertModel(MakeModel("b", "m1", 30)), absl::StatusCode::kAlreadyExists,
                "model 'm1': already exists");
  absl::StatusOr<ModelRecord> got = store_->GetModel("a", "m2");
  ASSERT_OK(got);
  EXPECT_EQ(Fields(*got), Fields(MakeModel("a", "m2", 20)));

  absl::StatusOr<std::vector<ModelRecord>> listed = store_->ListModels("a");
  ASSERT_OK(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ(Fields((*listed)[0]), Fields(MakeModel("a", "m1", 10)));
  EXPECT_EQ(Fields((*listed)[1]), Fields(MakeModel("a", "m2", 20)));

  ASSERT_OK(store_->DeleteModel("a", "m1"));
  EXPECT_STATUS(store_->GetModel("a", "m1"), absl::StatusCode::kNotFound, "model 'm1': not found");
  EXPECT_STATUS(store_->DeleteModel("a", "m1"), absl::StatusCode::kNotFound,
                "model 'm1': not found");
  listed = store_->ListModels("a");
  ASSERT_OK(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, "m2");
}

TEST_F(MetadataStoreTest, DeleteModelRefusedWhileAnUnfinishedJobUsesIt) {
  ASSERT_OK(store_->InsertModel(MakeModel("a", "m1", 10)));
  Insert(MakeJob("a", "j1", 100));  // Uses m1.
  ASSERT_OK(store_->SetJobState("j1", JobState::kQuantizing, "", 110));
  EXPECT_STATUS(store_->DeleteModel("a", "m1"), absl::StatusCode::kFailedPrecondition,
                "model 'm1': in use by unfinished job 'j1'");
  ASSERT_OK(store_->GetModel("a", "m1"));
  ASSERT_OK(store_->SetJobState("j1", JobState::kFailed, "boom", 120));
  ASSERT_OK(store_->DeleteModel("a", "m1"));
  // The finished job keeps its history.
  absl::StatusOr<JobRecord> job = store_->GetJob("a", "j1");
  ASSERT_OK(job);
  EXPECT_EQ(job->model_id, "m1");
}

TEST_F(MetadataStoreTest, CalibrationsInsertGet) {
  ASSERT_OK(store_->InsertCalibration(MakeCalibration("a", "c1")));
  EXPECT_STATUS(store_->InsertCalibration(MakeCalibration("a", "c1")),
                absl::StatusCode::kAlreadyExists, "calibration 'c1': already exists");
  absl::StatusOr<CalibrationRecord> got = store_->GetCalibration("a", "c1");
  ASSERT_OK(got);
  EXPECT_EQ(Fields(*got), Fields(MakeCalibration("a", "c1")));
  EXPECT_STATUS(store_->GetCalibration("a", "c2"), absl::StatusCode::kNotFound,
                "calibration 'c2': not found");
}

// --- Tenants -------------------------------------------------------------------

TEST_F(MetadataStoreTest, AnotherTenantsIdsAreNotFoundLikeUnknownIds) {
  ASSERT_OK(store_->BeginUpload(MakeUpload("a", "u1")));
  ASSERT_OK(store_->InsertModel(MakeModel("a", "m1", 10)));
  ASSERT_OK(store_->InsertCalibration(MakeCalibration("a", "c1")));
  Insert(MakeJob("a", "j1", 100));

  // The same message as for an id that never existed.
  auto same_as_unknown = [](const absl::Status& other_tenant, const absl::Status& unknown,
                            const std::string& message) {
    EXPECT_EQ(other_tenant.code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(other_tenant.message(), message);
    EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  };
  same_as_unknown(store_->GetUpload("b", "u1").status(), store_->GetUpload("b", "u9").status(),
                  "upload 'u1': not found");
  same_as_unknown(store_->CompleteUpload("b", "u1", "m1"), store_->CompleteUpload("b", "u9", "m1"),
                  "upload 'u1': not found");
  same_as_unknown(store_->GetModel("b", "m1").status(), store_->GetModel("b", "m9").status(),
                  "model 'm1': not found");
  same_as_unknown(store_->DeleteModel("b", "m1"), store_->DeleteModel("b", "m9"),
                  "model 'm1': not found");
  same_as_unknown(store_->GetCalibration("b", "c1").status(),
                  store_->GetCalibration("b", "c9").status(), "calibration 'c1': not found");
  same_as_unknown(store_->GetJob("b", "j1").status(), store_->GetJob("b", "j9").status(),
                  "job 'j1': not found");

  absl::StatusOr<std::vector<ModelRecord>> models = store_->ListModels("b");
  ASSERT_OK(models);
  EXPECT_THAT(*models, IsEmpty());
  absl::StatusOr<std::vector<JobRecord>> jobs = store_->ListJobs("b", 10);
  ASSERT_OK(jobs);
  EXPECT_THAT(*jobs, IsEmpty());
  EXPECT_EQ(*store_->CountUnfinishedJobs("b"), 0);
  EXPECT_EQ(*store_->CountUnfinishedJobs("a"), 1);
  // Tenant a's records survive b's attempts.
  ASSERT_OK(store_->GetModel("a", "m1"));
  EXPECT_FALSE(store_->GetUpload("a", "u1")->complete);
}

TEST_F(MetadataStoreTest, UploadIdsAreScopedByTenant) {
  ASSERT_OK(store_->BeginUpload(MakeUpload("a", "u1")));
  UploadRecord other = MakeUpload("b", "u1");
  other.name = "another";  // Not a conflicting header: a different tenant's upload.
  ASSERT_OK(store_->BeginUpload(other));
  EXPECT_EQ(store_->GetUpload("a", "u1")->name, "stories");
  EXPECT_EQ(store_->GetUpload("b", "u1")->name, "another");
}

// --- Jobs ------------------------------------------------------------------------

TEST_F(MetadataStoreTest, InsertJobStoresEveryField) {
  JobRecord job = MakeJob("a", "j1", 100, "key-1");
  job.eval_calibration_id = "c2";
  job.error = "none yet";
  job.calibration_sha256 = Sha('d');
  job.result_files = {{"out/model.safetensors", 10, Sha('e')}};
  absl::StatusOr<std::pair<JobRecord, bool>> inserted = store_->InsertJob(job);
  ASSERT_OK(inserted);
  EXPECT_FALSE(inserted->second);
  EXPECT_EQ(Fields(inserted->first), Fields(job));
  absl::StatusOr<JobRecord> got = store_->GetJob("a", "j1");
  ASSERT_OK(got);
  EXPECT_EQ(Fields(*got), Fields(job));
  EXPECT_STATUS(store_->InsertJob(MakeJob("a", "j1", 200)), absl::StatusCode::kAlreadyExists,
                "job 'j1': already exists");
}

TEST_F(MetadataStoreTest, InsertJobWithAnExistingIdempotencyKeyReturnsThatJob) {
  const JobRecord first = MakeJob("a", "j1", 100, "key-1");
  Insert(first);
  absl::StatusOr<std::pair<JobRecord, bool>> again =
      store_->InsertJob(MakeJob("a", "j2", 200, "key-1"));
  ASSERT_OK(again);
  EXPECT_TRUE(again->second);
  EXPECT_EQ(Fields(again->first), Fields(first));
  EXPECT_STATUS(store_->GetJob("a", "j2"), absl::StatusCode::kNotFound, "job 'j2': not found");

  // Keys are per tenant, and an empty key is no key.
  Insert(MakeJob("b", "j3", 300, "key-1"));
  Insert(MakeJob("a", "j4", 400));
  Insert(MakeJob("a", "j5", 500));
  EXPECT_EQ(*store_->CountUnfinishedJobs("a"), 3);
}

TEST_F(MetadataStoreTest, FindJobByIdempotencyKeyIsPerTenant) {
  const JobRecord first = MakeJob("a", "j1", 100, "key-1");
  Insert(first);
  Insert(MakeJob("b", "j2", 200, "key-1"));
  Insert(MakeJob("a", "j3", 300));

  absl::StatusOr<std::optional<JobRecord>> found = store_->FindJobByIdempotencyKey("a", "key-1");
  ASSERT_OK(found);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(Fields(**found), Fields(first));
  found = store_->FindJobByIdempotencyKey("b", "key-1");
  ASSERT_OK(found);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, "j2");
  found = store_->FindJobByIdempotencyKey("a", "key-2");
  ASSERT_OK(found);
  EXPECT_FALSE(found->has_value());
  found = store_->FindJobByIdempotencyKey("c", "key-1");
  ASSERT_OK(found);
  EXPECT_FALSE(found->has_value());
  // Jobs without a key are not found by the empty key.
  EXPECT_STATUS(store_->FindJobByIdempotencyKey("a", ""), absl::StatusCode::kInvalidArgument,
                "idempotency key");
}

TEST_F(MetadataStoreTest, ListJobsNewestFirstWithLimit) {
  Insert(MakeJob("a", "j1", 100));
  Insert(MakeJob("a", "j3", 300));
  Insert(MakeJob("a", "j2b", 200));
  Insert(MakeJob("a", "j2a", 200));
  Insert(MakeJob("b", "j9", 900));
  absl::StatusOr<std::vector<JobRecord>> jobs = store_->ListJobs("a", 10);
  ASSERT_OK(jobs);
  EXPECT_THAT(Ids(*jobs), ElementsAre("j3", "j2b", "j2a", "j1"));
  jobs = store_->ListJobs("a", 2);
  ASSERT_OK(jobs);
  EXPECT_THAT(Ids(*jobs), ElementsAre("j3", "j2b"));
  EXPECT_STATUS(store_->ListJobs("a", 0), absl::StatusCode::kInvalidArgument, "limit");
}

TEST_F(MetadataStoreTest, ListUnfinishedJobsOldestFirstAcrossTenants) {
  Insert(MakeJob("a", "j3", 300));
  Insert(MakeJob("b", "j1", 100));
  Insert(MakeJob("a", "j2", 200));
  Insert(MakeJob("b", "j4", 400));
  Insert(MakeJob("a", "j0", 50));
  ASSERT_OK(store_->SetJobState("j2", JobState::kQuantizing, "", 210));
  ASSERT_OK(store_->SetJobState("j4", JobState::kCancelled, "", 410));
  ASSERT_OK(store_->SetJobResult("j0", {}, 60));
  absl::StatusOr<std::vector<JobRecord>> jobs = store_->ListUnfinishedJobs();
  ASSERT_OK(jobs);
  EXPECT_THAT(Ids(*jobs), ElementsAre("j1", "j2", "j3"));
  EXPECT_EQ(*store_->CountUnfinishedJobs("a"), 2);
  EXPECT_EQ(*store_->CountUnfinishedJobs("b"), 1);
}

TEST_F(MetadataStoreTest, CountJobsByStateAndMethodCountsEveryTenant) {
  JobRecord cat = MakeJob("a", "j1", 100);
  cat.method = "cat";
  Insert(cat);
  Insert(MakeJob("b", "j2", 200));
  JobRecord rtn = MakeJob("a", "j3", 300);
  rtn.method = "rtn";
  Insert(rtn);
  ASSERT_OK(store_->SetJobState("j2", JobState::kQuantizing, "", 210));
  ASSERT_OK(store_->SetJobResult("j3", {}, 310));
  auto counts = store_->CountJobsByStateAndMethod();
  ASSERT_OK(counts);
  using Key = std::pair<JobState, std::string>;
  EXPECT_EQ(*counts, (std::map<Key, int64_t>{{{JobState::kQueued, "cat"}, 1},
                                             {{JobState::kQuantizing, ""}, 1},
                                             {{JobState::kSucceeded, "rtn"}, 1}}));
  absl::StatusOr<JobRecord> stored = store_->GetJob("a", "j1");
  ASSERT_OK(stored);
  EXPECT_EQ(stored->method, "cat");
}

// A database written by a schema-1 server (no jobs.method) opens, and every
// job gets the method of the recipe it was submitted with.
TEST_F(MetadataStoreTest, SchemaOneDatabaseGainsJobMethods) {
  v1::SubmitJobRequest request;
  request.mutable_recipe()->set_method("hadamard");
  JobRecord hadamard = MakeJob("a", "j1", 100);
  hadamard.request = request.SerializeAsString();
  Insert(hadamard);
  JobRecord defaults = MakeJob("a", "j2", 200);
  defaults.request = v1::SubmitJobRequest().SerializeAsString();
  Insert(defaults);
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "ALTER TABLE jobs DROP COLUMN method; PRAGMA user_version = 1;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  Reopen();
  absl::StatusOr<JobRecord> j1 = store_->GetJob("a", "j1");
  ASSERT_OK(j1);
  EXPECT_EQ(j1->method, "hadamard");
  absl::StatusOr<JobRecord> j2 = store_->GetJob("a", "j2");
  ASSERT_OK(j2);
  EXPECT_EQ(j2->method, "rtn");
  Reopen();  // already migrated: opens as is
  EXPECT_EQ(store_->GetJob("a", "j1")->method, "hadamard");
}

TEST_F(MetadataStoreTest, SetJobStateUpdatesUntilTerminal) {
  Insert(MakeJob("a", "j1", 100));
  ASSERT_OK(store_->SetJobState("j1", JobState::kCalibrating, "", 150));
  absl::StatusOr<JobRecord> job = store_->GetJob("a", "j1");
  ASSERT_OK(job);
  EXPECT_EQ(job->state, JobState::kCalibrating);
  EXPECT_EQ(job->update_time_ms, 150);

  ASSERT_OK(store_->SetJobState("j1", JobState::kCancelled, "cancelled by user", 160));
  EXPECT_STATUS(store_->SetJobState("j1", JobState::kQuantizing, "", 170),
                absl::StatusCode::kFailedPrecondition, "job 'j1': already cancelled");
  EXPECT_STATUS(store_->SetJobState("j1", JobState::kFailed, "late", 170),
                absl::StatusCode::kFailedPrecondition, "job 'j1': already cancelled");
  EXPECT_STATUS(store_->SetJobResult("j1", {{"a", 1, Sha('a')}}, 170),
                absl::StatusCode::kFailedPrecondition, "job 'j1': already cancelled");
  job = store_->GetJob("a", "j1");
  ASSERT_OK(job);
  EXPECT_EQ(job->state, JobState::kCancelled);
  EXPECT_EQ(job->error, "cancelled by user");
  EXPECT_EQ(job->update_time_ms, 160);
  EXPECT_THAT(job->result_files, IsEmpty());

  Insert(MakeJob("a", "j2", 100));
  ASSERT_OK(store_->SetJobState("j2", JobState::kFailed, "out of memory", 200));
  EXPECT_STATUS(store_->SetJobState("j2", JobState::kQueued, "", 210),
                absl::StatusCode::kFailedPrecondition, "job 'j2': already failed");
  EXPECT_STATUS(store_->SetJobState("nope", JobState::kFailed, "", 210),
                absl::StatusCode::kNotFound, "job 'nope': not found");
  EXPECT_STATUS(store_->SetJobState("j2", static_cast<JobState>(42), "", 210),
                absl::StatusCode::kInvalidArgument, "no job state 42");
}

TEST_F(MetadataStoreTest, SetJobResultAndCalibration) {
  Insert(MakeJob("a", "j1", 100));
  ASSERT_OK(store_->SetJobCalibration("j1", Sha('d')));
  ASSERT_OK(store_->SetJobState("j1", JobState::kAssembling, "", 150));
  const std::vector<StoredFile> files = {{"model.safetensors", 10, Sha('e')},
                                         {"report.json", 5, Sha('f')}};
  ASSERT_OK(store_->SetJobResult("j1", files, 200));
  absl::StatusOr<JobRecord> job = store_->GetJob("a", "j1");
  ASSERT_OK(job);
  EXPECT_EQ(job->state, JobState::kSucceeded);
  EXPECT_EQ(job->update_time_ms, 200);
  EXPECT_EQ(job->calibration_sha256, Sha('d'));
  EXPECT_EQ(job->result_files, files);
  EXPECT_STATUS(store_->SetJobResult("j1", files, 300), absl::StatusCode::kFailedPrecondition,
                "job 'j1': already succeeded");
  EXPECT_STATUS(store_->SetJobCalibration("nope", Sha('d')), absl::StatusCode::kNotFound,
                "job 'nope': not found");
  EXPECT_STATUS(store_->SetJobResult("nope", files, 300), absl::StatusCode::kNotFound,
                "job 'nope': not found");
}

// --- Tasks -----------------------------------------------------------------------

TEST_F(MetadataStoreTest, CreateTasksOnceThenANoOp) {
  Insert(MakeJob("a", "j1", 100));
  ASSERT_OK(store_->CreateTasks("j1", MakeTasks("j1", 3)));
  ASSERT_OK(store_->StartTask("j1", 1));
  // A restart re-plans: nothing changes, not even a smaller plan.
  ASSERT_OK(store_->CreateTasks("j1", MakeTasks("j1", 2)));
  absl::StatusOr<std::vector<TaskRecord>> tasks = store_->ListTasks("j1");
  ASSERT_OK(tasks);
  ASSERT_EQ(tasks->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    TaskRecord expected = MakeTasks("j1", 3)[i];
    if (i == 1) {
      expected.state = TaskState::kRunning;
      expected.attempts = 1;
    }
    EXPECT_EQ(Fields((*tasks)[i]), Fields(expected)) << i;
  }
  EXPECT_EQ(store_->GetJob("a", "j1")->tasks_total, 3);

  EXPECT_STATUS(store_->CreateTasks("nope", MakeTasks("nope", 1)), absl::StatusCode::kNotFound,
                "job 'nope': not found");
  EXPECT_STATUS(store_->ListTasks("nope"), absl::StatusCode::kNotFound, "job 'nope': not found");
  std::vector<TaskRecord> gap = MakeTasks("j1", 2);
  gap[1].index = 5;
  EXPECT_STATUS(store_->CreateTasks("j1", gap), absl::StatusCode::kInvalidArgument,
                "tasks[1] has index 5");
}

TEST_F(MetadataStoreTest, StartTaskOnlyFromPending) {
  Insert(MakeJob("a", "j1", 100));
  ASSERT_OK(store_->CreateTasks("j1", MakeTasks("j1", 2)));
  ASSERT_OK(store_->StartTask("j1", 0));
  EXPECT_STATUS(store_->StartTask("j1", 0), absl::StatusCode::kFailedPrecondition,
                "task 0 of job 'j1': running, not pending");
  ASSERT_OK(store_->ResetTask("j1", 0));
  ASSERT_OK(store_->StartTask("j1", 0));
  EXPECT_EQ((*store_->ListTasks("j1"))[0].attempts, 2);
  EXPECT_STATUS(store_->StartTask("j1", 7), absl::StatusCode::kNotFound,
                "task 7 of job 'j1': not found");
}

TEST_F(MetadataStoreTest, CompleteTaskFirstResultWinsAndCountsOnce) {
  Insert(MakeJob("a", "j1", 100));
  ASSERT_OK(store_->CreateTasks("j1", MakeTasks("j1", 3)));
  ASSERT_OK(store_->StartTask("j1", 0));
  const std::string summary("\x08\x00\x10\xff", 4);
  absl::StatusOr<bool> first = store_->CompleteTask("j1", 0, Sha('1'), summary);
  ASSERT_OK(first);
  EXPECT_TRUE(*first);
  absl::StatusOr<bool> second = store_->CompleteTask("j1", 0, Sha('2'), "other");
  ASSERT_OK(second);
  EXPECT_FALSE(*second);
  // A pending task (its worker's reset raced the result) completes too.
  EXPECT_TRUE(*store_->CompleteTask("j1", 2, Sha('3'), ""));

  absl::StatusOr<std::vector<TaskRecord>> tasks = store_->ListTasks("j1");
  ASSERT_OK(tasks);
  EXPECT_EQ((*tasks)[0].state, TaskState::kDone);
  EXPECT_EQ((*tasks)[0].result_sha256, Sha('1'));
  EXPECT_EQ((*tasks)[0].summary, summary);
  EXPECT_EQ((*tasks)[1].state, TaskState::kPending);
  EXPECT_EQ((*tasks)[2].state, TaskState::kDone);
  EXPECT_EQ(store_->GetJob("a", "j1")->tasks_done, 2);

  EXPECT_STATUS(store_->StartTask("j1", 0), absl::StatusCode::kFailedPrecondition,
                "task 0 of job 'j1': done, not pending");
  EXPECT_STATUS(store_->ResetTask("j1", 0), absl::StatusCode::kFailedPrecondition,
                "task 0 of job 'j1': done");
  EXPECT_STATUS(store_->CompleteTask("j1", 9, Sha('1'), ""), absl::StatusCode::kNotFound,
                "task 9 of job 'j1': not found");
  EXPECT_STATUS(store_->ResetTask("nope", 0), absl::StatusCode::kNotFound,
                "task 0 of job 'nope': not found");
}

TEST_F(MetadataStoreTest, ResetRunningTasksOfEveryJob) {
  Insert(MakeJob("a", "j1", 100));
  Insert(MakeJob("b", "j2", 200));
  ASSERT_OK(store_->CreateTasks("j1", MakeTasks("j1", 3)));
  ASSERT_OK(store_->CreateTasks("j2", MakeTasks("j2", 2)));
  ASSERT_OK(store_->StartTask("j1", 0));
  ASSERT_OK(store_->StartTask("j1", 1));
  ASSERT_OK(store_->CompleteTask("j1", 1, Sha('1'), "s"));
  ASSERT_OK(store_->StartTask("j2", 1));
  ASSERT_OK(store_->ResetRunningTasks());
  std::vector<TaskState> states;
  for (const char* job : {"j1", "j2"}) {
    absl::StatusOr<std::vector<TaskRecord>> tasks = store_->ListTasks(job);
    ASSERT_OK(tasks);
    for (const TaskRecord& task : *tasks) states.push_back(task.state);
  }
  EXPECT_THAT(states, ElementsAre(TaskState::kPending, TaskState::kDone, TaskState::kPending,
                                  TaskState::kPending, TaskState::kPending));
  // Attempts are history: a reset does not undo them.
  EXPECT_EQ((*store_->ListTasks("j2"))[1].attempts, 1);
}

TEST_F(MetadataStoreTest, ReferencedBlobsFromEveryKindOfRecord) {
  UploadRecord upload = MakeUpload("a", "u1");
  upload.files = {{"x", 1, Sha('1')}};
  ASSERT_OK(store_->BeginUpload(upload));
  ModelRecord model = MakeModel("a", "m1", 10);
  model.files = {{"x", 1, Sha('1')}, {"y", 2, Sha('2')}};
  ASSERT_OK(store_->InsertModel(model));
  CalibrationRecord calibration = MakeCalibration("a", "c1");
  calibration.file.sha256 = Sha('3');
  ASSERT_OK(store_->InsertCalibration(calibration));
  Insert(MakeJob("a", "j1", 100));
  ASSERT_OK(store_->SetJobCalibration("j1", Sha('4')));
  ASSERT_OK(store_->CreateTasks("j1", MakeTasks("j1", 2)));
  ASSERT_OK(store_->CompleteTask("j1", 0, Sha('5'), ""));
  ASSERT_OK(store_->SetJobResult("j1", {{"out", 3, Sha('6')}}, 200));
  absl::StatusOr<std::vector<std::string>> blobs = store_->ReferencedBlobs();
  ASSERT_OK(blobs);
  EXPECT_THAT(*blobs, ElementsAre(Sha('1'), Sha('2'), Sha('3'), Sha('4'), Sha('5'), Sha('6')));

  // A deleted model's files are no longer referenced.
  ASSERT_OK(store_->DeleteModel("a", "m1"));
  blobs = store_->ReferencedBlobs();
  ASSERT_OK(blobs);
  EXPECT_THAT(*blobs, ElementsAre(Sha('1'), Sha('3'), Sha('4'), Sha('5'), Sha('6')));
}

// --- Durability and concurrency ------------------------------------------------

TEST_F(MetadataStoreTest, EveryRecordSurvivesReopening) {
  const UploadRecord upload = MakeUpload("a", "u1");
  ASSERT_OK(store_->BeginUpload(upload));
  ASSERT_OK(store_->CompleteUpload("a", "u1", "m1"));
  ASSERT_OK(store_->InsertModel(MakeModel("a", "m1", 10)));
  ASSERT_OK(store_->InsertModel(MakeModel("a", "m2", 20)));
  ASSERT_OK(store_->DeleteModel("a", "m2"));
  ASSERT_OK(store_->InsertCalibration(MakeCalibration("a", "c1")));
  Insert(MakeJob("a", "j1", 100, "key-1"));
  ASSERT_OK(store_->SetJobCalibration("j1", Sha('d')));
  ASSERT_OK(store_->SetJobState("j1", JobState::kQuantizing, "", 150));
  ASSERT_OK(store_->CreateTasks("j1", MakeTasks("j1", 2)));
  ASSERT_OK(store_->StartTask("j1", 0));
  ASSERT_OK(store_->CompleteTask("j1", 0, Sha('5'), std::string("\0s", 2)));
  ASSERT_OK(store_->StartTask("j1", 1));
  Insert(MakeJob("b", "j2", 200));
  ASSERT_OK(store_->SetJobResult("j2", {{"out", 3, Sha('6')}}, 250));
  const JobRecord j1 = *store_->GetJob("a", "j1");
  const JobRecord j2 = *store_->GetJob("b", "j2");
  const std::vector<TaskRecord> tasks = *store_->ListTasks("j1");

  Reopen();
  UploadRecord completed = upload;
  completed.complete = true;
  completed.result_id = "m1";
  EXPECT_EQ(Fields(*store_->GetUpload("a", "u1")), Fields(completed));
  EXPECT_EQ(Fields(*store_->GetModel("a", "m1")), Fields(MakeModel("a", "m1", 10)));
  EXPECT_STATUS(store_->GetModel("a", "m2"), absl::StatusCode::kNotFound, "not found");
  EXPECT_EQ(store_->ListModels("a")->size(), 1u);
  EXPECT_EQ(Fields(*store_->GetCalibration("a", "c1")), Fields(MakeCalibration("a", "c1")));
  EXPECT_EQ(Fields(*store_->GetJob("a", "j1")), Fields(j1));
  EXPECT_EQ(Fields(*store_->GetJob("b", "j2")), Fields(j2));
  EXPECT_EQ(j1.tasks_done, 1);
  std::vector<TaskRecord> reopened = *store_->ListTasks("j1");
  ASSERT_EQ(reopened.size(), tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) EXPECT_EQ(Fields(reopened[i]), Fields(tasks[i]));
  // The idempotency key still holds.
  EXPECT_TRUE(store_->InsertJob(MakeJob("a", "j3", 300, "key-1"))->second);
  EXPECT_THAT(Ids(*store_->ListUnfinishedJobs()), ElementsAre("j1"));
}

TEST_F(MetadataStoreTest, WritesGoThroughTheWriteAheadLog) {
  Insert(MakeJob("a", "j1", 100));
  EXPECT_TRUE(Env::Default()->FileExists(path() + "-wal"));
}

// A server killed without closing the database keeps every committed write:
// a child process commits and exits at once, skipping every destructor.
TEST_F(MetadataStoreTest, CommittedWritesSurviveAKilledProcess) {
  store_.reset();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    absl::StatusOr<std::unique_ptr<MetadataStore>> store = MetadataStore::Open(path());
    bool ok = store.ok() && (*store)->InsertJob(MakeJob("a", "j1", 100)).ok() &&
              (*store)->CreateTasks("j1", MakeTasks("j1", 2)).ok() &&
              (*store)->CompleteTask("j1", 1, Sha('1'), "s").ok();
    ::_exit(ok ? 0 : 1);
  }
  int wait_status = 0;
  ASSERT_EQ(::waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFEXITED(wait_status));
  ASSERT_EQ(WEXITSTATUS(wait_status), 0);
  Reopen();
  absl::StatusOr<JobRecord> job = store_->GetJob("a", "j1");
  ASSERT_OK(job);
  EXPECT_EQ(job->tasks_total, 2);
  EXPECT_EQ(job->tasks_done, 1);
}

TEST_F(MetadataStoreTest, ConcurrentJobsAndTasksCountExactly) {
  constexpr int kThreads = 4;
  constexpr int kJobsPerThread = 10;
  constexpr int kTasksPerJob = 6;
  // Every thread also races the others to complete the tasks of one shared job.
  Insert(MakeJob("shared", "shared", 1));
  ASSERT_OK(store_->CreateTasks("shared", MakeTasks("shared", kTasksPerJob)));
  std::atomic<int> shared_wins{0};
  std::atomic<int> failures{0};
  auto check = [&](const absl::Status& status) {
    if (!status.ok()) failures.fetch_add(1);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string tenant = absl::StrCat("tenant-", t);
      for (int j = 0; j < kJobsPerThread; ++j) {
        const std::string id = absl::StrCat("job-", t, "-", j);
        check(store_->InsertJob(MakeJob(tenant, id, j, id)).status());
        check(store_->InsertJob(MakeJob(tenant, absl::StrCat(id, "-retry"), j, id)).status());
        check(store_->CreateTasks(id, MakeTasks(id, kTasksPerJob)));
        for (int i = 0; i < kTasksPerJob; ++i) {
          check(store_->StartTask(id, i));
          check(store_->CompleteTask(id, i, Sha('a'), "").status());
        }
        absl::StatusOr<bool> won =
            store_->CompleteTask("shared", j % kTasksPerJob, Sha('b'), absl::StrCat(t));
        check(won.status());
        if (won.ok() && *won) shared_wins.fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(shared_wins.load(), kTasksPerJob);
  EXPECT_EQ(store_->GetJob("shared", "shared")->tasks_done, kTasksPerJob);
  for (int t = 0; t < kThreads; ++t) {
    const std::string tenant = absl::StrCat("tenant-", t);
    absl::StatusOr<std::vector<JobRecord>> jobs = store_->ListJobs(tenant, 100);
    ASSERT_OK(jobs);
    ASSERT_EQ(jobs->size(), static_cast<size_t>(kJobsPerThread));
    for (const JobRecord& job : *jobs) {
      EXPECT_EQ(job.tasks_total, kTasksPerJob) << job.id;
      EXPECT_EQ(job.tasks_done, kTasksPerJob) << job.id;
    }
  }
}

}  // namespace
}  // namespace catq::server
