// File: core/output/gptq_export.h
//
// The separate GPTQ-layout export of a catq output (architecture.md section
// 4): the same quantized weights, rewritten from compressed-tensors
// `pack-quantized` into the layout AutoGPTQ / exllama "v1" checkpoints use
// (core/quant/gptq_pack.h), for loaders that read GPTQ and not
// compressed-tensors. Only outputs with no online transform can be exported:
// a GPTQ loader runs plain linears and would not apply one.
//
//   CATQ_RETURN_IF_ERROR(CheckRecipeGptqExportable(recipe));  // before quantizing
//   ...
//   CATQ_RETURN_IF_ERROR(ExportGptqLayout(env, "out/m-w4", "out/m-w4/gptq"));
//
// What the export directory holds:
//   - for every quantized linear <m> (e.g. model.layers.0.self_attn.q_proj),
//     in place of its compressed-tensors tensors:
//       <m>.qweight  I32 [ceil(in/8), out]
//       <m>.qzeros   I32 [groups, ceil(out/8)]
//       <m>.scales   F16 [groups, out]
//       <m>.g_idx    I32 [in], i / group_size (0 per channel)
//     so that (q_u - (stored_zero + 1)) * scale is, bit for bit, the weight
//     the compressed-tensors tensors dequantize to. A width that is not a
//     multiple of 8 is padded as gptq_pack.h says (Llama shapes never are;
//     loaders whose kernels need multiples of 32 refuse such a linear);
//   - every other tensor (embeddings, norms, lm_head) copied byte for byte.
//     With fold_norm_gains the stored norms are ones and the gains are in the
//     weights, which a loader runs as is;
//   - shards and model.safetensors.index.json like the source (one
//     model.safetensors when the source is one file), tensors in the
//     source's order;
//   - config.json: the output's, with quantization_config replaced by
//     {"quant_method": "gptq", "bits": 4, "group_size": G or -1,
//     "desc_act": false, "sym": ..., "checkpoint_format": "gptq"}, and the
//     same object as quantize_config.json (AutoGPTQ reads that file);
//   - the tokenizer and generation files of the output (kCopiedSideFiles).
//     catq_report.json stays with the output it describes.
// GPTQ checkpoints are weight-only: a loader runs the activations in floating
// point, whatever activation grid the output records.
//
// Memory: one linear at a time (its levels, about out * in bytes, and their
// packing); the other tensors are copied from the mapped shards.
//
// Thread-safety: independent calls on different export directories are safe.
#ifndef CATQ_CORE_OUTPUT_GPTQ_EXPORT_H_
#define CATQ_CORE_OUTPUT_GPTQ_EXPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/cat/recipe.h"
#include "core/io/env.h"
#include "core/model/llama_model.h"
#include "core/quant/weight_quant_options.h"
#include "nlohmann/json.hpp"

namespace catq {

inline constexpr absl::string_view kGptqQuantizeConfigFileName = "quantize_config.json";
// The subdirectory of an output that the service (SubmitJobRequest.export_gptq)
// and `catq quantize --export-gptq` write the export into.
inline constexpr absl::string_view kGptqExportDirName = "gptq";

// The GPTQ tensors of one quantized linear `<m>`.
struct GptqWeightNames {
  std::string qweight;  // <m>.qweight  I32 [ceil(in/8), out]
  std::string qzeros;   // <m>.qzeros   I32 [groups, ceil(out/8)]
  std::string scales;   // <m>.scales   F16 [groups, out]
  std::string g_idx;    // <m>.g_idx    I32 [in]
};
// `module` is the linear's name without ".weight".
GptqWeightNames GptqWeightNamesFor(absl::string_view module);

// GptqQuantizationConfig: the quantization_config (and quantize_config.json)
// object for weights on `weights` (4 bits).
nlohmann::json GptqQuantizationConfig(const WeightQuantOptions& weights);

// CheckRecipeGptqExportable
//
// What the recipe alone decides: InvalidArgument naming the recipe field when
// every output of `recipe` has an online transform (method hadamard; cat
// unless block_size is 1 without Hadamard mixing) or scales GPTQ's F16
// cannot hold (scale_dtype F32; BF16 scales convert exactly), or weights of
// other than 4 bits (weights.bits). A diagonal recipe (smoothquant, cat k=1
// without mixing) passes: whether each site folds depends on the model
// (CheckGptqExportable).
absl::Status CheckRecipeGptqExportable(const Recipe& recipe);

// CheckGptqExportable
//
// CheckRecipeGptqExportable, then, for a diagonal recipe, that every site of
// `model` folds its transform (SiteIsFolded; a diagonal folds at every site,
// into F32 norm gains, v_proj rows, tied across grouped query heads, and
// up_proj rows): FailedPrecondition naming the first site that would stay
// online. OK means the export of the output can only fail on a grid it
// cannot hold (an asymmetric zero point of -8) or I/O.
absl::Status CheckGptqExportable(const LlamaModel& model, const Recipe& recipe);

struct GptqExportOptions {
  // Largest shard, in bytes of tensor data. 0 (default): like the source:
  // one file when the source is one file, else the source's largest shard.
  uint64_t max_shard_bytes = 0;
  // Replace an existing export directory. Default false: AlreadyExists.
  bool replace = false;
};

// What ExportGptqLayout wrote.
struct GptqExportSummary {
  WeightQuantOptions weights;      // The grid (4 bits, group size, symmetric).
  int64_t linears = 0;             // Linears rewritten in GPTQ layout.
  int64_t copied_tensors = 0;      // Tensors copied unchanged.
  uint64_t data_bytes = 0;         // Tensor data written, in bytes.
  std::vector<std::string> files;  // Every file of the export, sorted.
};

// ExportGptqLayout
//
// Writes the GPTQ layout of the catq output `output_dir` into `export_dir`
// (which may lie inside it: the service writes `<output>/gptq`). The
// directory appears atomically: on any error nothing is left at
// `export_dir`. Errors:
//   - FailedPrecondition naming the first site ("model.layers.0.attn_in")
//     whose quantization_config.catq.sites entry has "online": true;
//   - FailedPrecondition naming the tensor for a grid GPTQ v1 cannot hold:
//     an asymmetric zero point of -8 (`<m>.weight_zero_point`, row and group;
//     v1 stores zero + 7 in 4 bits), a scale that is not an F16 value
//     (`<m>.weight_scale`), a linear stored as a float `<m>.weight`;
//   - InvalidArgument naming weights.bits for an 8-bit output (the export
//     writes 4-bit GPTQ words only);
//   - InvalidArgument from reading the output (a quantization_config that is
//     not catq's, e.g. weights of other than 4, 6 or 8 bits, naming the field; a
//     missing or malformed tensor, naming it), DataLoss for packed values
//     outside the grid;
//   - AlreadyExists for an existing `export_dir` without options.replace;
//     I/O errors from `env`.
absl::StatusOr<GptqExportSummary> ExportGptqLayout(Env* env, const std::string& output_dir,
                                                   const std::string& export_dir,
                                                   const GptqExportOptions& options);

// ExportGptqLayout with the default options.
absl::Status ExportGptqLayout(Env* env, const std::string& output_dir,
                              const std::string& export_dir);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_GPTQ_EXPORT_H_
