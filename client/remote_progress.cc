#include "client/remote_progress.h"

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace catq::cli {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// "<1 s", "42 s", "3m05s", "2h07m".
std::string FormatDuration(double seconds) {
  if (seconds < 1) return "<1 s";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s < 60) return absl::StrFormat("%d s", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string EtaText(double eta_seconds) {
  return eta_seconds >= 0 ? absl::StrCat("ETA ", FormatDuration(eta_seconds)) : "ETA unknown";
}

}  // namespace

std::string StateName(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  constexpr absl::string_view kPrefix = "JOB_STATE_";
  return absl::StartsWith(name, kPrefix) ? name.substr(kPrefix.size()) : name;
}

std::string TaskSummaryLine(const v1::TaskSummary& task) {
  std::string line =
      absl::StrFormat("layer %d (%.2f s): weight SQNR dB", task.layer(), task.seconds());
  bool measured = false;
  for (const v1::SiteSummary& site : task.sites()) {
    absl::StrAppend(&line, absl::StrFormat(" %s %.2f", site.site(), site.weight_sqnr_db_mean()));
    measured = measured || site.has_sqnr_after_db();
  }
  if (!measured) return line;
  absl::StrAppend(&line, "; measured SQNR dB after (before)");
  for (const v1::SiteSummary& site : task.sites()) {
    if (!site.has_sqnr_after_db()) continue;
    absl::StrAppend(&line, absl::StrFormat(" %s %.2f (%.2f)", site.site(), site.sqnr_after_db(),
                                           site.sqnr_before_db()));
  }
  return line;
}

absl::Status CheckJobSucceeded(const v1::Job& job) {
  switch (job.state()) {
    case v1::JOB_STATE_SUCCEEDED:
      return absl::OkStatus();
    case v1::JOB_STATE_FAILED:
      return absl::AbortedError(absl::StrCat("job ", job.job_id(), " FAILED: ", job.error()));
    case v1::JOB_STATE_CANCELLED:
      return absl::CancelledError(absl::StrCat("job ", job.job_id(), " was CANCELLED"));
    default:
      return absl::UnavailableError(
          absl::StrCat("job ", job.job_id(), " is still ", StateName(job.state())));
  }
}

absl::StatusOr<v1::Job> WatchJobWithProgress(client::QuantizerClient& client,
                                             const std::string& job_id, bool quiet) {
  JobProgressPrinter printer(quiet);
  absl::StatusOr<v1::Job> job =
      client.Watch(job_id, [&printer](const v1::JobEvent& event) { printer.OnEvent(event); });
  printer.Finish();
  return job;
}

TransferProgressPrinter::TransferProgressPrinter(absl::string_view task, bool quiet)
    : printer_(task, quiet) {}

client::TransferProgress TransferProgressPrinter::Callback() {
  return [this](uint64_t done, uint64_t total) { Update(done, total); };
}

void TransferProgressPrinter::Update(uint64_t done, uint64_t total) {
  const absl::Time now = absl::Now();
  if (!started_) {
    started_ = true;
    start_ = now;
    first_done_ = done;
    // A plain line at 0 says nothing; the first comes after an interval.
    if (!printer_.terminal()) last_drawn_ = now;
  }
  const absl::Duration interval = printer_.terminal() ? absl::Milliseconds(200) : absl::Seconds(10);
  if (done < total && now - last_drawn_ < interval) return;
  if (done >= total && finished_) return;  // "done" once, however many files end there.
  finished_ = done >= total;
  last_drawn_ = now;
  const double seconds = absl::ToDoubleSeconds(now - start_);
  const double rate = seconds > 0 ? (done - first_done_) / seconds : 0.0;
  const double eta = rate > 0 ? (total - done) / rate : -1.0;
  printer_.UpdateFraction(
      total > 0 ? static_cast<double>(done) / total : 1.0,
      absl::StrFormat("%.1f/%.1f MiB", done / kMiB, total / kMiB),
      done < total ? absl::StrFormat("%.1f MiB/s, %s", rate / kMiB, EtaText(eta)) : "done");
}

JobProgressPrinter::JobProgressPrinter(bool quiet) : printer_("job", quiet), quiet_(quiet) {}

void JobProgressPrinter::OnEvent(const v1::JobEvent& event) {
  const v1::Job& job = event.job();
  if (first_done_ < 0) {
    first_done_ = job.tasks_done();
    start_ = absl::Now();
  }
  if (job.state() != state_) {
    state_ = job.state();
    PrintLine(absl::StrFormat("job %s: %s, %d/%d tasks done", job.job_id(), StateName(state_),
                              job.tasks_done(), job.tasks_total()));
  }
  if (event.has_message()) PrintLine(absl::StrCat("job ", job.job_id(), ": ", event.message()));
  if (printer_.terminal()) {
    if (job.tasks_total() > 0) {
      printer_.Update(job.tasks_done(), job.tasks_total(),
                      absl::StrCat(StateName(job.state()), ", ", RateAndEta(job)));
    }
  } else if (event.has_task_finished()) {
    printer_.Update(job.tasks_done(), job.tasks_total(),
                    absl::StrCat(TaskSummaryLine(event.task_finished()), "; ", RateAndEta(job)));
  }
}

void JobProgressPrinter::PrintLine(const std::string& line) {
  if (quiet_) return;
  printer_.Finish();
  std::cerr << line << "\n";
}

std::string JobProgressPrinter::RateAndEta(const v1::Job& job) const {
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
  const double rate = seconds > 0 ? (job.tasks_done() - first_done_) / seconds : 0.0;
  double eta = job.eta_seconds();
  if (eta < 0 && rate > 0) eta = (job.tasks_total() - job.tasks_done()) / rate;
  if (job.tasks_done() >= job.tasks_total()) eta = 0;
  return absl::StrFormat("%.2f tasks/s, %s", rate, EtaText(eta));
}

}  // namespace catq::cli
