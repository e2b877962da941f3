// File: core/cat/site_statistics_hook.h
//
// SiteStatisticsHook: the SiteHook (llama_forward.h) that accumulates the
// SiteStatistics of every site of a range of layers, and keeps a sample of
// their activations (the first sample_rows tokens, in sequence order). The
// calibration pass (calibration.h) runs it over the whole model; sequential
// calibration (core/output/sequential_calibration.h) one layer at a time.
//
//   int64_t sample_rows = 0;
//   SiteStatisticsHookOptions options;
//   options.workers = ForwardWorkerCount(forward);
//   options.sample_offsets = SampleOffsets(sequences, 512, &options.sample_rows);
//   options.num_layers = config.num_hidden_layers;
//   SiteStatisticsHook hook(config, std::move(options));
//   forward.hooks = {&hook};
//   CATQ_RETURN_IF_ERROR(RunForward(model, sequences, forward));
//   SiteStatisticsMap statistics = std::move(hook).TakeStatistics();
//
// Each sequence is accumulated into its worker's buffer for the site, then
// added to the site's total in sequence order, waiting for the sequences
// before it: the totals are the same bits on any number of workers, however
// the forward pass handed the sequences out. Memory: (workers + 1) x the
// statistics of the range, plus the samples.
//
// Thread-safety: OnSite is called concurrently by the forward pass's workers
// (one call at a time per worker); the Take methods after the pass.
#ifndef CATQ_CORE_CAT_SITE_STATISTICS_HOOK_H_
#define CATQ_CORE_CAT_SITE_STATISTICS_HOOK_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/cat/site_statistics.h"
#include "core/model/llama_forward.h"

namespace catq {

using SiteStatisticsMap = std::map<std::string, SiteStatistics>;

struct SiteStatisticsHookOptions {
  // ForwardWorkerCount of the pass that calls the hook.
  int workers = 1;
  // Block size of the statistics (0: full Sx; see SiteStatistics).
  int64_t block_size = 0;
  // sample_offsets[s]: the row of the samples where sequence s starts;
  // sequences past the end of the vector, and rows past sample_rows, are not
  // sampled (SampleOffsets computes both).
  std::vector<int64_t> sample_offsets;
  int64_t sample_rows = 0;
  // The layers measured: [first_layer, first_layer + num_layers). A call for
  // another layer is InvalidArgument.
  int64_t first_layer = 0;
  int64_t num_layers = 0;
};

class SiteStatisticsHook : public SiteHook {
 public:
  SiteStatisticsHook(const LlamaConfig& config, SiteStatisticsHookOptions options);

  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> activations) override;

  // The totals by site key; sites no sequence reached are absent.
  SiteStatisticsMap TakeStatistics() &&;
  // The samples by site key of the range (empty when none were asked for).
  std::map<std::string, RowMatrixXf> TakeSamples() &&;

 private:
  void KeepSample(const SiteCall& call, const Eigen::Ref<const RowMatrixXf>& activations);
  absl::StatusOr<SiteStatistics*> WorkerPart(const SiteCall& call);
  absl::Status AwaitTurn(const SiteCall& call, const absl::Status& status);
  absl::Status EndTurn(const SiteCall& call, const absl::Status& status);
  absl::Status Fail(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t NumSlots() const { return options_.num_layers * 4; }
  int64_t Slot(const SiteCall& call) const {
    return (call.layer - options_.first_layer) * 4 + static_cast<int64_t>(call.site);
  }
  std::string SlotKey(int64_t slot) const;

  const LlamaConfig& config_;
  const SiteStatisticsHookOptions options_;
  // [worker][site]: one sequence's statistics at a time.
  std::vector<std::array<std::unique_ptr<SiteStatistics>, 4>> worker_parts_;
  // [slot]; touched only by the worker whose turn it is.
  std::vector<std::unique_ptr<SiteStatistics>> totals_;
  absl::Mutex mu_;
  // [slot]: the sequence whose part is added next.
  std::vector<int64_t> next_sequence_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  std::vector<RowMatrixXf> samples_;  // [slot]
};

// SampleOffsets: where each sampled sequence's rows start: sequences in
// order until `sample_tokens` rows are covered; `*sample_rows` is the total.
std::vector<int64_t> SampleOffsets(const std::vector<std::vector<int32_t>>& sequences,
                                   int64_t sample_tokens, int64_t* sample_rows);

}  // namespace catq

#endif  // CATQ_CORE_CAT_SITE_STATISTICS_HOOK_H_
