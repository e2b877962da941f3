// File: core/output/output_assembler.h
//
// Writes a catq output directory (architecture.md section 4) from the input
// model and one LayerResult per layer: every planned tensor in plan order
// (copied, unit gains, packed linears, online transforms, folded gains), the
// shards' index, config.json with quantization_config, the tokenizer and
// generation files, and catq_report.json last. Where the layer results come
// from is the caller's: the in-process quantizer computes them on the spot,
// the service reads them back from its workers' stored task results. Both
// thus write the same bytes for the same results.
//
//   QuantizationReport report = NewQuantizationReport(model, model_dir, recipe);
//   AssembleOptions options;
//   CATQ_RETURN_IF_ERROR(AssembleOutput(env, model, model_dir, recipe,
//                                       [&](int64_t layer) { return QuantizeLayer(...); },
//                                       options, staged_dir, &report));
//
// Memory: one layer's results at a time (a layer is asked for once, when its
// first tensor is due; the previous layer's are dropped then).
//
// Thread-safety: independent calls on different directories are safe.
#ifndef CATQ_CORE_OUTPUT_OUTPUT_ASSEMBLER_H_
#define CATQ_CORE_OUTPUT_OUTPUT_ASSEMBLER_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/cat/recipe.h"
#include "core/io/env.h"
#include "core/model/llama_model.h"
#include "core/output/layer_quantizer.h"
#include "core/output/quantization_report.h"

namespace catq {

// The result of one layer, computed or read back.
using LayerResultSource = std::function<absl::StatusOr<LayerResult>(int64_t layer)>;

struct AssembleOptions {
  // Largest shard, in bytes of tensor data. Default 2 GiB.
  uint64_t max_shard_bytes = uint64_t{2} << 30;
  // When the job started, on the Env clock (microseconds), for the report's
  // total time; 0: when assembly started.
  uint64_t start_micros = 0;
  // Called after each linear is written; `done` counts linears written out of
  // `total`.
  std::function<void(const LinearReport& linear, int64_t done, int64_t total)> on_linear;
};

// Tokenizer and generation files copied from the input when present.
inline constexpr const char* kCopiedSideFiles[] = {
    "tokenizer.bin",         "tokenizer.model",         "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
};

// NewQuantizationReport: the report's model and recipe fields.
QuantizationReport NewQuantizationReport(const LlamaModel& model, const std::string& model_dir,
                                         const Recipe& recipe);

// AssembleOutput: writes the output into the existing, empty directory
// `dir`, filling `report` (linears, sites, output bytes, shards, timings; the
// caller fills the calibration). Errors: the source's errors, results that do
// not match the plan (Internal, naming the tensor), I/O errors.
absl::Status AssembleOutput(Env* env, const LlamaModel& model, const std::string& model_dir,
                            const Recipe& recipe, const LayerResultSource& source,
                            const AssembleOptions& options, const std::string& dir,
                            QuantizationReport* report);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_OUTPUT_ASSEMBLER_H_
