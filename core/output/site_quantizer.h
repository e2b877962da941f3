// File: core/output/site_quantizer.h
//
// One site task (architecture.md section 2, step 4): for one activation site
// of one layer, solve the recipe's transform T from the calibration
// statistics, transform the weights reading the site (W T^-1), quantize them
// (RTN or GPTQ with the transformed Hessian T Sx T^T), pack them, and measure
// the SQNR before and after on the activation samples. The in-process
// quantizer and the workers run exactly this.
//
//   CATQ_ASSIGN_OR_RETURN(SiteWeights weights, ReadSiteWeights(model, layer, site, recipe));
//   CATQ_ASSIGN_OR_RETURN(SiteResult result,
//                         QuantizeSite(recipe, std::move(weights), &stats, &samples));
//   for (const PackedLinear& p : result.packed) ...  // one per linear, in weights' order
//
// Thread-safety: pure; concurrent calls on different sites are safe.
#ifndef CATQ_CORE_OUTPUT_SITE_QUANTIZER_H_
#define CATQ_CORE_OUTPUT_SITE_QUANTIZER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/recipe.h"
#include "core/cat/site_statistics.h"
#include "core/cat/site_transform.h"
#include "core/cat/tied_diagonal.h"
#include "core/model/llama_model.h"
#include "core/output/packed_linear.h"
#include "core/output/quantization_config.h"
#include "core/output/quantization_report.h"

namespace catq {

// The linears reading one site, as the transform sees them.
struct SiteWeights {
  int64_t layer = 0;
  Site site = Site::kAttnIn;
  std::vector<LinearKind> kinds;
  std::vector<std::string> modules;  // "model.layers.0.self_attn.q_proj", ...
  // [out, dim] float32, with the preceding norm's gain folded into the
  // columns when the recipe folds gains.
  std::vector<RowMatrixXf> weights;
  // When the recipe's transform of this site is diagonal, fold it into what
  // produces the site (SiteFoldsDiagonal) instead of storing it online.
  bool fold_diagonal = false;
  // Set when a diagonal T must take one value per group of channels to fold
  // (attn_out under grouped-query attention: AttentionOutputGroups, so v_proj
  // can carry it): the recipe's diagonal is then solved tied
  // (core/cat/tied_diagonal.h). Unset: one entry per channel.
  std::optional<ChannelGroups> tied_channels;
  int64_t dim() const { return weights.empty() ? 0 : weights[0].cols(); }
};

// LinearsOfSite: the kinds reading `site`, in kAllLinearKinds order
// (q, k, v; o; gate, up; down).
std::vector<LinearKind> LinearsOfSite(Site site);

// ReadSiteWeights: the site's weights from `model` (norm gain folded in when
// recipe.fold_norm_gains). Errors name the tensor.
absl::StatusOr<SiteWeights> ReadSiteWeights(const LlamaModel& model, int64_t layer, Site site,
                                            const Recipe& recipe);

struct SiteResult {
  SiteRecord record;  // quantization_config's entry
  // Set when the site's diagonal T was folded (record.folded): t, to be
  // multiplied into the producer (norm gain, v_proj or up_proj rows).
  std::optional<Eigen::VectorXd> folded_diagonal;
  SiteTransformTensors online;  // the tensors stored for the online transform
  std::vector<PackedLinear> packed;
  std::vector<LinearReport> linears;
  SiteReport report;
  // What the packed linears decode to, in the same order; filled only when
  // asked for (SiteQuantizeOptions): never stored, never serialized.
  std::vector<RowMatrixXf> dequantized;
  // W T^-1 before quantization (with a folded producer's rows scaled), in
  // the same order; filled only when asked for, never stored.
  std::vector<RowMatrixXf> transformed;
};

struct SiteQuantizeOptions {
  // Keep SiteResult::dequantized, for a caller that runs the quantized layer
  // (sequential calibration). Default false: a 7B-wide site's weights again.
  bool keep_dequantized = false;
  // Keep SiteResult::transformed, for a test that runs the transformed (and
  // folded) model unquantized to check it computes the original function.
  // Default false.
  bool keep_transformed = false;
};

// QuantizeSite
//
// `stats` may be null only for recipes that need none (rtn with the rtn
// weight quantizer); `samples` [tokens, dim] may be null or empty (no SQNR
// figures then). Errors (InvalidArgument, prefixed with the site key): the
// statistics do not match the site (dim, block size: block CAT with k needs
// statistics in full or with blocks of k), SmoothQuant without the channel
// maxima, GPTQ without the full Sx, and the engine's errors.
//
// It takes the weights by value so that a caller done with them can move
// them in: without samples each is then transformed in place and freed once
// quantized, so the site's memory is its weights once, not twice.
absl::StatusOr<SiteResult> QuantizeSite(const Recipe& recipe, SiteWeights weights,
                                        const SiteStatistics* stats, const RowMatrixXf* samples,
                                        const SiteQuantizeOptions& options = {});

// RecipeNeedsStatistics: whether QuantizeSite needs `stats` for `recipe`, or
// the job needs them before (mixed precision chooses bits from them).
bool RecipeNeedsStatistics(const Recipe& recipe);

// RecipeTransformIsDiagonal: whether `recipe` gives every site a diagonal T
// (SmoothQuant; block CAT with k = 1 and no mixing, for a resolved cat-auto
// recipe at every site).
bool RecipeTransformIsDiagonal(const Recipe& recipe);

// SiteFoldsDiagonal
//
// Whether a diagonal T at `site` is folded into its producer (architecture.md
// section 4). For a diagonal recipe every site folds, so its output has no
// online transform at all:
//   attn_in, mlp_in  into the preceding RMSNorm gain, which the output then
//                    stores in F32 whatever the model's norm dtype (a gain
//                    rounded to F16 or BF16 would no longer invert W T^-1;
//                    loaders accept an F32 norm);
//   attn_out         into v_proj's rows; with grouped query heads the
//                    diagonal is solved tied across each KV head's group
//                    (SiteWeights::tied_channels), so one row scale serves
//                    every query head reading it;
//   mlp_out          into up_proj's rows.
bool SiteFoldsDiagonal(const Recipe& recipe, const LlamaConfig& config, Site site);

// TiedChannelsForFolding: the groups a folded diagonal at `site` must be tied
// over, or nullopt when each channel may take its own value (every site but
// attn_out, and attn_out when each query head has its own KV head).
std::optional<ChannelGroups> TiedChannelsForFolding(const LlamaConfig& config, Site site);

// PlanSiteTransformSpecs
//
// The F32 tensor specs the site's online transform will store, known from the
// recipe (the site's own settings, Recipe::ForSite) and the site's dimension
// before anything is solved (the writer needs every spec up front). Empty for rtn and for a folded
// site. Errors from MixingMatrix::Create.
absl::StatusOr<std::vector<TensorSpec>> PlanSiteTransformSpecs(const Recipe& recipe, int64_t layer,
                                                               Site site, int64_t dim, bool folded);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_SITE_QUANTIZER_H_
