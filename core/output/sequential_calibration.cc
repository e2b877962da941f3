#include "core/output/sequential_calibration.h"

#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/cat/folded_norm_weights.h"
#include "core/cat/site_statistics_hook.h"
#include "core/output/calibration_data.h"
#include "core/output/layer_quantizer.h"
#include "core/output/quantized_layer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

absl::Status CheckOptions(const std::vector<std::vector<int32_t>>& sequences,
                          const CalibrationOptions& options) {
  if (sequences.empty()) {
    return absl::InvalidArgumentError("calibration: no sequences to calibrate on");
  }
  if (options.sample_tokens < 0 || options.block_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("calibration: sample_tokens ",
                                                   options.sample_tokens, " and block_size ",
                                                   options.block_size, " must be >= 0"));
  }
  return absl::OkStatus();
}

// The float pass of one layer: its sites' statistics and samples.
class LayerMeasurer {
 public:
  LayerMeasurer(const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences,
                const CalibrationOptions& options)
      : model_(model),
        options_(options),
        folded_(model, options.forward.cache_limit_bytes),
        plain_(model, options.forward.cache_limit_bytes) {
    offsets_ = SampleOffsets(sequences, options.sample_tokens, &sample_rows_);
  }

  // The float weights the measured layer runs on (gains folded as the
  // recipe folds them), so layer 0 sees exactly what the float mode sees.
  WeightProvider* weights() {
    return options_.fold_norm_gains ? static_cast<WeightProvider*>(&folded_) : &plain_;
  }

  absl::StatusOr<CalibrationData> Measure(int64_t layer, const std::vector<RowMatrixXf>& hidden) {
    SiteStatisticsHookOptions hook_options;
    hook_options.workers = ForwardWorkerCount(options_.forward);
    hook_options.block_size = options_.block_size;
    hook_options.sample_offsets = offsets_;
    hook_options.sample_rows = sample_rows_;
    hook_options.first_layer = layer;
    hook_options.num_layers = 1;
    SiteStatisticsHook hook(model_.config(), std::move(hook_options));
    ForwardOptions forward = options_.forward;
    forward.weights = weights();
    forward.hooks = {&hook};
    CATQ_RETURN_IF_ERROR(ObserveLayer(model_, layer, hidden, forward));
    CalibrationData data;
    data.statistics = std::move(hook).TakeStatistics();
    data.samples = std::move(hook).TakeSamples();
    return data;
  }

 private:
  const LlamaModel& model_;
  const CalibrationOptions& options_;
  FoldedNormWeightProvider folded_;
  ModelWeightProvider plain_;
  std::vector<int64_t> offsets_;
  int64_t sample_rows_ = 0;
};

// Quantizes `layer` from its statistics and runs it on `hidden`, as the
// stored output will run it. The samples only feed the SQNR figures, so
// they are left out of the quantization here.
absl::Status AdvanceQuantized(const LlamaModel& model, const Recipe& recipe, int64_t layer,
                              CalibrationData& measured, const ForwardOptions& forward,
                              std::vector<RowMatrixXf>& hidden) {
  std::map<std::string, RowMatrixXf> samples = std::move(measured.samples);
  measured.samples.clear();
  absl::StatusOr<LayerResult> result =
      QuantizeLayer(model, recipe, layer, measured, {.keep_dequantized = true});
  measured.samples = std::move(samples);
  CATQ_RETURN_IF_ERROR(result.status());
  CATQ_ASSIGN_OR_RETURN(QuantizedLayer quantized, MakeQuantizedLayer(model, recipe, *result));
  QuantizedLayerWeights weights(model, forward.cache_limit_bytes);
  weights.Set(&quantized);
  QuantizedLayerHook hook(quantized, recipe);
  ForwardOptions options = forward;
  options.weights = &weights;
  options.hooks = {&hook};
  return AdvanceLayer(model, layer, hidden, options);
}

}  // namespace

absl::StatusOr<Calibration> CollectSequentialSiteStatistics(
    const LlamaModel& model, const Recipe& recipe,
    const std::vector<std::vector<int32_t>>& sequences, const CalibrationOptions& options) {
  CATQ_RETURN_IF_ERROR(CheckOptions(sequences, options));
  LayerMeasurer measurer(model, sequences, options);
  CATQ_ASSIGN_OR_RETURN(std::vector<RowMatrixXf> hidden,
                        EmbedSequences(model, sequences, options.forward));
  Calibration calibration;
  const int64_t layers = model.config().num_hidden_layers;
  for (int64_t layer = 0; layer < layers; ++layer) {
    CATQ_ASSIGN_OR_RETURN(CalibrationData measured, measurer.Measure(layer, hidden));
    if (layer + 1 < layers) {  // Nothing reads the last layer's output.
      CATQ_RETURN_IF_ERROR(
          AdvanceQuantized(model, recipe, layer, measured, options.forward, hidden));
    }
    calibration.statistics.merge(measured.statistics);
    calibration.samples.merge(measured.samples);
  }
  calibration.sequences = static_cast<int64_t>(sequences.size());
  for (const std::vector<int32_t>& sequence : sequences) {
    calibration.tokens += static_cast<int64_t>(sequence.size());
  }
  return calibration;
}

}  // namespace catq
