// File: server/job_events.h
//
// The live side of WatchJob: each job's events in order, so any number of
// watchers can follow a job, each at its own pace. A watcher that joins late
// starts from the current state (the service sends GetJob's view first) and
// then waits here for events newer than the last it saw. The history is
// bounded per job; a watcher that falls further behind than that skips to
// the oldest event kept (each event carries the whole Job, so nothing is
// lost but intermediate task summaries).
//
//   uint64_t seen = hub.Latest(job_id);
//   std::vector<JobEventHub::Entry> next = hub.WaitNewer(job_id, seen, absl::Seconds(1));
//
// Thread-safety: thread-safe.
#ifndef CATQ_SERVER_JOB_EVENTS_H_
#define CATQ_SERVER_JOB_EVENTS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "catq/v1/catq.pb.h"

namespace catq::server {

class JobEventHub {
 public:
  struct Entry {
    uint64_t sequence = 0;
    v1::JobEvent event;
  };

  explicit JobEventHub(size_t history_per_job = 256) : history_per_job_(history_per_job) {}

  // Publish: appends `event` to its job's history (event.job().job_id()) and
  // wakes the job's watchers.
  void Publish(const v1::JobEvent& event);

  // Latest: the sequence number of the job's newest event, 0 when none.
  uint64_t Latest(const std::string& job_id) const;

  // WaitNewer: the job's events after `after`, waiting up to `timeout` for
  // one to arrive; empty on timeout.
  std::vector<Entry> WaitNewer(const std::string& job_id, uint64_t after, absl::Duration timeout);

 private:
  struct JobHistory {
    uint64_t next_sequence = 1;
    std::deque<Entry> entries;
  };
  const size_t history_per_job_;
  mutable absl::Mutex mu_;
  std::map<std::string, JobHistory> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace catq::server

#endif  // CATQ_SERVER_JOB_EVENTS_H_
