#include "core/cat/calibration.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/cat/folded_norm_weights.h"
#include "core/cat/site_statistics_hook.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/model/model_tokenizer.h"
#include "core/model/text_documents.h"
#include "core/model/token_id_documents.h"
#include "core/util/status_macros.h"

namespace catq {

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
  SiteStatisticsHookOptions hook_options;
  hook_options.workers = ForwardWorkerCount(forward);
  hook_options.block_size = options.block_size;
  hook_options.sample_offsets =
      SampleOffsets(sequences, options.sample_tokens, &hook_options.sample_rows);
  hook_options.num_layers = model.config().num_hidden_layers;
  SiteStatisticsHook hook(model.config(), std::move(hook_options));
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
