#include "core/output/site_quantizer.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/cat/block_cat.h"
#include "core/cat/block_size_choice.h"
#include "core/cat/calibration.h"
#include "core/cat/folded_norm_weights.h"
#include "core/cat/sqnr_analysis.h"
#include "core/cat/weight_moments.h"
#include "core/quant/gptq.h"
#include "core/quant/rtn.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// A full Sx costs two d x d eigendecompositions for A_max; above this width
// the report leaves A_max out.
constexpr int64_t kMaxDimForMaxAlignment = 4096;

std::vector<Eigen::Ref<const RowMatrixXf>> Views(const std::vector<RowMatrixXf>& weights) {
  return std::vector<Eigen::Ref<const RowMatrixXf>>(weights.begin(), weights.end());
}

MixingOptions MixingFor(const Recipe& recipe) {
  MixingOptions mixing;
  mixing.seed = recipe.mixing_seed;
  return mixing;
}

bool NeedsMixing(const Recipe& recipe) {
  return recipe.method == Method::kHadamard ||
         (recipe.method == Method::kCat && recipe.cat_hadamard);
}

// The diagonal blocks of E[x x^T] for the block CAT partition of `recipe`:
// from the full Sx, or from blocks of a multiple of k (cat-auto's smaller k).
absl::StatusOr<std::vector<Eigen::MatrixXd>> SecondMomentBlocks(const SiteStatistics& stats,
                                                                const BlockPartition& partition) {
  return SecondMomentBlocksFor(stats, partition);
}

// The recipe's diagonal with one entry per group of `groups`
// (tied_diagonal.h): block CAT k = 1 from the diagonals of Sx and Sw, or
// SmoothQuant from the groups' maxima.
absl::StatusOr<SiteTransformResult> SolveTiedDiagonal(const Recipe& recipe,
                                                      const SiteWeights& weights,
                                                      const SiteStatistics& stats,
                                                      const ChannelGroups& groups) {
  const std::vector<Eigen::Ref<const RowMatrixXf>> views = Views(weights.weights);
  if (recipe.method == Method::kSmoothQuant) {
    if (!stats.has_channel_absmax()) {
      return absl::InvalidArgumentError(
          "smoothquant needs the per-channel activation maxima (.absmax) in the statistics");
    }
    CATQ_ASSIGN_OR_RETURN(const Eigen::VectorXd weight_absmax, WeightColumnAbsMax(views));
    CATQ_ASSIGN_OR_RETURN(const Eigen::VectorXd t,
                          TiedSmoothQuantDiagonal(stats.channel_absmax(), weight_absmax, groups,
                                                  recipe.smoothquant_alpha));
    CATQ_ASSIGN_OR_RETURN(SiteTransform transform, SiteTransform::CreateDiagonal(t, std::nullopt));
    return SiteTransformResult{std::move(transform), std::nullopt};
  }
  CATQ_ASSIGN_OR_RETURN(const BlockPartition channels, BlockPartition::Create(weights.dim(), 1));
  CATQ_ASSIGN_OR_RETURN(const std::vector<Eigen::MatrixXd> sx, SecondMomentBlocks(stats, channels));
  CATQ_ASSIGN_OR_RETURN(const std::vector<Eigen::MatrixXd> sw,
                        WeightSecondMomentBlocks(
                            views, 1, {.normalize_by_frobenius = recipe.normalize_weight_moments}));
  Eigen::VectorXd sx_diagonal(weights.dim());
  Eigen::VectorXd sw_diagonal(weights.dim());
  for (int64_t c = 0; c < weights.dim(); ++c) {
    sx_diagonal(c) = sx[static_cast<size_t>(c)](0, 0);
    sw_diagonal(c) = sw[static_cast<size_t>(c)](0, 0);
  }
  BlockCatOptions options;
  options.damping = recipe.damping;
  options.eigen_clip = recipe.eigen_clip;
  CATQ_ASSIGN_OR_RETURN(TiedDiagonal tied,
                        SolveTiedDiagonalCat(sx_diagonal, sw_diagonal, groups, options));
  CATQ_ASSIGN_OR_RETURN(SiteTransform transform,
                        SiteTransform::CreateDiagonal(tied.t, std::nullopt));
  return SiteTransformResult{std::move(transform), std::move(tied.report)};
}

// The recipe's transform of the site, with the block CAT report when solved.
absl::StatusOr<SiteTransformResult> SolveSiteTransform(const Recipe& recipe,
                                                       const SiteWeights& weights,
                                                       const SiteStatistics* stats) {
  if (weights.tied_channels.has_value() && RecipeTransformIsDiagonal(recipe)) {
    return SolveTiedDiagonal(recipe, weights, *stats, *weights.tied_channels);
  }
  SiteTransformInputs inputs;
  inputs.dim = weights.dim();
  inputs.eigen_clip = recipe.eigen_clip;
  inputs.mixing = MixingFor(recipe);
  std::vector<Eigen::MatrixXd> sx_blocks;
  std::vector<Eigen::MatrixXd> sw_blocks;
  const std::vector<Eigen::Ref<const RowMatrixXf>> views = Views(weights.weights);
  if (recipe.method == Method::kCat) {
    CATQ_ASSIGN_OR_RETURN(BlockPartition partition,
                          BlockPartition::Create(inputs.dim, recipe.block_size));
    CATQ_ASSIGN_OR_RETURN(sx_blocks, SecondMomentBlocks(*stats, partition));
    CATQ_ASSIGN_OR_RETURN(
        sw_blocks,
        WeightSecondMomentBlocks(views, partition.block_size(),
                                 {.normalize_by_frobenius = recipe.normalize_weight_moments}));
    inputs.sx_blocks = sx_blocks;
    inputs.sw_blocks = sw_blocks;
  }
  if (recipe.method == Method::kSmoothQuant) {
    if (!stats->has_channel_absmax()) {
      return absl::InvalidArgumentError(
          "smoothquant needs the per-channel activation maxima (.absmax) in the statistics");
    }
    inputs.activation_absmax = stats->channel_absmax();
    CATQ_ASSIGN_OR_RETURN(inputs.weight_absmax, WeightColumnAbsMax(views));
  }
  return MakeSiteTransform(recipe, inputs);
}

// H = T Sx T^T, the Hessian of the transformed inputs (cat-method.md 4).
absl::StatusOr<Eigen::MatrixXd> TransformedHessian(const SiteTransform& transform,
                                                   const SiteStatistics& stats) {
  if (!stats.is_full()) {
    return absl::InvalidArgumentError(
        "gptq needs the full Sx of the site (statistics with block_size 0)");
  }
  CATQ_ASSIGN_OR_RETURN(Eigen::MatrixXd sx, stats.SecondMomentFull());
  RowMatrixXd h = sx;                                        // rows: Sx_i
  CATQ_RETURN_IF_ERROR(transform.ApplyToActivations(h));     // Sx T^T
  RowMatrixXd t_sx = h.transpose();                          // T Sx
  CATQ_RETURN_IF_ERROR(transform.ApplyToActivations(t_sx));  // T Sx T^T
  return Eigen::MatrixXd(t_sx);
}

struct QuantizedLinear {
  PackedLinear packed;
  RowMatrixXf dequantized;  // what the stored tensors decode to, when asked for
};

using Clock = std::chrono::steady_clock;

// Seconds since `start`; restarts it, so consecutive calls time consecutive
// stages.
double Lap(Clock::time_point& start) {
  const Clock::time_point now = Clock::now();
  const double seconds = std::chrono::duration<double>(now - start).count();
  start = now;
  return seconds;
}

// RTN, or GPTQ with `hessian`; scales rounded to their storage dtype first.
// The dequantized weight is made only when `dequantize` (to measure SQNR).
absl::StatusOr<QuantizedLinear> QuantizeLinear(const Recipe& recipe, const std::string& module,
                                               const RowMatrixXf& w, const Eigen::MatrixXd* hessian,
                                               bool dequantize, StageSeconds& stages) {
  Clock::time_point lap = Clock::now();
  const ScaleRounding rounding = StorageScaleRounding(recipe.scale_dtype);
  absl::StatusOr<QuantizedWeight> qw;
  if (recipe.weight_quantizer == WeightQuantizer::kRtn) {
    qw = QuantizeRtn(w, recipe.weights, rounding);
  } else {
    GptqOptions gptq;
    gptq.damping = recipe.gptq_damping;
    gptq.act_order = recipe.gptq_act_order;
    gptq.static_groups = recipe.gptq_act_order;  // act order with groups needs them
    qw = QuantizeGptq(w, *hessian, recipe.weights, gptq, rounding);
  }
  CATQ_RETURN_IF_ERROR(Prefix(module, qw.status()));
  stages.quantize += Lap(lap);
  QuantizedLinear result;
  CATQ_ASSIGN_OR_RETURN(result.packed, PackQuantizedLinear(module, w, *qw, recipe.scale_dtype));
  if (dequantize) result.dequantized = Dequantize(*qw);
  stages.pack += Lap(lap);
  return result;
}

SqnrOptions SqnrOptionsFor(const Recipe& recipe, int64_t dim) {
  SqnrOptions options;
  options.weights = recipe.weights;
  options.activation_bits = recipe.activation_bits;
  options.activation_symmetric = recipe.activation_symmetric;
  options.compute_max_alignment = dim <= kMaxDimForMaxAlignment;
  return options;
}

std::string TransformName(const Recipe& recipe) {
  switch (recipe.method) {
    case Method::kRtn:
      return "identity";
    case Method::kSmoothQuant:
      return "smoothquant";
    case Method::kHadamard:
      return "hadamard";
    case Method::kCat:
      return "cat";
  }
  return "identity";
}

void FillTransformReport(const Recipe& recipe, const SiteTransformResult& solved,
                         SiteReport& report) {
  const SiteTransform& t = solved.transform;
  report.transform = TransformName(recipe);
  report.block_size = t.block_size();
  report.mixing_q = t.has_mixing() ? t.mixing()->q() : 0;
  // Block CAT's solve measured cond(T) already (one SVD per block); the
  // other transforms are diagonal, mixing only or the identity, whose
  // ConditionNumber needs no SVD.
  report.condition =
      solved.cat_report.has_value() ? solved.cat_report->condition : t.ConditionNumber();
  if (solved.cat_report.has_value()) {
    report.max_inverse_residual = solved.cat_report->max_inverse_residual;
    report.damped_blocks = solved.cat_report->damped_blocks;
    report.clipped_blocks = solved.cat_report->clipped_blocks;
    report.identity_blocks = solved.cat_report->identity_blocks;
  }
}

// SQNR before (W on x) and after (W T^-1 on T x) on the samples, per linear
// and for the site.
absl::Status MeasureSqnr(const Recipe& recipe, const SiteWeights& weights,
                         const std::vector<RowMatrixXf>& transformed,
                         const std::vector<RowMatrixXf>& dequantized,
                         const SiteTransform& transform, const RowMatrixXf& samples,
                         SiteResult& result) {
  const SqnrOptions options = SqnrOptionsFor(recipe, weights.dim());
  CATQ_ASSIGN_OR_RETURN(SiteSqnrReport before,
                        AnalyzeSite(Views(weights.weights), samples, options));
  RowMatrixXf mixed = samples;
  CATQ_RETURN_IF_ERROR(transform.ApplyToActivations(mixed));
  CATQ_ASSIGN_OR_RETURN(SiteSqnrReport after,
                        AnalyzeSite(Views(transformed), mixed, options, dequantized));
  for (size_t i = 0; i < result.linears.size(); ++i) {
    result.linears[i].sqnr_before = before.linears[i];
    result.linears[i].sqnr_after = after.linears[i];
  }
  result.report.sqnr_before = before.sum;
  result.report.sqnr_after = after.sum;
  result.report.sample_tokens = samples.rows();
  return absl::OkStatus();
}

SiteRecord RecordOf(const SiteWeights& weights, const SiteTransform& transform) {
  SiteRecord record;
  record.layer = static_cast<int>(weights.layer);
  record.site = std::string(SiteName(weights.site));
  record.online = !transform.is_identity();
  record.hadamard = transform.has_mixing();
  record.block_size = static_cast<int>(transform.block_size());
  record.folded = false;
  return record;
}

absl::StatusOr<SiteResult> QuantizeSiteUnprefixed(const Recipe& recipe, SiteWeights& weights,
                                                  const SiteStatistics* stats,
                                                  const RowMatrixXf* samples,
                                                  const SiteQuantizeOptions& options) {
  const Clock::time_point start = Clock::now();
  Clock::time_point lap = start;
  StageSeconds stages;
  if (weights.weights.empty()) return absl::InvalidArgumentError("no weights read the site");
  const int64_t dim = weights.dim();  // the loop below may free the weights
  if (stats == nullptr && RecipeNeedsStatistics(recipe)) {
    return absl::InvalidArgumentError(
        absl::StrCat("method ", MethodName(recipe.method), " with the ",
                     WeightQuantizerName(recipe.weight_quantizer),
                     " weight quantizer needs calibration statistics"));
  }
  if (stats != nullptr && stats->dim() != weights.dim()) {
    return absl::InvalidArgumentError(
        absl::StrCat("statistics have dim ", stats->dim(), ", the site's weights ", weights.dim()));
  }
  CATQ_ASSIGN_OR_RETURN(SiteTransformResult solved, SolveSiteTransform(recipe, weights, stats));
  const SiteTransform& transform = solved.transform;
  std::optional<Eigen::MatrixXd> hessian;
  if (recipe.weight_quantizer == WeightQuantizer::kGptq) {
    CATQ_ASSIGN_OR_RETURN(hessian, TransformedHessian(transform, *stats));
  }
  stages.solve = Lap(lap);
  SiteResult result;
  result.record = RecordOf(weights, transform);
  if (weights.fold_diagonal && transform.is_diagonal() && !transform.is_identity()) {
    CATQ_ASSIGN_OR_RETURN(result.folded_diagonal, transform.DiagonalOfT());
    result.record.online = false;
    result.record.folded = true;
  } else {
    result.online = transform.ExportTensors();
  }
  // The transformed and dequantized weights are kept only to measure SQNR on
  // the samples: on a 7B-wide site they are as large as its weights, twice.
  const bool measure = samples != nullptr && samples->rows() > 0;
  std::vector<RowMatrixXf> transformed;
  std::vector<RowMatrixXf> dequantized;
  for (size_t i = 0; i < weights.weights.size(); ++i) {
    // Without samples the original weight is not needed again: transform it
    // in place and let it go once quantized, so that a site never holds a
    // second copy of a weight (on a 7B-wide site, 172 MB per linear).
    RowMatrixXf w;
    if (measure) {
      CATQ_ASSIGN_OR_RETURN(w, transform.TransformWeight(weights.weights[i]));
    } else {
      CATQ_RETURN_IF_ERROR(transform.TransformWeightInPlace(weights.weights[i]));
      w = std::move(weights.weights[i]);
    }
    stages.quantize += Lap(lap);
    if (options.keep_transformed) result.transformed.push_back(w);
    CATQ_ASSIGN_OR_RETURN(
        QuantizedLinear quantized,
        QuantizeLinear(recipe, weights.modules[i], w, hessian.has_value() ? &*hessian : nullptr,
                       measure || options.keep_dequantized, stages));
    lap = Clock::now();
    PackedLinear& packed = quantized.packed;
    if (options.keep_dequantized) result.dequantized.push_back(quantized.dequantized);
    if (measure) dequantized.push_back(std::move(quantized.dequantized));
    LinearReport linear;
    linear.module = weights.modules[i];
    linear.layer = weights.layer;
    linear.site = std::string(SiteName(weights.site));
    linear.rows = w.rows();
    linear.cols = w.cols();
    linear.weight_sqnr_db = packed.weight_sqnr_db;
    linear.max_error_steps = packed.max_error_steps;
    result.linears.push_back(std::move(linear));
    result.packed.push_back(std::move(packed));
    if (measure) transformed.push_back(std::move(w));
  }
  result.report.key = SiteQualifiedName(weights.layer, weights.site);
  result.report.layer = weights.layer;
  result.report.site = std::string(SiteName(weights.site));
  result.report.dim = dim;
  lap = Clock::now();
  FillTransformReport(recipe, solved, result.report);
  stages.solve += Lap(lap);
  if (measure) {
    CATQ_RETURN_IF_ERROR(
        MeasureSqnr(recipe, weights, transformed, dequantized, transform, *samples, result));
  }
  stages.measure = Lap(lap);
  result.report.stages = stages;
  result.report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace

std::vector<LinearKind> LinearsOfSite(Site site) {
  std::vector<LinearKind> kinds;
  for (LinearKind kind : kAllLinearKinds) {
    if (SiteOfLinear(kind) == site) kinds.push_back(kind);
  }
  return kinds;
}

absl::StatusOr<SiteWeights> ReadSiteWeights(const LlamaModel& model, int64_t layer, Site site,
                                            const Recipe& recipe) {
  SiteWeights weights;
  weights.layer = layer;
  weights.site = site;
  weights.kinds = LinearsOfSite(site);
  const std::optional<NormKind> norm = SitePrecedingNorm(site);
  std::vector<float> gain;
  if (recipe.fold_norm_gains && norm.has_value()) {
    CATQ_ASSIGN_OR_RETURN(gain, model.GetFloat(NormWeightName(layer, *norm)));
  }
  for (LinearKind kind : weights.kinds) {
    CATQ_ASSIGN_OR_RETURN(RowMatrixXf w, model.LinearWeight(layer, kind));
    // A job reads each linear once, so its mapped bytes need not stay
    // resident: without this a worker's memory grows by the whole model's
    // size over a job, one layer's weights at a time.
    CATQ_RETURN_IF_ERROR(model.tensors().ReleaseTensor(LinearWeightName(layer, kind)));
    if (!gain.empty()) {
      CATQ_RETURN_IF_ERROR(Prefix(NormWeightName(layer, *norm), FoldNormGainIntoColumns(gain, w)));
    }
    weights.modules.push_back(LinearModuleName(layer, kind));
    weights.weights.push_back(std::move(w));
  }
  return weights;
}

bool RecipeNeedsStatistics(const Recipe& recipe) {
  return recipe.method == Method::kSmoothQuant || recipe.method == Method::kCat ||
         recipe.weight_quantizer == WeightQuantizer::kGptq || recipe.allocates_bits();
}

absl::StatusOr<SiteResult> QuantizeSite(const Recipe& recipe, SiteWeights weights,
                                        const SiteStatistics* stats, const RowMatrixXf* samples,
                                        const SiteQuantizeOptions& options) {
  absl::StatusOr<SiteResult> result =
      QuantizeSiteUnprefixed(recipe, weights, stats, samples, options);
  if (!result.ok()) {
    return Prefix(SiteQualifiedName(weights.layer, weights.site), result.status());
  }
  return result;
}

bool RecipeTransformIsDiagonal(const Recipe& recipe) {
  if (recipe.method == Method::kSmoothQuant) return true;
  if (recipe.method != Method::kCat || recipe.cat_hadamard) return false;
  // A resolved cat-auto recipe has a setting for every site; block_size is
  // then only the largest candidate.
  if (!recipe.is_auto() && recipe.block_size != 1) return false;
  if (recipe.is_auto() && recipe.site_settings.empty()) return false;
  for (const SiteSetting& setting : recipe.site_settings) {
    if (setting.block_size != 1) return false;
  }
  return true;
}

bool SiteFoldsDiagonal(const Recipe& recipe, const LlamaConfig& config, Site site) {
  return RecipeTransformIsDiagonal(recipe);
}

std::optional<ChannelGroups> TiedChannelsForFolding(const LlamaConfig& config, Site site) {
  if (site != Site::kAttnOut || config.num_key_value_heads == config.num_attention_heads) {
    return std::nullopt;
  }
  return AttentionOutputGroups(config.num_attention_heads, config.num_key_value_heads,
                               config.head_dim());
}

absl::StatusOr<std::vector<TensorSpec>> PlanSiteTransformSpecs(const Recipe& recipe, int64_t layer,
                                                               Site site, int64_t dim,
                                                               bool folded) {
  if (folded) return std::vector<TensorSpec>();
  if (!recipe.site_settings.empty()) {
    return PlanSiteTransformSpecs(recipe.ForSite(layer, site), layer, site, dim, folded);
  }
  const std::string prefix = absl::StrCat("model.layers.", layer, ".catq.", SiteName(site));
  std::vector<TensorSpec> specs;
  if (recipe.method == Method::kSmoothQuant) {
    specs.push_back({absl::StrCat(prefix, ".blocks"), DType::kF32, {dim, 1, 1}});
  }
  if (recipe.method == Method::kCat) {
    CATQ_ASSIGN_OR_RETURN(BlockPartition partition, BlockPartition::Create(dim, recipe.block_size));
    const int64_t k = partition.block_size();
    specs.push_back(
        {absl::StrCat(prefix, ".blocks"), DType::kF32, {partition.num_full_blocks(), k, k}});
    if (partition.tail_size() > 0) {
      const int64_t r = partition.tail_size();
      specs.push_back({absl::StrCat(prefix, ".blocks_tail"), DType::kF32, {r, r}});
    }
  }
  if (NeedsMixing(recipe)) {
    CATQ_ASSIGN_OR_RETURN(MixingMatrix mixing, MixingMatrix::Create(dim, MixingFor(recipe)));
    if (mixing.q() > 1) {
      specs.push_back({absl::StrCat(prefix, ".rot_q"), DType::kF32, {mixing.q(), mixing.q()}});
    }
  }
  return specs;
}

}  // namespace catq
