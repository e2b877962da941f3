// The SQLite MetadataStore: one connection behind a mutex, WAL mode, every
// write one IMMEDIATE transaction. Lists of files live in child tables (one
// row per file, ordered by `position`), so no record is ever parsed from text.
#include "server/metadata_store.h"

#include <sqlite3.h>

#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "catq/v1/catq.pb.h"
#include "core/util/status_macros.h"
#include "server/disk_reserve.h"

namespace catq::server {

bool IsTerminal(JobState state) {
  return state == JobState::kSucceeded || state == JobState::kFailed ||
         state == JobState::kCancelled;
}

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kCalibrating:
      return "calibrating";
    case JobState::kQuantizing:
      return "quantizing";
    case JobState::kAssembling:
      return "assembling";
    case JobState::kEvaluating:
      return "evaluating";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::string MethodOfJobRequest(const std::string& serialized_request) {
  v1::SubmitJobRequest request;
  if (!request.ParseFromString(serialized_request)) return "";
  return request.recipe().method().empty() ? "rtn" : request.recipe().method();
}

namespace {

// PRAGMA user_version of the schema below. Open refuses a database written
// by a newer server rather than guess at columns it does not know, and
// migrates an older one (MigrateSchema). Version 2 added jobs.method.
constexpr int kSchemaVersion = 2;

// Room kept free for recording job ends on a full disk (DiskReserve): a
// state update writes a few 4 KiB WAL pages.
constexpr uint64_t kDiskReserveBytes = 512 << 10;

// The SQL below spells the terminal states as numbers.
static_assert(static_cast<int>(JobState::kSucceeded) == 6 &&
              static_cast<int>(JobState::kFailed) == 7 &&
              static_cast<int>(JobState::kCancelled) == 8);
constexpr absl::string_view kUnfinished = "state NOT IN (6, 7, 8)";

constexpr const char* kSchema[] = {
    R"sql(CREATE TABLE IF NOT EXISTS uploads (
      tenant TEXT NOT NULL,
      id TEXT NOT NULL,
      kind INTEGER NOT NULL,
      name TEXT NOT NULL,
      format INTEGER NOT NULL,
      complete INTEGER NOT NULL,
      result_id TEXT NOT NULL,
      create_time_ms INTEGER NOT NULL,
      PRIMARY KEY (tenant, id)))sql",
    R"sql(CREATE TABLE IF NOT EXISTS upload_files (
      tenant TEXT NOT NULL,
      upload_id TEXT NOT NULL,
      position INTEGER NOT NULL,
      path TEXT NOT NULL,
      size INTEGER NOT NULL,
      sha256 TEXT NOT NULL,
      PRIMARY KEY (tenant, upload_id, position),
      FOREIGN KEY (tenant, upload_id) REFERENCES uploads (tenant, id) ON DELETE CASCADE))sql",
    R"sql(CREATE TABLE IF NOT EXISTS models (
      id TEXT PRIMARY KEY,
      tenant TEXT NOT NULL,
      name TEXT NOT NULL,
      format INTEGER NOT NULL,
      num_layers INTEGER NOT NULL,
      hidden_size INTEGER NOT NULL,
      create_time_ms INTEGER NOT NULL))sql",
    "CREATE INDEX IF NOT EXISTS models_by_tenant ON models (tenant, create_time_ms, id)",
    R"sql(CREATE TABLE IF NOT EXISTS model_files (
      model_id TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
      position INTEGER NOT NULL,
      path TEXT NOT NULL,
      size INTEGER NOT NULL,
      sha256 TEXT NOT NULL,
      PRIMARY KEY (model_id, position)))sql",
    R"sql(CREATE TABLE IF NOT EXISTS calibrations (
      id TEXT PRIMARY KEY,
      tenant TEXT NOT NULL,
      name TEXT NOT NULL,
      kind INTEGER NOT NULL,
      file_path TEXT NOT NULL,
      file_size INTEGER NOT NULL,
      file_sha256 TEXT NOT NULL,
      create_time_ms INTEGER NOT NULL))sql",
    // Jobs keep their model_id without a foreign key: a finished job's
    // history outlives the model it was made from.
    R"sql(CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY,
      tenant TEXT NOT NULL,
      model_id TEXT NOT NULL,
      calibration_id TEXT NOT NULL,
      eval_calibration_id TEXT NOT NULL,
      idempotency_key TEXT NOT NULL,
      request BLOB NOT NULL,
      state INTEGER NOT NULL,
      error TEXT NOT NULL,
      tasks_total INTEGER NOT NULL,
      tasks_done INTEGER NOT NULL,
      create_time_ms INTEGER NOT NULL,
      update_time_ms INTEGER NOT NULL,
      calibration_sha256 TEXT NOT NULL,
      method TEXT NOT NULL DEFAULT ''))sql",
    R"sql(CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency_key
      ON jobs (tenant, idempotency_key) WHERE idempotency_key <> '')sql",
    "CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, create_time_ms, id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_model ON jobs (model_id)",
    R"sql(CREATE TABLE IF NOT EXISTS job_files (
      job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
      position INTEGER NOT NULL,
      path TEXT NOT NULL,
      size INTEGER NOT NULL,
      sha256 TEXT NOT NULL,
      PRIMARY KEY (job_id, position)))sql",
    R"sql(CREATE TABLE IF NOT EXISTS tasks (
      job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
      idx INTEGER NOT NULL,
      layer INTEGER NOT NULL,
      state INTEGER NOT NULL,
      attempts INTEGER NOT NULL,
      result_sha256 TEXT NOT NULL,
      summary BLOB NOT NULL,
      PRIMARY KEY (job_id, idx)))sql",
};

// SqliteError: Internal with SQLite's message, or ResourceExhausted for a full
// disk so that callers can tell the operator what to do.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view context) {
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message = absl::StrCat("sqlite: ", context, ": ", detail);
  if ((rc & 0xff) == SQLITE_FULL) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

// Binary bytes to bind as a BLOB (text binds as TEXT).
struct Bytes {
  absl::string_view data;
};

// A prepared statement, finalized on destruction. A failed bind is kept and
// reported by the next Step, so call sites bind without checking each value.
class Statement {
 public:
  static absl::StatusOr<Statement> Prepare(sqlite3* db, absl::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, absl::StrCat("prepare '", sql, "'"));
    return Statement(db, stmt);
  }
  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), bind_rc_(other.bind_rc_) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  // Bind: binds `values` to parameters 1..n in order.
  template <typename... Values>
  Statement& Bind(const Values&... values) {
    int index = 0;
    (BindOne(++index, values), ...);
    return *this;
  }
  // Step: true when a row is ready, false when the statement is done.
  absl::StatusOr<bool> Step() {
    if (bind_rc_ != SQLITE_OK) return SqliteError(db_, bind_rc_, "bind");
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, absl::string_view(sqlite3_sql(stmt_)).substr(0, 60));
  }
  // Run: steps a statement that yields no rows.
  absl::Status Run() { return Step().status(); }
  // Reset: ready to bind and step again.
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    if (text == nullptr) return "";
    return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, column));
  }
  std::string Blob(int column) const {
    const void* blob = sqlite3_column_blob(stmt_, column);
    if (blob == nullptr) return "";  // Also how SQLite returns a zero-length blob.
    return std::string(static_cast<const char*>(blob), sqlite3_column_bytes(stmt_, column));
  }

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

  void BindOne(int index, int64_t value) { Keep(sqlite3_bind_int64(stmt_, index, value)); }
  // A null data pointer would bind NULL, so empty values point at "".
  void BindOne(int index, absl::string_view text) {
    Keep(sqlite3_bind_text(stmt_, index, text.empty() ? "" : text.data(),
                           static_cast<int>(text.size()), SQLITE_TRANSIENT));
  }
  void BindOne(int index, const Bytes& bytes) {
    Keep(sqlite3_bind_blob(stmt_, index, bytes.data.empty() ? "" : bytes.data.data(),
                           static_cast<int>(bytes.data.size()), SQLITE_TRANSIENT));
  }
  void Keep(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

absl::Status Exec(sqlite3* db, absl::string_view sql) {
  CATQ_ASSIGN_OR_RETURN(Statement statement, Statement::Prepare(db, sql));
  return statement.Run();
}

// Execute: binds `values` to `sql`, runs it and returns how many rows changed.
template <typename... Values>
absl::StatusOr<int> Execute(sqlite3* db, absl::string_view sql, const Values&... values) {
  CATQ_ASSIGN_OR_RETURN(Statement statement, Statement::Prepare(db, sql));
  CATQ_RETURN_IF_ERROR(statement.Bind(values...).Run());
  return sqlite3_changes(db);
}

// Query: the rows of `sql` with `values` bound, each decoded by `decode`.
template <typename T, typename... Values>
absl::StatusOr<std::vector<T>> Query(sqlite3* db, T (*decode)(const Statement&),
                                     absl::string_view sql, const Values&... values) {
  CATQ_ASSIGN_OR_RETURN(Statement statement, Statement::Prepare(db, sql));
  statement.Bind(values...);
  std::vector<T> rows;
  while (true) {
    CATQ_ASSIGN_OR_RETURN(bool has_row, statement.Step());
    if (!has_row) return rows;
    rows.push_back(decode(statement));
  }
}

// QueryFirst: the first row of Query, or nullopt when there is none.
template <typename T, typename... Values>
absl::StatusOr<std::optional<T>> QueryFirst(sqlite3* db, T (*decode)(const Statement&),
                                            absl::string_view sql, const Values&... values) {
  CATQ_ASSIGN_OR_RETURN(std::vector<T> rows, Query(db, decode, sql, values...));
  if (rows.empty()) return std::nullopt;
  return std::move(rows.front());
}

int64_t IntColumn(const Statement& row) { return row.Int(0); }
std::string TextColumn(const Statement& row) { return row.Text(0); }

// InTransaction: runs `body` in one transaction, committed when it returns OK
// and rolled back otherwise. IMMEDIATE takes the write lock up front, so a
// body never fails half way upgrading a read lock.
absl::Status InTransaction(sqlite3* db, absl::FunctionRef<absl::Status()> body) {
  CATQ_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  absl::Status status = body();
  if (status.ok()) status = Exec(db, "COMMIT");
  // SQLite may already have rolled back (e.g. on SQLITE_FULL).
  if (!status.ok() && !sqlite3_get_autocommit(db)) Exec(db, "ROLLBACK").IgnoreError();
  return status;
}

absl::Status NotFound(absl::string_view kind, absl::string_view id) {
  return absl::NotFoundError(absl::StrCat(kind, " '", id, "': not found"));
}

std::string TaskName(const std::string& job_id, int64_t index) {
  return absl::StrCat("task ", index, " of job '", job_id, "'");
}

absl::string_view TaskStateName(TaskState state) {
  switch (state) {
    case TaskState::kPending:
      return "pending";
    case TaskState::kRunning:
      return "running";
    case TaskState::kDone:
      return "done";
  }
  return "unknown";
}

// --- Files: one child table per owner kind, rows ordered by position. ------

struct FileTable {
  const char* select;  // binds the owner key
  const char* insert;  // binds the owner key, position, path, size, sha256
  const char* clear;   // binds the owner key
};

constexpr FileTable kUploadFiles = {
    "SELECT path, size, sha256 FROM upload_files WHERE tenant = ? AND upload_id = ? "
    "ORDER BY position",
    "INSERT INTO upload_files (tenant, upload_id, position, path, size, sha256) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "DELETE FROM upload_files WHERE tenant = ? AND upload_id = ?"};
constexpr FileTable kModelFiles = {
    "SELECT path, size, sha256 FROM model_files WHERE model_id = ? ORDER BY position",
    "INSERT INTO model_files (model_id, position, path, size, sha256) VALUES (?, ?, ?, ?, ?)",
    "DELETE FROM model_files WHERE model_id = ?"};
constexpr FileTable kJobFiles = {
    "SELECT path, size, sha256 FROM job_files WHERE job_id = ? ORDER BY position",
    "INSERT INTO job_files (job_id, position, path, size, sha256) VALUES (?, ?, ?, ?, ?)",
    "DELETE FROM job_files WHERE job_id = ?"};

StoredFile FileFromRow(const Statement& row) {
  return StoredFile{row.Text(0), static_cast<uint64_t>(row.Int(1)), row.Text(2)};
}

template <typename... Key>
absl::StatusOr<std::vector<StoredFile>> ReadFiles(sqlite3* db, const FileTable& table,
                                                  const Key&... key) {
  return Query(db, &FileFromRow, table.select, key...);
}

// ReplaceFiles: the owner's files become `files`.
template <typename... Key>
absl::Status ReplaceFiles(sqlite3* db, const FileTable& table, const std::vector<StoredFile>& files,
                          const Key&... key) {
  CATQ_RETURN_IF_ERROR(Execute(db, table.clear, key...).status());
  CATQ_ASSIGN_OR_RETURN(Statement insert, Statement::Prepare(db, table.insert));
  for (size_t i = 0; i < files.size(); ++i) {
    insert.Reset();
    CATQ_RETURN_IF_ERROR(insert
                             .Bind(key..., static_cast<int64_t>(i), files[i].path,
                                   static_cast<int64_t>(files[i].size), files[i].sha256)
                             .Run());
  }
  return absl::OkStatus();
}

// --- Row decoders: each matches its kSelect* column list. ------------------

constexpr absl::string_view kSelectUpload =
    "SELECT tenant, id, kind, name, format, complete, result_id, create_time_ms FROM uploads ";

UploadRecord UploadFromRow(const Statement& row) {
  UploadRecord upload;
  upload.tenant = row.Text(0);
  upload.id = row.Text(1);
  upload.kind = static_cast<UploadKind>(row.Int(2));
  upload.name = row.Text(3);
  upload.format = static_cast<int>(row.Int(4));
  upload.complete = row.Int(5) != 0;
  upload.result_id = row.Text(6);
  upload.create_time_ms = row.Int(7);
  return upload;
}

constexpr absl::string_view kSelectModel =
    "SELECT id, tenant, name, format, num_layers, hidden_size, create_time_ms FROM models ";

ModelRecord ModelFromRow(const Statement& row) {
  ModelRecord model;
  model.id = row.Text(0);
  model.tenant = row.Text(1);
  model.name = row.Text(2);
  model.format = static_cast<int>(row.Int(3));
  model.num_layers = row.Int(4);
  model.hidden_size = row.Int(5);
  model.create_time_ms = row.Int(6);
  return model;
}

constexpr absl::string_view kSelectCalibration =
    "SELECT id, tenant, name, kind, file_path, file_size, file_sha256, create_time_ms "
    "FROM calibrations ";

CalibrationRecord CalibrationFromRow(const Statement& row) {
  CalibrationRecord calibration;
  calibration.id = row.Text(0);
  calibration.tenant = row.Text(1);
  calibration.name = row.Text(2);
  calibration.kind = static_cast<int>(row.Int(3));
  calibration.file = StoredFile{row.Text(4), static_cast<uint64_t>(row.Int(5)), row.Text(6)};
  calibration.create_time_ms = row.Int(7);
  return calibration;
}

constexpr absl::string_view kSelectJob =
    "SELECT id, tenant, model_id, calibration_id, eval_calibration_id, idempotency_key, request, "
    "state, error, tasks_total, tasks_done, create_time_ms, update_time_ms, calibration_sha256, "
    "method FROM jobs ";

JobRecord JobFromRow(const Statement& row) {
  JobRecord job;
  job.id = row.Text(0);
  job.tenant = row.Text(1);
  job.model_id = row.Text(2);
  job.calibration_id = row.Text(3);
  job.eval_calibration_id = row.Text(4);
  job.idempotency_key = row.Text(5);
  job.request = row.Blob(6);
  job.state = static_cast<JobState>(row.Int(7));
  job.error = row.Text(8);
  job.tasks_total = row.Int(9);
  job.tasks_done = row.Int(10);
  job.create_time_ms = row.Int(11);
  job.update_time_ms = row.Int(12);
  job.calibration_sha256 = row.Text(13);
  job.method = row.Text(14);
  return job;
}

TaskRecord TaskFromRow(const Statement& row) {
  TaskRecord task;
  task.job_id = row.Text(0);
  task.index = row.Int(1);
  task.layer = row.Int(2);
  task.state = static_cast<TaskState>(row.Int(3));
  task.attempts = static_cast<int>(row.Int(4));
  task.result_sha256 = row.Text(5);
  task.summary = row.Blob(6);
  return task;
}

// --- Record queries, files included. ---------------------------------------

absl::StatusOr<std::optional<UploadRecord>> FindUpload(sqlite3* db, const std::string& tenant,
                                                       const std::string& id) {
  CATQ_ASSIGN_OR_RETURN(
      std::optional<UploadRecord> upload,
      QueryFirst(db, &UploadFromRow, absl::StrCat(kSelectUpload, "WHERE tenant = ? AND id = ?"),
                 tenant, id));
  if (upload.has_value()) {
    CATQ_ASSIGN_OR_RETURN(upload->files, ReadFiles(db, kUploadFiles, tenant, id));
  }
  return upload;
}

// QueryModels: models matching `tail` (a WHERE/ORDER BY clause).
template <typename... Values>
absl::StatusOr<std::vector<ModelRecord>> QueryModels(sqlite3* db, absl::string_view tail,
                                                     const Values&... values) {
  CATQ_ASSIGN_OR_RETURN(std::vector<ModelRecord> models,
                        Query(db, &ModelFromRow, absl::StrCat(kSelectModel, tail), values...));
  for (ModelRecord& model : models) {
    CATQ_ASSIGN_OR_RETURN(model.files, ReadFiles(db, kModelFiles, model.id));
  }
  return models;
}

// QueryJobs: jobs matching `tail` (a WHERE/ORDER BY/LIMIT clause).
template <typename... Values>
absl::StatusOr<std::vector<JobRecord>> QueryJobs(sqlite3* db, absl::string_view tail,
                                                 const Values&... values) {
  CATQ_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs,
                        Query(db, &JobFromRow, absl::StrCat(kSelectJob, tail), values...));
  for (JobRecord& job : jobs) {
    CATQ_ASSIGN_OR_RETURN(job.result_files, ReadFiles(db, kJobFiles, job.id));
  }
  return jobs;
}

template <typename... Values>
absl::StatusOr<std::optional<JobRecord>> FindJob(sqlite3* db, absl::string_view where,
                                                 const Values&... values) {
  CATQ_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, QueryJobs(db, where, values...));
  if (jobs.empty()) return std::nullopt;
  return std::move(jobs.front());
}

// CheckJobWritable: NotFound for an unknown job, FailedPrecondition for one
// that is already terminal (its outcome is final).
absl::Status CheckJobWritable(sqlite3* db, const std::string& id) {
  CATQ_ASSIGN_OR_RETURN(std::optional<int64_t> state,
                        QueryFirst(db, &IntColumn, "SELECT state FROM jobs WHERE id = ?", id));
  if (!state.has_value()) return NotFound("job", id);
  const JobState job_state = static_cast<JobState>(*state);
  if (IsTerminal(job_state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", id, "': already ", JobStateName(job_state)));
  }
  return absl::OkStatus();
}

// FindTaskState: the task's state, NotFound naming the task when absent.
absl::StatusOr<TaskState> FindTaskState(sqlite3* db, const std::string& job_id, int64_t index) {
  CATQ_ASSIGN_OR_RETURN(
      std::optional<int64_t> state,
      QueryFirst(db, &IntColumn, "SELECT state FROM tasks WHERE job_id = ? AND idx = ?", job_id,
                 index));
  if (!state.has_value())
    return absl::NotFoundError(absl::StrCat(TaskName(job_id, index), ": not found"));
  return static_cast<TaskState>(*state);
}

// HeaderDifference: the first field in which `request` differs from the
// stored upload, or "" when it is a resume of the same upload.
std::string HeaderDifference(const UploadRecord& stored, const UploadRecord& request) {
  auto differ = [](absl::string_view field, const auto& was, const auto& now) {
    return absl::StrCat(field, " is '", was, "', request has '", now, "'");
  };
  if (stored.kind != request.kind) {
    return differ("kind", static_cast<int>(stored.kind), static_cast<int>(request.kind));
  }
  if (stored.name != request.name) return differ("name", stored.name, request.name);
  if (stored.format != request.format) return differ("format", stored.format, request.format);
  if (stored.files.size() != request.files.size()) {
    return differ("files.size", stored.files.size(), request.files.size());
  }
  for (size_t i = 0; i < stored.files.size(); ++i) {
    const StoredFile& was = stored.files[i];
    const StoredFile& now = request.files[i];
    const std::string field = absl::StrCat("files[", i, "].");
    if (was.path != now.path) return differ(absl::StrCat(field, "path"), was.path, now.path);
    if (was.size != now.size) return differ(absl::StrCat(field, "size"), was.size, now.size);
    if (was.sha256 != now.sha256)
      return differ(absl::StrCat(field, "sha256"), was.sha256, now.sha256);
  }
  return "";
}

// --- Opening: pragmas, then the schema. ------------------------------------

absl::Status SetPragmas(sqlite3* db) {
  sqlite3_extended_result_codes(db, 1);
  // A second process (an operator's sqlite3 shell) may hold the lock briefly.
  int rc = sqlite3_busy_timeout(db, 5000);
  if (rc != SQLITE_OK) return SqliteError(db, rc, "busy_timeout");
  CATQ_ASSIGN_OR_RETURN(std::optional<std::string> mode,
                        QueryFirst(db, &TextColumn, "PRAGMA journal_mode=WAL"));
  if (mode != "wal") {
    return absl::InternalError(
        absl::StrCat("sqlite: journal_mode is '", mode.value_or(""), "', not 'wal'"));
  }
  // NORMAL in WAL mode keeps the database consistent across a crash; only
  // the last commits may be lost at a power failure.
  CATQ_RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous=NORMAL"));
  return Exec(db, "PRAGMA foreign_keys=ON");
}

// Version 1 to 2: jobs.method, filled from each job's stored request (the
// recipe's method; rtn when the request named none).
absl::Status AddJobMethods(sqlite3* db) {
  CATQ_RETURN_IF_ERROR(Exec(db, "ALTER TABLE jobs ADD COLUMN method TEXT NOT NULL DEFAULT ''"));
  using Row = std::pair<std::string, std::string>;
  CATQ_ASSIGN_OR_RETURN(std::vector<Row> jobs,
                        Query(
                            db, +[](const Statement& row) { return Row(row.Text(0), row.Blob(1)); },
                            "SELECT id, request FROM jobs"));
  for (const auto& [id, request] : jobs) {
    CATQ_RETURN_IF_ERROR(
        Execute(db, "UPDATE jobs SET method = ? WHERE id = ?", MethodOfJobRequest(request), id)
            .status());
  }
  return absl::OkStatus();
}

// Brings a database of an older schema `version` (1 or more) up to date,
// inside CreateSchema's transaction.
absl::Status MigrateSchema(sqlite3* db, int64_t version) {
  if (version < 2) CATQ_RETURN_IF_ERROR(AddJobMethods(db));
  return absl::OkStatus();
}

absl::Status CreateSchema(sqlite3* db) {
  CATQ_ASSIGN_OR_RETURN(std::optional<int64_t> version,
                        QueryFirst(db, &IntColumn, "PRAGMA user_version"));
  if (version.value_or(0) > kSchemaVersion) {
    return absl::InternalError(
        absl::StrCat("schema version ", *version, " is newer than this server's ", kSchemaVersion));
  }
  return InTransaction(db, [&]() -> absl::Status {
    if (version.value_or(0) > 0) CATQ_RETURN_IF_ERROR(MigrateSchema(db, *version));
    for (const char* statement : kSchema) CATQ_RETURN_IF_ERROR(Exec(db, statement));
    // PRAGMA takes no bound parameters; the value is our own constant.
    return Exec(db, absl::StrCat("PRAGMA user_version = ", kSchemaVersion));
  });
}

class SqliteMetadataStore final : public MetadataStore {
 public:
  SqliteMetadataStore(sqlite3* db, const std::string& path)
      : db_(db), reserve_(absl::StrCat(path, ".reserve"), kDiskReserveBytes) {
    reserve_.Ensure();  // a disk already full opens without it
  }
  ~SqliteMetadataStore() override { sqlite3_close_v2(db_); }

  absl::StatusOr<UploadRecord> BeginUpload(const UploadRecord& upload) override;
  absl::StatusOr<UploadRecord> GetUpload(const std::string& tenant, const std::string& id) override;
  absl::Status CompleteUpload(const std::string& tenant, const std::string& id,
                              const std::string& result_id) override;
  absl::Status InsertModel(const ModelRecord& model) override;
  absl::StatusOr<ModelRecord> GetModel(const std::string& tenant, const std::string& id) override;
  absl::StatusOr<std::vector<ModelRecord>> ListModels(const std::string& tenant) override;
  absl::Status DeleteModel(const std::string& tenant, const std::string& id) override;
  absl::Status InsertCalibration(const CalibrationRecord& calibration) override;
  absl::StatusOr<CalibrationRecord> GetCalibration(const std::string& tenant,
                                                   const std::string& id) override;
  absl::StatusOr<std::pair<JobRecord, bool>> InsertJob(const JobRecord& job) override;
  absl::StatusOr<JobRecord> GetJob(const std::string& tenant, const std::string& id) override;
  absl::StatusOr<std::optional<JobRecord>> FindJobByIdempotencyKey(const std::string& tenant,
                                                                   const std::string& key) override;
  absl::StatusOr<std::vector<JobRecord>> ListJobs(const std::string& tenant, int limit) override;
  absl::StatusOr<std::vector<JobRecord>> ListUnfinishedJobs() override;
  absl::StatusOr<int64_t> CountUnfinishedJobs(const std::string& tenant) override;
  absl::StatusOr<std::map<std::pair<JobState, std::string>, int64_t>> CountJobsByStateAndMethod()
      override;
  absl::Status SetJobState(const std::string& id, JobState state, const std::string& error,
                           int64_t now_ms) override;
  absl::Status SetJobCalibration(const std::string& id, const std::string& sha256) override;
  absl::Status SetJobResult(const std::string& id, const std::vector<StoredFile>& files,
                            int64_t now_ms) override;
  absl::Status CreateTasks(const std::string& job_id,
                           const std::vector<TaskRecord>& tasks) override;
  absl::StatusOr<std::vector<TaskRecord>> ListTasks(const std::string& job_id) override;
  absl::Status StartTask(const std::string& job_id, int64_t index) override;
  absl::StatusOr<bool> CompleteTask(const std::string& job_id, int64_t index,
                                    const std::string& result_sha256,
                                    const std::string& summary) override;
  absl::Status ResetTask(const std::string& job_id, int64_t index) override;
  absl::Status ResetRunningTasks() override;
  absl::StatusOr<std::vector<std::string>> ReferencedBlobs() override;

 private:
  absl::Mutex mu_;
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
  DiskReserve reserve_;  // used under mu_
};

absl::StatusOr<UploadRecord> SqliteMetadataStore::BeginUpload(const UploadRecord& upload) {
  absl::MutexLock lock(&mu_);
  UploadRecord stored;
  CATQ_RETURN_IF_ERROR(InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(std::optional<UploadRecord> existing,
                          FindUpload(db_, upload.tenant, upload.id));
    if (existing.has_value()) {
      const std::string difference = HeaderDifference(*existing, upload);
      if (!difference.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("upload '", upload.id, "': exists with a different header: ", difference));
      }
      stored = *std::move(existing);
      return absl::OkStatus();
    }
    CATQ_RETURN_IF_ERROR(
        Execute(db_,
                "INSERT INTO uploads (tenant, id, kind, name, format, complete, result_id, "
                "create_time_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                upload.tenant, upload.id, static_cast<int64_t>(upload.kind), upload.name,
                static_cast<int64_t>(upload.format), static_cast<int64_t>(upload.complete),
                upload.result_id, upload.create_time_ms)
            .status());
    stored = upload;
    return ReplaceFiles(db_, kUploadFiles, upload.files, upload.tenant, upload.id);
  }));
  return stored;
}

absl::StatusOr<UploadRecord> SqliteMetadataStore::GetUpload(const std::string& tenant,
                                                            const std::string& id) {
  absl::MutexLock lock(&mu_);
  CATQ_ASSIGN_OR_RETURN(std::optional<UploadRecord> upload, FindUpload(db_, tenant, id));
  if (!upload.has_value()) return NotFound("upload", id);
  return *std::move(upload);
}

absl::Status SqliteMetadataStore::CompleteUpload(const std::string& tenant, const std::string& id,
                                                 const std::string& result_id) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(std::optional<UploadRecord> upload, FindUpload(db_, tenant, id));
    if (!upload.has_value()) return NotFound("upload", id);
    // Completing twice with the same result is a retried call; another
    // result would orphan the first one.
    if (upload->complete) {
      if (upload->result_id == result_id) return absl::OkStatus();
      return absl::FailedPreconditionError(
          absl::StrCat("upload '", id, "': already complete as '", upload->result_id, "'"));
    }
    return Execute(db_,
                   "UPDATE uploads SET complete = 1, result_id = ? WHERE tenant = ? AND id = ?",
                   result_id, tenant, id)
        .status();
  });
}

absl::Status SqliteMetadataStore::InsertModel(const ModelRecord& model) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(
        std::optional<int64_t> exists,
        QueryFirst(db_, &IntColumn, "SELECT 1 FROM models WHERE id = ?", model.id));
    if (exists.has_value()) {
      return absl::AlreadyExistsError(absl::StrCat("model '", model.id, "': already exists"));
    }
    CATQ_RETURN_IF_ERROR(Execute(db_,
                                 "INSERT INTO models (id, tenant, name, format, num_layers, "
                                 "hidden_size, create_time_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 model.id, model.tenant, model.name,
                                 static_cast<int64_t>(model.format), model.num_layers,
                                 model.hidden_size, model.create_time_ms)
                             .status());
    return ReplaceFiles(db_, kModelFiles, model.files, model.id);
  });
}

absl::StatusOr<ModelRecord> SqliteMetadataStore::GetModel(const std::string& tenant,
                                                          const std::string& id) {
  absl::MutexLock lock(&mu_);
  CATQ_ASSIGN_OR_RETURN(std::vector<ModelRecord> models,
                        QueryModels(db_, "WHERE id = ? AND tenant = ?", id, tenant));
  if (models.empty()) return NotFound("model", id);
  return std::move(models.front());
}

absl::StatusOr<std::vector<ModelRecord>> SqliteMetadataStore::ListModels(
    const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  return QueryModels(db_, "WHERE tenant = ? ORDER BY create_time_ms, id", tenant);
}

absl::Status SqliteMetadataStore::DeleteModel(const std::string& tenant, const std::string& id) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(
        std::optional<int64_t> exists,
        QueryFirst(db_, &IntColumn, "SELECT 1 FROM models WHERE id = ? AND tenant = ?", id,
                   tenant));
    if (!exists.has_value()) return NotFound("model", id);
    CATQ_ASSIGN_OR_RETURN(std::optional<std::string> user,
                          QueryFirst(db_, &TextColumn,
                                     absl::StrCat("SELECT id FROM jobs WHERE model_id = ? AND ",
                                                  kUnfinished, " ORDER BY create_time_ms, id"),
                                     id));
    if (user.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("model '", id, "': in use by unfinished job '", *user, "'"));
    }
    // Its files go with it (ON DELETE CASCADE); the blobs become garbage.
    return Execute(db_, "DELETE FROM models WHERE id = ?", id).status();
  });
}

absl::Status SqliteMetadataStore::InsertCalibration(const CalibrationRecord& calibration) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(
        std::optional<int64_t> exists,
        QueryFirst(db_, &IntColumn, "SELECT 1 FROM calibrations WHERE id = ?", calibration.id));
    if (exists.has_value()) {
      return absl::AlreadyExistsError(
          absl::StrCat("calibration '", calibration.id, "': already exists"));
    }
    return Execute(db_,
                   "INSERT INTO calibrations (id, tenant, name, kind, file_path, file_size, "
                   "file_sha256, create_time_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   calibration.id, calibration.tenant, calibration.name,
                   static_cast<int64_t>(calibration.kind), calibration.file.path,
                   static_cast<int64_t>(calibration.file.size), calibration.file.sha256,
                   calibration.create_time_ms)
        .status();
  });
}

absl::StatusOr<CalibrationRecord> SqliteMetadataStore::GetCalibration(const std::string& tenant,
                                                                      const std::string& id) {
  absl::MutexLock lock(&mu_);
  CATQ_ASSIGN_OR_RETURN(
      std::optional<CalibrationRecord> calibration,
      QueryFirst(db_, &CalibrationFromRow,
                 absl::StrCat(kSelectCalibration, "WHERE id = ? AND tenant = ?"), id, tenant));
  if (!calibration.has_value()) return NotFound("calibration", id);
  return *std::move(calibration);
}

absl::StatusOr<std::pair<JobRecord, bool>> SqliteMetadataStore::InsertJob(const JobRecord& job) {
  absl::MutexLock lock(&mu_);
  std::pair<JobRecord, bool> result;
  CATQ_RETURN_IF_ERROR(InTransaction(db_, [&]() -> absl::Status {
    if (!job.idempotency_key.empty()) {
      CATQ_ASSIGN_OR_RETURN(std::optional<JobRecord> earlier,
                            FindJob(db_, "WHERE tenant = ? AND idempotency_key = ?", job.tenant,
                                    job.idempotency_key));
      if (earlier.has_value()) {
        result = {*std::move(earlier), true};
        return absl::OkStatus();
      }
    }
    CATQ_ASSIGN_OR_RETURN(std::optional<int64_t> exists,
                          QueryFirst(db_, &IntColumn, "SELECT 1 FROM jobs WHERE id = ?", job.id));
    if (exists.has_value()) {
      return absl::AlreadyExistsError(absl::StrCat("job '", job.id, "': already exists"));
    }
    CATQ_RETURN_IF_ERROR(
        Execute(db_,
                "INSERT INTO jobs (id, tenant, model_id, calibration_id, eval_calibration_id, "
                "idempotency_key, request, state, error, tasks_total, tasks_done, "
                "create_time_ms, update_time_ms, calibration_sha256, method) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                job.id, job.tenant, job.model_id, job.calibration_id, job.eval_calibration_id,
                job.idempotency_key, Bytes{job.request}, static_cast<int64_t>(job.state), job.error,
                job.tasks_total, job.tasks_done, job.create_time_ms, job.update_time_ms,
                job.calibration_sha256, job.method)
            .status());
    result = {job, false};
    return ReplaceFiles(db_, kJobFiles, job.result_files, job.id);
  }));
  return result;
}

absl::StatusOr<JobRecord> SqliteMetadataStore::GetJob(const std::string& tenant,
                                                      const std::string& id) {
  absl::MutexLock lock(&mu_);
  CATQ_ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                        FindJob(db_, "WHERE id = ? AND tenant = ?", id, tenant));
  if (!job.has_value()) return NotFound("job", id);
  return *std::move(job);
}

absl::StatusOr<std::optional<JobRecord>> SqliteMetadataStore::FindJobByIdempotencyKey(
    const std::string& tenant, const std::string& key) {
  if (key.empty()) return absl::InvalidArgumentError("idempotency key must not be empty");
  absl::MutexLock lock(&mu_);
  return FindJob(db_, "WHERE tenant = ? AND idempotency_key = ?", tenant, key);
}

absl::StatusOr<std::vector<JobRecord>> SqliteMetadataStore::ListJobs(const std::string& tenant,
                                                                     int limit) {
  if (limit <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("limit must be positive, got ", limit));
  }
  absl::MutexLock lock(&mu_);
  return QueryJobs(db_, "WHERE tenant = ? ORDER BY create_time_ms DESC, id DESC LIMIT ?", tenant,
                   static_cast<int64_t>(limit));
}

absl::StatusOr<std::vector<JobRecord>> SqliteMetadataStore::ListUnfinishedJobs() {
  absl::MutexLock lock(&mu_);
  return QueryJobs(db_, absl::StrCat("WHERE ", kUnfinished, " ORDER BY create_time_ms, id"));
}

absl::StatusOr<int64_t> SqliteMetadataStore::CountUnfinishedJobs(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  CATQ_ASSIGN_OR_RETURN(
      std::optional<int64_t> count,
      QueryFirst(db_, &IntColumn,
                 absl::StrCat("SELECT COUNT(*) FROM jobs WHERE tenant = ? AND ", kUnfinished),
                 tenant));
  return count.value_or(0);
}

absl::StatusOr<std::map<std::pair<JobState, std::string>, int64_t>>
SqliteMetadataStore::CountJobsByStateAndMethod() {
  absl::MutexLock lock(&mu_);
  struct Row {
    int64_t state;
    std::string method;
    int64_t count;
  };
  CATQ_ASSIGN_OR_RETURN(std::vector<Row> rows,
                        Query(
                            db_,
                            +[](const Statement& row) {
                              return Row{row.Int(0), row.Text(1), row.Int(2)};
                            },
                            "SELECT state, method, COUNT(*) FROM jobs GROUP BY state, method"));
  std::map<std::pair<JobState, std::string>, int64_t> counts;
  for (const Row& row : rows) counts[{static_cast<JobState>(row.state), row.method}] = row.count;
  return counts;
}

absl::Status SqliteMetadataStore::SetJobState(const std::string& id, JobState state,
                                              const std::string& error, int64_t now_ms) {
  if (state < JobState::kQueued || state > JobState::kCancelled) {
    return absl::InvalidArgumentError(
        absl::StrCat("job '", id, "': no job state ", static_cast<int>(state)));
  }
  absl::MutexLock lock(&mu_);
  auto update = [&]() -> absl::Status {
    CATQ_RETURN_IF_ERROR(CheckJobWritable(db_, id));
    return Execute(db_, "UPDATE jobs SET state = ?, error = ?, update_time_ms = ? WHERE id = ?",
                   static_cast<int64_t>(state), error, now_ms, id)
        .status();
  };
  absl::Status status = InTransaction(db_, update);
  // A job's end must be recorded even on a full disk (its watchers wait for
  // it): the reserve gives that write its room. Other transitions fail, and
  // the job's failure is then what gets recorded.
  if (absl::IsResourceExhausted(status) && IsTerminal(state) && reserve_.Release()) {
    status = InTransaction(db_, update);
  } else if (status.ok()) {
    reserve_.Ensure();  // back once there is room again
  }
  return status;
}

absl::Status SqliteMetadataStore::SetJobCalibration(const std::string& id,
                                                    const std::string& sha256) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(
        int changed,
        Execute(db_, "UPDATE jobs SET calibration_sha256 = ? WHERE id = ?", sha256, id));
    return changed == 0 ? NotFound("job", id) : absl::OkStatus();
  });
}

absl::Status SqliteMetadataStore::SetJobResult(const std::string& id,
                                               const std::vector<StoredFile>& files,
                                               int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    // A cancelled job stays cancelled even when its last task finishes.
    CATQ_RETURN_IF_ERROR(CheckJobWritable(db_, id));
    CATQ_RETURN_IF_ERROR(ReplaceFiles(db_, kJobFiles, files, id));
    return Execute(db_, "UPDATE jobs SET state = ?, error = '', update_time_ms = ? WHERE id = ?",
                   static_cast<int64_t>(JobState::kSucceeded), now_ms, id)
        .status();
  });
}

absl::Status SqliteMetadataStore::CreateTasks(const std::string& job_id,
                                              const std::vector<TaskRecord>& tasks) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (tasks[i].index != static_cast<int64_t>(i)) {
      return absl::InvalidArgumentError(
          absl::StrCat("job '", job_id, "': tasks[", i, "] has index ", tasks[i].index));
    }
  }
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(std::optional<int64_t> exists,
                          QueryFirst(db_, &IntColumn, "SELECT 1 FROM jobs WHERE id = ?", job_id));
    if (!exists.has_value()) return NotFound("job", job_id);
    CATQ_ASSIGN_OR_RETURN(
        std::optional<int64_t> planned,
        QueryFirst(db_, &IntColumn, "SELECT 1 FROM tasks WHERE job_id = ? LIMIT 1", job_id));
    if (planned.has_value()) return absl::OkStatus();  // A restart re-plans the same tasks.
    CATQ_ASSIGN_OR_RETURN(Statement insert,
                          Statement::Prepare(db_,
                                             "INSERT INTO tasks (job_id, idx, layer, state, "
                                             "attempts, result_sha256, summary) "
                                             "VALUES (?, ?, ?, 0, 0, '', x'')"));
    for (const TaskRecord& task : tasks) {
      insert.Reset();
      CATQ_RETURN_IF_ERROR(insert.Bind(job_id, task.index, task.layer).Run());
    }
    return Execute(db_, "UPDATE jobs SET tasks_total = ?, tasks_done = 0 WHERE id = ?",
                   static_cast<int64_t>(tasks.size()), job_id)
        .status();
  });
}

absl::StatusOr<std::vector<TaskRecord>> SqliteMetadataStore::ListTasks(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  CATQ_ASSIGN_OR_RETURN(std::optional<int64_t> exists,
                        QueryFirst(db_, &IntColumn, "SELECT 1 FROM jobs WHERE id = ?", job_id));
  if (!exists.has_value()) return NotFound("job", job_id);
  return Query(db_, &TaskFromRow,
               "SELECT job_id, idx, layer, state, attempts, result_sha256, summary FROM tasks "
               "WHERE job_id = ? ORDER BY idx",
               job_id);
}

absl::Status SqliteMetadataStore::StartTask(const std::string& job_id, int64_t index) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(TaskState state, FindTaskState(db_, job_id, index));
    if (state != TaskState::kPending) {
      return absl::FailedPreconditionError(
          absl::StrCat(TaskName(job_id, index), ": ", TaskStateName(state), ", not pending"));
    }
    return Execute(db_,
                   "UPDATE tasks SET state = 1, attempts = attempts + 1 "
                   "WHERE job_id = ? AND idx = ?",
                   job_id, index)
        .status();
  });
}

absl::StatusOr<bool> SqliteMetadataStore::CompleteTask(const std::string& job_id, int64_t index,
                                                       const std::string& result_sha256,
                                                       const std::string& summary) {
  absl::MutexLock lock(&mu_);
  bool completed = false;
  CATQ_RETURN_IF_ERROR(InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(TaskState state, FindTaskState(db_, job_id, index));
    if (state == TaskState::kDone) return absl::OkStatus();  // The first result wins.
    CATQ_RETURN_IF_ERROR(Execute(db_,
                                 "UPDATE tasks SET state = 2, result_sha256 = ?, summary = ? "
                                 "WHERE job_id = ? AND idx = ?",
                                 result_sha256, Bytes{summary}, job_id, index)
                             .status());
    CATQ_RETURN_IF_ERROR(
        Execute(db_, "UPDATE jobs SET tasks_done = tasks_done + 1 WHERE id = ?", job_id).status());
    completed = true;
    return absl::OkStatus();
  }));
  return completed;
}

absl::Status SqliteMetadataStore::ResetTask(const std::string& job_id, int64_t index) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    CATQ_ASSIGN_OR_RETURN(TaskState state, FindTaskState(db_, job_id, index));
    if (state == TaskState::kDone) {
      return absl::FailedPreconditionError(
          absl::StrCat(TaskName(job_id, index), ": done, its result stands"));
    }
    return Execute(db_, "UPDATE tasks SET state = 0 WHERE job_id = ? AND idx = ?", job_id, index)
        .status();
  });
}

absl::Status SqliteMetadataStore::ResetRunningTasks() {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_,
                       [&] { return Exec(db_, "UPDATE tasks SET state = 0 WHERE state = 1"); });
}

absl::StatusOr<std::vector<std::string>> SqliteMetadataStore::ReferencedBlobs() {
  absl::MutexLock lock(&mu_);
  // UNION drops duplicates and sorts.
  return Query(db_, &TextColumn,
               "SELECT sha256 FROM upload_files "
               "UNION SELECT sha256 FROM model_files "
               "UNION SELECT file_sha256 FROM calibrations "
               "UNION SELECT sha256 FROM job_files "
               "UNION SELECT calibration_sha256 FROM jobs WHERE calibration_sha256 <> '' "
               "UNION SELECT result_sha256 FROM tasks WHERE result_sha256 <> '' "
               "ORDER BY 1");
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetadataStore>> MetadataStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  // The store's own mutex serializes every call, so SQLite's is not needed.
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db, rc, "open");
    sqlite3_close_v2(db);  // SQLite allocates a handle even when open fails.
    return Prefix(path, status);
  }
  auto store = std::make_unique<SqliteMetadataStore>(db, path);  // Closes `db` from here on.
  absl::Status status = SetPragmas(db);
  if (status.ok()) status = CreateSchema(db);
  if (!status.ok()) return Prefix(path, status);
  return store;
}

}  // namespace catq::server
