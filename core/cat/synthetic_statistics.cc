// Random site activations summed into SiteStatistics (see the header).
#include "core/cat/synthetic_statistics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cat/site_statistics.h"
#include "core/math/eigen_types.h"
#include "core/model/gaussian.h"
#include "core/model/llama_weights.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// Shared factors per token: enough to make the blocks far from diagonal (so
// the solve has real alignment to find), few enough to stay cheap.
constexpr int kSharedFactors = 2;

absl::Status CheckOptions(const SyntheticStatisticsOptions& options) {
  if (options.block_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_size: must be >= 0, got ", options.block_size));
  }
  if (options.tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("tokens: must be >= 1, got ", options.tokens));
  }
  if (options.outlier_channels < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("outlier_channels: must be >= 0, got ", options.outlier_channels));
  }
  if (!(options.outlier_scale > 0.0f) || !std::isfinite(options.outlier_scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("outlier_scale: must be finite and > 0, got ", options.outlier_scale));
  }
  return absl::OkStatus();
}

// Activations [tokens, dim]: x_tj = s_j (z_tj + sum_r a_jr c_tr), with
// log-normal channel scales s_j (outlier channels times outlier_scale) and
// standard normal z, a and c.
RowMatrixXf DrawActivations(const SyntheticStatisticsOptions& options, int64_t dim,
                            GaussianGenerator& gen) {
  Eigen::VectorXf scale(dim);
  for (int64_t j = 0; j < dim; ++j) scale[j] = static_cast<float>(std::exp(0.8 * gen.Normal()));
  const int64_t outliers = std::min(options.outlier_channels, dim);
  for (int64_t i = 0; i < outliers; ++i) scale[gen.Below(dim)] *= options.outlier_scale;
  Eigen::MatrixXf loading(dim, kSharedFactors);
  for (int64_t j = 0; j < dim; ++j) {
    for (int r = 0; r < kSharedFactors; ++r) loading(j, r) = static_cast<float>(gen.Normal());
  }
  RowMatrixXf x(options.tokens, dim);
  for (int64_t t = 0; t < options.tokens; ++t) {
    float factor[kSharedFactors];
    for (float& f : factor) f = static_cast<float>(gen.Normal());
    for (int64_t j = 0; j < dim; ++j) {
      float v = static_cast<float>(gen.Normal());
      for (int r = 0; r < kSharedFactors; ++r) v += loading(j, r) * factor[r];
      x(t, j) = scale[j] * v;
    }
  }
  return x;
}

}  // namespace

absl::Status WriteSyntheticSiteStatistics(Env* env, const LlamaConfig& config,
                                          const SyntheticStatisticsOptions& options,
                                          const std::string& path) {
  CATQ_RETURN_IF_ERROR(CheckOptions(options));
  std::map<std::string, SiteStatistics> sites;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (size_t s = 0; s < kAllSites.size(); ++s) {
      const Site site = kAllSites[s];
      const int64_t dim = SiteDim(config, site);
      GaussianGenerator gen(MixSeed(options.seed, static_cast<uint64_t>(4 * layer) + s));
      const RowMatrixXf x = DrawActivations(options, dim, gen);
      // One batch: the conversion buffer needs no more rows than it has.
      CATQ_ASSIGN_OR_RETURN(
          SiteStatistics stats,
          SiteStatistics::Create(dim, {.block_size = options.block_size,
                                       .chunk_rows = std::min<int64_t>(options.tokens, 256)}));
      CATQ_RETURN_IF_ERROR(stats.Accumulate(x));
      sites.emplace(SiteQualifiedName(layer, site), std::move(stats));
    }
  }
  return WriteSiteStatistics(env, path, sites);
}

}  // namespace catq
