// File: core/output/sequential_calibration.h
//
// Sequential calibration: the statistics of layer l's four sites measured on
// what the quantized model feeds that layer, not the float model. Layers
// 0..l-1 run quantized exactly as evaluation runs the stored output
// (quantized_layer.h: the decoded weights of the recipe, the online
// transforms, the recipe's activation grid); layer l runs in float and is
// measured, then quantized from those statistics (QuantizeLayer) so that
// layer l + 1 sees it quantized. Layer 0's statistics are the float mode's
// (calibration.h) bit for bit; later layers' follow the quantization error
// of the layers before them, as GPTQ's sequential mode does.
//
//   CATQ_ASSIGN_OR_RETURN(Calibration calibration,
//                         CollectSequentialSiteStatistics(model, recipe, sequences, options));
//
// The layer tasks that later quantize each layer from these statistics get
// the same quantized layers this pass ran, quantization being deterministic.
//
// Cost: every layer runs twice (measured in float, then advanced quantized)
// plus one QuantizeLayer per layer but the last, instead of a forward pass
// from the embeddings for every layer. Memory: the residual stream of every
// calibration token at the current layer boundary, tokens x hidden_size x 4
// bytes (64 Ki tokens: 1 GiB at hidden 4096), one layer's statistics,
// quantized weights and transforms, and the samples.
//
// Results are the same bits on any options.forward.num_threads.
//
// Thread-safety: independent calls are safe.
#ifndef CATQ_CORE_OUTPUT_SEQUENTIAL_CALIBRATION_H_
#define CATQ_CORE_OUTPUT_SEQUENTIAL_CALIBRATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/calibration.h"
#include "core/cat/recipe.h"
#include "core/model/llama_model.h"

namespace catq {

// CollectSequentialSiteStatistics
//
// As CollectSiteStatistics (same options, same result layout: statistics
// and samples of every site, sequence and token counts), measured
// sequentially for `recipe`. Errors: those of CollectSiteStatistics, and of
// quantizing a layer (they name the site).
absl::StatusOr<Calibration> CollectSequentialSiteStatistics(
    const LlamaModel& model, const Recipe& recipe,
    const std::vector<std::vector<int32_t>>& sequences, const CalibrationOptions& options);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_SEQUENTIAL_CALIBRATION_H_
