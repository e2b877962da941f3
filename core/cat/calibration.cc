#include "core/cat/calibration.h"

#include <algorithm>
#include <array>
#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/cat/folded_norm_weights.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/model/model_tokenizer.h"
#include "core/model/text_documents.h"
#include "core/model/token_id_documents.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// Collects the statistics of every (layer, site). Each call accumulates one
// sequence into its worker's buffer for that site; the buffer is then added
// to the site's total in sequence order, waiting for the sequences before it.
// So the totals are the same bits on any number of workers, however the
// forward pass handed the sequences out: the float64 sums are rounded in one
// order only. (Adding per-worker totals at the end would round in an order
// that depends on which worker ran which sequence, and an ulp of Sx can move
// a stored transform's float32 value.) A worker waits only for sequences the
// forward pass started before its own, which never wait for it, and an error
// wakes every waiter with that error.
class StatisticsHook : public SiteHook {
 public:
  // sample_offsets[s]: the row of the samples where sequence s starts; the
  // sequences past the end of the vector, and rows past sample_rows, are not
  // sampled.
  StatisticsHook(const LlamaConfig& config, int workers, int64_t block_size,
                 std::vector<int64_t> sample_offsets, int64_t sample_rows)
      : config_(config),
        block_size_(block_size),
        worker_parts_(static_cast<size_t>(workers)),
        totals_(static_cast<size_t>(NumSlots())),
        next_sequence_(static_cast<size_t>(NumSlots()), 0),
        sample_offsets_(std::move(sample_offsets)),
        sample_rows_(sample_rows) {
    if (sample_rows_ > 0) {
      for (int64_t slot = 0; slot < NumSlots(); ++slot) {
        samples_.push_back(RowMatrixXf::Zero(sample_rows_, SiteDim(config_, kAllSites[slot % 4])));
      }
    }
  }

  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> activations) override {
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

  // The totals by site key; sites no sequence reached are absent.
  SiteStatisticsMap TakeStatistics() && {
    SiteStatisticsMap statistics;
    for (int64_t slot = 0; slot < NumSlots(); ++slot) {
      std::unique_ptr<SiteStatistics>& total = totals_[static_cast<size_t>(slot)];
      if (total == nullptr) continue;
      statistics.emplace(SiteQualifiedName(slot / 4, kAllSites[static_cast<size_t>(slot % 4)]),
                         std::move(*total));
      total.reset();
    }
    return statistics;
  }

  // The samples by site key (empty when none were asked for).
  std::map<std::string, RowMatrixXf> TakeSamples() && {
    std::map<std::string, RowMatrixXf> samples;
    for (size_t slot = 0; slot < samples_.size(); ++slot) {
      samples.emplace(SiteQualifiedName(static_cast<int64_t>(slot) / 4, kAllSites[slot % 4]),
                      std::move(samples_[slot]));
    }
    return samples;
  }

 private:
  // Copies the rows of a sampled sequence into its place; sequences own
  // disjoint rows, so concurrent workers need no lock.
  void KeepSample(const SiteCall& call, const Eigen::Ref<const RowMatrixXf>& activations) {
    if (call.sequence >= static_cast<int64_t>(sample_offsets_.size())) return;
    const int64_t begin = sample_offsets_[static_cast<size_t>(call.sequence)];
    const int64_t rows = std::min(activations.rows(), sample_rows_ - begin);
    if (rows <= 0) return;
    samples_[static_cast<size_t>(Slot(call))].middleRows(begin, rows) = activations.topRows(rows);
  }

  // The calling worker's buffer for the site, emptied.
  absl::StatusOr<SiteStatistics*> WorkerPart(const SiteCall& call) {
    std::unique_ptr<SiteStatistics>& part =
        worker_parts_[static_cast<size_t>(call.worker)][static_cast<size_t>(call.site)];
    if (part == nullptr) {
      CATQ_ASSIGN_OR_RETURN(
          SiteStatistics created,
          SiteStatistics::Create(SiteDim(config_, call.site), {.block_size = block_size_}));
      part = std::make_unique<SiteStatistics>(std::move(created));
    }
    part->Clear();
    return part.get();
  }

  // Waits until every sequence before call.sequence has been added at this
  // site. A failed `status` is recorded first, so that waiters return it.
  absl::Status AwaitTurn(const SiteCall& call, const absl::Status& status) {
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
  absl::Status EndTurn(const SiteCall& call, const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    if (!status.ok()) return Fail(status);
    ++next_sequence_[static_cast<size_t>(Slot(call))];
    return absl::OkStatus();
  }

  absl::Status Fail(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (failure_.ok()) failure_ = status;
    return status;
  }

  int64_t NumSlots() const { return config_.num_hidden_layers * 4; }
  static int64_t Slot(const SiteCall& call) {
    return call.layer * 4 + static_cast<int64_t>(call.site);
  }

  const LlamaConfig& config_;
  const int64_t block_size_;
  // [worker][site]: one sequence's statistics at a time.
  std::vector<std::array<std::unique_ptr<SiteStatistics>, 4>> worker_parts_;
  // [layer * 4 + site]; touched only by the worker whose turn it is.
  std::vector<std::unique_ptr<SiteStatistics>> totals_;
  absl::Mutex mu_;
  // [layer * 4 + site]: the sequence whose part is added next.
  std::vector<int64_t> next_sequence_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  const std::vector<int64_t> sample_offsets_;
  const int64_t sample_rows_;
  std::vector<RowMatrixXf> samples_;  // [layer * 4 + site]
};

// Where each sampled sequence's rows start: sequences in order until
// `sample_tokens` rows are covered.
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

}  // namespace

absl::StatusOr<Calibration> CollectSiteStatistics(
    const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences,
    const CalibrationOptions& options) {
  if (sequences.empty()) {
    return absl::InvalidArgumentError("calibration: no sequences to calibrate on");
  }
  if (options.sample_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration sample_tokens: ", options.sample_tokens, " must be >= 0"));
  }
  if (options.block_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration block_size: ", options.block_size, " must be >= 0"));
  }
  ForwardOptions forward = options.forward;
  FoldedNormWeightProvider folded(model, forward.cache_limit_bytes);
  ModelWeightProvider plain(model, forward.cache_limit_bytes);
  forward.weights = options.fold_norm_gains ? static_cast<WeightProvider*>(&folded) : &plain;
  int64_t sample_rows = 0;
  std::vector<int64_t> offsets = SampleOffsets(sequences, options.sample_tokens, &sample_rows);
  StatisticsHook hook(model.config(), ForwardWorkerCount(forward), options.block_size,
                      std::move(offsets), sample_rows);
  forward.hooks = {&hook};
  CATQ_RETURN_IF_ERROR(RunForward(model, sequences, forward));
  Calibration calibration;
  calibration.statistics = std::move(hook).TakeStatistics();
  calibration.samples = std::move(hook).TakeSamples();
  calibration.sequences = static_cast<int64_t>(sequences.size());
  for (const std::vector<int32_t>& sequence : sequences) {
    calibration.tokens += static_cast<int64_t>(sequence.size());
  }
  return calibration;
}

namespace {

// The calibration sequences of `documents` (token ids): each cut to the
// model's context and within `options`; documents of fewer than two tokens
// are skipped. `source` names the input in the error for nothing left.
absl::StatusOr<std::vector<std::vector<int32_t>>> LimitCalibrationSequences(
    std::vector<std::vector<int32_t>> documents, const LlamaModel& model,
    const CalibrationTextOptions& options, const std::string& source) {
  if (options.max_documents > 0 && static_cast<int64_t>(documents.size()) > options.max_documents) {
    documents.resize(static_cast<size_t>(options.max_documents));
  }
  std::vector<std::vector<int32_t>> sequences;
  int64_t taken = 0;
  const size_t context = static_cast<size_t>(model.config().max_position_embeddings);
  for (std::vector<int32_t>& ids : documents) {
    if (options.max_tokens > 0 && taken >= options.max_tokens) break;
    if (ids.size() > context) ids.resize(context);
    if (options.max_tokens > 0) {
      ids.resize(std::min(ids.size(), static_cast<size_t>(options.max_tokens - taken)));
    }
    if (ids.size() < 2) continue;
    taken += static_cast<int64_t>(ids.size());
    sequences.push_back(std::move(ids));
  }
  if (sequences.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no document with at least two tokens to calibrate on"));
  }
  return sequences;
}

}  // namespace

absl::StatusOr<std::vector<std::vector<int32_t>>> CalibrationSequencesFromText(
    Env* env, const LlamaModel& model, const std::string& model_dir, const std::string& text_path,
    const CalibrationTextOptions& options) {
  CATQ_ASSIGN_OR_RETURN(std::vector<std::string> documents, ReadTextDocuments(env, text_path));
  if (options.max_documents > 0 && static_cast<int64_t>(documents.size()) > options.max_documents) {
    documents.resize(static_cast<size_t>(options.max_documents));
  }
  CATQ_ASSIGN_OR_RETURN(Llama2cTokenizer tokenizer,
                        LoadModelTokenizer(env, model_dir, model.config().vocab_size));
  return LimitCalibrationSequences(TokenizeDocuments(tokenizer, documents), model, options,
                                   text_path);
}

absl::StatusOr<std::vector<std::vector<int32_t>>> CalibrationSequencesFromTokenIds(
    Env* env, const LlamaModel& model, const std::string& token_ids_path,
    const CalibrationTextOptions& options) {
  CATQ_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> documents,
                        ReadTokenIdDocuments(env, token_ids_path, model.config().vocab_size));
  return LimitCalibrationSequences(std::move(documents), model, options, token_ids_path);
}

absl::Status CheckStatisticsCover(const LlamaConfig& config, const SiteStatisticsMap& stats) {
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (Site site : kAllSites) {
      const std::string key = SiteQualifiedName(layer, site);
      auto it = stats.find(key);
      if (it == stats.end()) {
        return absl::InvalidArgumentError(absl::StrCat(key, ": no statistics for this site"));
      }
      const int64_t want = SiteDim(config, site);
      if (it->second.dim() != want) {
        return absl::InvalidArgumentError(absl::StrCat(
            key, ": dim ", it->second.dim(), ", the model's site has ", want, " channels"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace catq
