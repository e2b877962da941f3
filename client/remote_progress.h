// File: client/remote_progress.h
//
// Progress of work on a catq server, on top of ProgressPrinter (a bar on a
// terminal, plain lines otherwise):
//
// - TransferProgressPrinter: bytes of an upload or fetch, with MiB/s and ETA;
//   plain lines at most every 10 s.
// - JobProgressPrinter: the events of WatchJob. On a terminal, a bar of tasks
//   done with the rate and ETA, and a line per stage change; otherwise one
//   line per finished layer task with its SQNR figures, and per stage change.
//
//   TransferProgressPrinter upload("upload", quiet);
//   client->UploadModel(dir, name, format, "", upload.Callback());
//   upload.Finish();
//   JobProgressPrinter watch(quiet);
//   client->Watch(job_id, [&watch](const v1::JobEvent& e) { watch.OnEvent(e); });
//   watch.Finish();
//   CATQ_RETURN_IF_ERROR(CheckJobSucceeded(job));
//
// Not thread-safe.
#ifndef CATQ_CLIENT_REMOTE_PROGRESS_H_
#define CATQ_CLIENT_REMOTE_PROGRESS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "catq/v1/catq.pb.h"
#include "client/progress.h"
#include "client/quantizer_client.h"

namespace catq::cli {

class TransferProgressPrinter {
 public:
  TransferProgressPrinter(absl::string_view task, bool quiet);
  // A callback for QuantizerClient's transfers; valid while this lives.
  client::TransferProgress Callback();
  void Finish() { printer_.Finish(); }

 private:
  void Update(uint64_t done, uint64_t total);

  ProgressPrinter printer_;
  absl::Time start_ = absl::Now();
  absl::Time last_drawn_ = absl::InfinitePast();
  uint64_t first_done_ = 0;
  bool started_ = false;
  bool finished_ = false;
};

class JobProgressPrinter {
 public:
  explicit JobProgressPrinter(bool quiet);
  void OnEvent(const v1::JobEvent& event);
  void Finish() { printer_.Finish(); }

 private:
  void PrintLine(const std::string& line);
  std::string RateAndEta(const v1::Job& job) const;

  ProgressPrinter printer_;
  const bool quiet_;
  v1::JobState state_ = v1::JOB_STATE_UNSPECIFIED;
  absl::Time start_ = absl::Now();
  int64_t first_done_ = -1;  // tasks_done at the first event
};

// StateName: "QUANTIZING" for JOB_STATE_QUANTIZING.
std::string StateName(v1::JobState state);

// TaskSummaryLine: "layer 3 (0.42 s): weight SQNR dB attn_in 19.81 ...", and
// the measured SQNR after (before) the transform when the task has them.
std::string TaskSummaryLine(const v1::TaskSummary& task);

// WatchJobWithProgress: QuantizerClient::Watch with a JobProgressPrinter;
// the job once it has ended, whatever its state.
absl::StatusOr<v1::Job> WatchJobWithProgress(client::QuantizerClient& client,
                                             const std::string& job_id, bool quiet);

// CheckJobSucceeded: OK for SUCCEEDED; Aborted "job J FAILED: <error>",
// Cancelled "job J was CANCELLED", or Unavailable for a job still running.
absl::Status CheckJobSucceeded(const v1::Job& job);

}  // namespace catq::cli

#endif  // CATQ_CLIENT_REMOTE_PROGRESS_H_
