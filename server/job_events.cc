#include "server/job_events.h"

namespace catq::server {

void JobEventHub::Publish(const v1::JobEvent& event) {
  absl::MutexLock lock(&mu_);
  JobHistory& history = jobs_[event.job().job_id()];
  history.entries.push_back({history.next_sequence++, event});
  while (history.entries.size() > history_per_job_) history.entries.pop_front();
}

uint64_t JobEventHub::Latest(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? 0 : it->second.next_sequence - 1;
}

std::vector<JobEventHub::Entry> JobEventHub::WaitNewer(const std::string& job_id, uint64_t after,
                                                       absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto has_newer = [this, &job_id, after]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = jobs_.find(job_id);
    return it != jobs_.end() && it->second.next_sequence - 1 > after;
  };
  mu_.AwaitWithTimeout(absl::Condition(&has_newer), timeout);
  std::vector<Entry> newer;
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return newer;
  for (const Entry& entry : it->second.entries) {
    if (entry.sequence > after) newer.push_back(entry);
  }
  return newer;
}

}  // namespace catq::server
