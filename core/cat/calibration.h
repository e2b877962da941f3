// File: core/cat/calibration.h
//
// Calibration: runs the float32 model over calibration sequences and
// accumulates SiteStatistics at the four sites of every layer (attn_in,
// attn_out, mlp_in, mlp_out; cat-method.md section 3). With fold_norm_gains
// the forward pass runs on FoldedNormWeightProvider, so that attn_in and
// mlp_in see the normalized vectors without gain, as the quantized model
// will.
//
// It also keeps a sample of the activations of each site (the first
// sample_tokens tokens, in sequence order, so the same on any thread count):
// the report measures SQNR on them before and after the transform.
//
//   CalibrationOptions options;
//   options.block_size = 0;  // full Sx matrices
//   CATQ_ASSIGN_OR_RETURN(Calibration calib, CollectSiteStatistics(model, ids, options));
//   const SiteStatistics& s = calib.statistics.at(SiteQualifiedName(3, Site::kMlpIn));
//
// The statistics are accumulated by SiteStatisticsHook (site_statistics_hook.h):
// the same bits on any thread count; memory (workers + 1) x the statistics.
#ifndef CATQ_CORE_CAT_CALIBRATION_H_
#define CATQ_CORE_CAT_CALIBRATION_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/site_statistics.h"
#include "core/cat/site_statistics_hook.h"
#include "core/model/llama_forward.h"
#include "core/model/llama_model.h"

namespace catq {

struct CalibrationOptions {
  // Block size of the statistics: 0 (default) keeps the full Sx of every
  // site; k keeps its k x k diagonal blocks only (what block CAT with that k
  // needs, d*k instead of d^2 doubles per site).
  int64_t block_size = 0;
  // Collect at the gain-free site inputs (see above). Default true, matching
  // Recipe::fold_norm_gains.
  bool fold_norm_gains = true;
  // Tokens of activation samples kept per site (0: none). Default 512.
  int64_t sample_tokens = 512;
  // Threads and batching of the forward pass; its weights and hooks are set
  // by the call.
  ForwardOptions forward;
};

struct Calibration {
  SiteStatisticsMap statistics;
  // Per site key: [min(sample_tokens, all tokens), dim] activations.
  std::map<std::string, RowMatrixXf> samples;
  int64_t sequences = 0;
  int64_t tokens = 0;
};

// CollectSiteStatistics
//
// Statistics of every site of every layer over `sequences` (token ids, each
// starting with BOS as the tokenizer gives them). InvalidArgument for no
// sequences, and the forward pass's errors (a bad token id names the sequence
// and position). The result has 4 * num_hidden_layers entries.
absl::StatusOr<Calibration> CollectSiteStatistics(
    const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences,
    const CalibrationOptions& options);

struct CalibrationTextOptions {
  // Use the first `max_documents` documents of the text (0: all).
  int64_t max_documents = 0;
  // Stop once this many tokens are taken, truncating the last document (0:
  // no limit).
  int64_t max_tokens = 0;
};

// CalibrationSequencesFromText
//
// The documents of the text file at `text_path` (text_documents.h), encoded
// with the model's tokenizer (core/model/model_tokenizer.h: tokenizer.model,
// else tokenizer.bin), BOS first, each truncated to max_position_embeddings,
// within the limits of `options`. Documents that leave fewer than two tokens
// are skipped.
// NotFound for a missing text or tokenizer file; InvalidArgument when nothing
// is left to calibrate on.
absl::StatusOr<std::vector<std::vector<int32_t>>> CalibrationSequencesFromText(
    Env* env, const LlamaModel& model, const std::string& model_dir, const std::string& text_path,
    const CalibrationTextOptions& options);

// CalibrationSequencesFromTokenIds
//
// The documents of a token id file (core/model/token_id_documents.h: int32
// ids, -1 between documents), taken as they are, each truncated to
// max_position_embeddings, within the limits of `options`. Documents of
// fewer than two tokens are skipped. Errors name the file, and the byte
// offset of an id outside the vocabulary.
absl::StatusOr<std::vector<std::vector<int32_t>>> CalibrationSequencesFromTokenIds(
    Env* env, const LlamaModel& model, const std::string& token_ids_path,
    const CalibrationTextOptions& options);

// CheckStatisticsCover
//
// OK when `stats` holds every site of `config` with the site's dimension;
// otherwise InvalidArgument naming the first missing or misshapen site key
// ("model.layers.2.mlp_out: dim 64, the model's site has 172 channels").
absl::Status CheckStatisticsCover(const LlamaConfig& config, const SiteStatisticsMap& stats);

}  // namespace catq

#endif  // CATQ_CORE_CAT_CALIBRATION_H_
