#include "core/cat/site_statistics_hook.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {

// Why the totals are added in sequence order: adding per-worker totals at
// the end would round in an order that depends on which worker ran which
// sequence, and an ulp of Sx can move a stored transform's float32 value. A
// worker waits only for sequences the forward pass started before its own,
// which never wait for it, and an error wakes every waiter with that error.
SiteStatisticsHook::SiteStatisticsHook(const LlamaConfig& config, SiteStatisticsHookOptions options)
    : config_(config),
      options_(std::move(options)),
      worker_parts_(static_cast<size_t>(options_.workers)),
      totals_(static_cast<size_t>(NumSlots())),
      next_sequence_(static_cast<size_t>(NumSlots()), 0) {
  if (options_.sample_rows > 0) {
    for (int64_t slot = 0; slot < NumSlots(); ++slot) {
      samples_.push_back(
          RowMatrixXf::Zero(options_.sample_rows, SiteDim(config_, kAllSites[slot % 4])));
    }
  }
}

absl::Status SiteStatisticsHook::OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> activations) {
  if (call.layer < options_.first_layer ||
      call.layer >= options_.first_layer + options_.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("statistics: layer ", call.layer, " is outside the measured layers"));
  }
  KeepSample(call, activations);
  const std::string name = SiteQualifiedName(call.layer, call.site);
  absl::StatusOr<SiteStatistics*> part = WorkerPart(call);
  absl::Status status = part.status();
  if (status.ok()) status = Prefix(name, (*part)->Accumulate(activations));
  CATQ_RETURN_IF_ERROR(AwaitTurn(call, status));
  // Until next_sequence_ moves on, no other worker touches this total.
  std::unique_ptr<SiteStatistics>& total = totals_[static_cast<size_t>(Slot(call))];
  if (total == nullptr) {
    total = std::make_unique<SiteStatistics>(**part);  // 0 + part, exactly
  } else {
    status = Prefix(name, total->Merge(**part));
  }
  return EndTurn(call, status);
}

std::string SiteStatisticsHook::SlotKey(int64_t slot) const {
  return SiteQualifiedName(options_.first_layer + slot / 4,
                           kAllSites[static_cast<size_t>(slot % 4)]);
}

SiteStatisticsMap SiteStatisticsHook::TakeStatistics() && {
  SiteStatisticsMap statistics;
  for (int64_t slot = 0; slot < NumSlots(); ++slot) {
    std::unique_ptr<SiteStatistics>& total = totals_[static_cast<size_t>(slot)];
    if (total == nullptr) continue;
    statistics.emplace(SlotKey(slot), std::move(*total));
    total.reset();
  }
  return statistics;
}

std::map<std::string, RowMatrixXf> SiteStatisticsHook::TakeSamples() && {
  std::map<std::string, RowMatrixXf> samples;
  for (size_t slot = 0; slot < samples_.size(); ++slot) {
    samples.emplace(SlotKey(static_cast<int64_t>(slot)), std::move(samples_[slot]));
  }
  return samples;
}

// Copies the rows of a sampled sequence into its place; sequences own
// disjoint rows, so concurrent workers need no lock.
void SiteStatisticsHook::KeepSample(const SiteCall& call,
                                    const Eigen::Ref<const RowMatrixXf>& activations) {
  if (call.sequence >= static_cast<int64_t>(options_.sample_offsets.size())) return;
  const int64_t begin = options_.sample_offsets[static_cast<size_t>(call.sequence)];
  const int64_t rows = std::min(activations.rows(), options_.sample_rows - begin);
  if (rows <= 0) return;
  samples_[static_cast<size_t>(Slot(call))].middleRows(begin, rows) = activations.topRows(rows);
}

// The calling worker's buffer for the site, emptied.
absl::StatusOr<SiteStatistics*> SiteStatisticsHook::WorkerPart(const SiteCall& call) {
  std::unique_ptr<SiteStatistics>& part =
      worker_parts_[static_cast<size_t>(call.worker)][static_cast<size_t>(call.site)];
  if (part == nullptr) {
    CATQ_ASSIGN_OR_RETURN(
        SiteStatistics created,
        SiteStatistics::Create(SiteDim(config_, call.site), {.block_size = options_.block_size}));
    part = std::make_unique<SiteStatistics>(std::move(created));
  }
  part->Clear();
  return part.get();
}

// Waits until every sequence before call.sequence has been added at this
// site. A failed `status` is recorded first, so that waiters return it.
absl::Status SiteStatisticsHook::AwaitTurn(const SiteCall& call, const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (!status.ok()) return Fail(status);
  const size_t slot = static_cast<size_t>(Slot(call));
  auto turn = [this, slot, &call]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !failure_.ok() || next_sequence_[slot] == call.sequence;
  };
  mu_.Await(absl::Condition(&turn));
  return failure_;
}

// Passes the site on to the next sequence, or records the failure.
absl::Status SiteStatisticsHook::EndTurn(const SiteCall& call, const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (!status.ok()) return Fail(status);
  ++next_sequence_[static_cast<size_t>(Slot(call))];
  return absl::OkStatus();
}

absl::Status SiteStatisticsHook::Fail(const absl::Status& status) {
  if (failure_.ok()) failure_ = status;
  return status;
}

std::vector<int64_t> SampleOffsets(const std::vector<std::vector<int32_t>>& sequences,
                                   int64_t sample_tokens, int64_t* sample_rows) {
  std::vector<int64_t> offsets;
  int64_t rows = 0;
  for (const std::vector<int32_t>& sequence : sequences) {
    if (rows >= sample_tokens) break;
    offsets.push_back(rows);
    rows += static_cast<int64_t>(sequence.size());
  }
  *sample_rows = std::min(rows, sample_tokens);
  return offsets;
}

}  // namespace catq
