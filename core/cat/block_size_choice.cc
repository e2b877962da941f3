#include "core/cat/block_size_choice.h"

#include <Eigen/LU>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/cat/weight_moments.h"
#include "core/model/gaussian.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// sum_b tr(M_b^T S_b M_b) = sum_b sum((S_b M_b) .* M_b): the trace of
// M^T S M over a block-diagonal M from the diagonal blocks of S.
double BlockTrace(absl::Span<const Eigen::MatrixXd> s, absl::Span<const Eigen::MatrixXd> m,
                  bool transpose_m) {
  double trace = 0.0;
  for (size_t b = 0; b < s.size(); ++b) {
    const Eigen::MatrixXd& mb = m[b];
    if (transpose_m) {
      trace += (mb * s[b]).cwiseProduct(mb).sum();  // tr(M S M^T)
    } else {
      trace += (s[b] * mb).cwiseProduct(mb).sum();  // tr(M^T S M)
    }
  }
  return trace;
}

double Trace(absl::Span<const Eigen::MatrixXd> blocks) {
  double trace = 0.0;
  for (const Eigen::MatrixXd& block : blocks) trace += block.trace();
  return trace;
}

// A point of a site's (MACs, gain) frontier.
struct Point {
  size_t option = 0;
  int64_t macs = 0;
  double gain = 0.0;
  int block_size = 0;
};

// The options no other option beats (cheaper or as cheap, and better or as
// good), by increasing MACs; the first is the site's cheapest.
std::vector<Point> Frontier(const SiteBlockSizeOptions& site) {
  std::vector<Point> points;
  for (size_t i = 0; i < site.options.size(); ++i) {
    const BlockSizeOption& o = site.options[i];
    points.push_back({i, o.macs, o.value, o.block_size});
  }
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    return std::make_tuple(a.macs, -a.gain, a.block_size) <
           std::make_tuple(b.macs, -b.gain, b.block_size);
  });
  std::vector<Point> frontier;
  for (const Point& p : points) {
    if (frontier.empty() || p.gain > frontier.back().gain) frontier.push_back(p);
  }
  return frontier;
}

// The upper concave hull of a frontier (MACs strictly increasing): the points
// where the gain per MAC of the next step falls.
std::vector<Point> UpperHull(const std::vector<Point>& frontier) {
  std::vector<Point> hull;
  for (const Point& p : frontier) {
    while (hull.size() >= 2) {
      const Point& a = hull[hull.size() - 2];
      const Point& b = hull.back();
      // b is on or below the segment a-p: slope(a, b) <= slope(b, p).
      const double left = (b.gain - a.gain) * static_cast<double>(p.macs - b.macs);
      const double right = (p.gain - b.gain) * static_cast<double>(b.macs - a.macs);
      if (left > right) break;
      hull.pop_back();
    }
    hull.push_back(p);
  }
  return hull;
}

}  // namespace

std::vector<int> CandidateBlockSizes(int64_t dim) {
  std::vector<int> sizes;
  for (int k : {1, 8, 16, 32, 64, 128}) {
    if (k <= dim) sizes.push_back(k);
  }
  if (sizes.empty() || sizes.back() != dim) sizes.push_back(static_cast<int>(dim));
  return sizes;
}

bool StatisticsServeBlockSize(const SiteStatistics& stats, int64_t block_size) {
  if (stats.is_full()) return true;
  const int64_t k = std::min(block_size, stats.dim());
  return k <= stats.block_size() && stats.block_size() % k == 0;
}

absl::StatusOr<std::vector<Eigen::MatrixXd>> SecondMomentBlocksFor(
    const SiteStatistics& stats, const BlockPartition& partition) {
  if (stats.dim() != partition.dim()) {
    return absl::InvalidArgumentError(
        absl::StrCat("statistics have dim ", stats.dim(), ", the partition ", partition.dim()));
  }
  if (stats.is_full()) {
    CATQ_ASSIGN_OR_RETURN(Eigen::MatrixXd sx, stats.SecondMomentFull());
    return ExtractDiagonalBlocks(sx, partition);
  }
  if (!StatisticsServeBlockSize(stats, partition.block_size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("statistics keep blocks of ", stats.block_size(),
                     " channels; block CAT with k = ", partition.block_size(),
                     " needs the full Sx or blocks of a multiple of ", partition.block_size()));
  }
  std::vector<Eigen::MatrixXd> blocks;
  blocks.reserve(partition.num_blocks());
  int64_t loaded = -1;
  Eigen::MatrixXd stats_block;
  for (int64_t b = 0; b < partition.num_blocks(); ++b) {
    const int64_t begin = partition.begin(b);
    const int64_t s = begin / stats.block_size();
    if (s != loaded) {
      CATQ_ASSIGN_OR_RETURN(stats_block, stats.SecondMomentBlock(s));
      loaded = s;
    }
    const int64_t offset = begin - stats.BlockRange(s).begin;
    blocks.emplace_back(stats_block.block(offset, offset, partition.size(b), partition.size(b)));
  }
  return blocks;
}

absl::StatusOr<std::vector<double>> PredictBlockCatGainsDb(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, const SiteStatistics& stats,
    int64_t block_size, const BlockGainOptions& options) {
  CATQ_ASSIGN_OR_RETURN(BlockPartition partition, BlockPartition::Create(stats.dim(), block_size));
  CATQ_ASSIGN_OR_RETURN(std::vector<Eigen::MatrixXd> sx, SecondMomentBlocksFor(stats, partition));
  CATQ_ASSIGN_OR_RETURN(
      std::vector<Eigen::MatrixXd> sw_site,
      WeightSecondMomentBlocks(weights, partition.block_size(),
                               {.normalize_by_frobenius = options.normalize_weight_moments}));
  CATQ_ASSIGN_OR_RETURN(BlockCatResult solved, SolveBlockCat(sx, sw_site, options.solve));
  std::vector<Eigen::MatrixXd> inverses;
  inverses.reserve(solved.blocks.size());
  for (const Eigen::MatrixXd& t : solved.blocks) inverses.push_back(t.partialPivLu().inverse());
  const double sx_before = Trace(sx);
  const double sx_after = BlockTrace(sx, solved.blocks, /*transpose_m=*/true);
  std::vector<double> gains;
  for (const Eigen::Ref<const RowMatrixXf>& w : weights) {
    CATQ_ASSIGN_OR_RETURN(std::vector<Eigen::MatrixXd> sw,
                          WeightSecondMomentBlocks({&w, 1}, partition.block_size()));
    const double sw_before = Trace(sw);
    const double sw_after = BlockTrace(sw, inverses, /*transpose_m=*/false);
    gains.push_back(10.0 * std::log10((sx_before * sw_before) / (sx_after * sw_after)));
  }
  return gains;
}

double GaussianSquaredRange(int64_t n, RangeKind kind) {
  constexpr int kDraws = 1024;
  GaussianGenerator gen(0x5eed0000u + static_cast<uint64_t>(n));
  std::vector<float> z(static_cast<size_t>(n));
  double sum = 0.0;
  for (int draw = 0; draw < kDraws; ++draw) {
    for (float& v : z) v = static_cast<float>(gen.Normal());
    const double r = RangeOf(z, kind);
    sum += r * r;
  }
  return sum / kDraws;
}

double GaussianSquaredRangeCache::Get(int64_t n, RangeKind kind) {
  auto [it, inserted] = values_.try_emplace({n, kind}, 0.0);
  if (inserted) it->second = GaussianSquaredRange(n, kind);
  return it->second;
}

absl::StatusOr<std::vector<double>> PredictBaselineNoise(
    absl::Span<const Eigen::Ref<const RowMatrixXf>> weights, const SiteStatistics& stats,
    const BaselineNoiseOptions& options) {
  const double d = static_cast<double>(stats.dim());
  double per_alignment = 0.0;  // rho_x / (12 N_x^2 d) + rho_w / (12 N_w^2 d)
  if (options.activation_grid.steps > 0.0) {
    per_alignment += options.activation_squared_range /
                     (12.0 * options.activation_grid.steps * options.activation_grid.steps * d);
  }
  per_alignment += options.weight_squared_range /
                   (12.0 * options.weight_grid.steps * options.weight_grid.steps * d);
  std::vector<Eigen::MatrixXd> sx_blocks;
  std::vector<ChannelRange> ranges;
  for (int64_t b = 0; b < stats.NumBlocks(); ++b) {
    CATQ_ASSIGN_OR_RETURN(Eigen::MatrixXd block, stats.SecondMomentBlock(b));
    sx_blocks.push_back(std::move(block));
    ranges.push_back(stats.BlockRange(b));
  }
  const double trace_sx = Trace(sx_blocks);
  std::vector<double> noise;
  for (const Eigen::Ref<const RowMatrixXf>& w : weights) {
    if (w.cols() != stats.dim()) {
      return absl::InvalidArgumentError(
          absl::StrCat("a weight has ", w.cols(), " columns, the statistics ", stats.dim()));
    }
    double signal = 0.0;  // tr(W Sx W^T) over the blocks held
    for (size_t b = 0; b < sx_blocks.size(); ++b) {
      const Eigen::MatrixXd wb = w.middleCols(ranges[b].begin, ranges[b].size).cast<double>();
      signal += (wb * sx_blocks[b]).cwiseProduct(wb).sum();
    }
    const double norm = w.cast<double>().squaredNorm();
    if (!(signal > 0.0) || !(norm > 0.0) || !(trace_sx > 0.0)) {
      return absl::InvalidArgumentError("an all-zero weight or site carries no signal");
    }
    noise.push_back(per_alignment * norm * trace_sx / signal);
  }
  return noise;
}

BlockSizeChoice ChooseBlockSizes(absl::Span<const SiteBlockSizeOptions> sites,
                                 int64_t budget_macs) {
  BlockSizeChoice choice;
  std::vector<std::vector<Point>> frontiers;
  std::vector<std::vector<Point>> hulls;
  std::vector<size_t> at;  // per site: its position on its hull
  for (const SiteBlockSizeOptions& site : sites) {
    frontiers.push_back(Frontier(site));
    hulls.push_back(UpperHull(frontiers.back()));
    at.push_back(0);
    choice.macs += hulls.back().front().macs;
  }
  choice.budget_below_cheapest = choice.macs > budget_macs;
  if (!choice.budget_below_cheapest) {
    // Every step of every hull, by decreasing gain per MAC.
    struct Step {
      size_t site;
      size_t from;  // hull index; the step goes to from + 1
      double slope;
      int block_size;
    };
    std::vector<Step> steps;
    for (size_t s = 0; s < hulls.size(); ++s) {
      for (size_t j = 0; j + 1 < hulls[s].size(); ++j) {
        const Point& a = hulls[s][j];
        const Point& b = hulls[s][j + 1];
        steps.push_back(
            {s, j, (b.gain - a.gain) / static_cast<double>(b.macs - a.macs), b.block_size});
      }
    }
    std::stable_sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) {
      return std::make_tuple(-a.slope, a.block_size, a.site) <
             std::make_tuple(-b.slope, b.block_size, b.site);
    });
    std::vector<bool> blocked(hulls.size(), false);
    for (const Step& step : steps) {
      if (blocked[step.site] || at[step.site] != step.from) continue;
      const int64_t extra = hulls[step.site][step.from + 1].macs - hulls[step.site][step.from].macs;
      if (choice.macs + extra > budget_macs) {
        blocked[step.site] = true;  // its later steps depend on this one
        continue;
      }
      choice.macs += extra;
      at[step.site] = step.from + 1;
    }
  }
  // What each site has now, then the leftover budget spent site by site on
  // the best frontier option it still allows (hull steps skip some).
  std::vector<Point> current;
  for (size_t s = 0; s < hulls.size(); ++s) current.push_back(hulls[s][at[s]]);
  if (!choice.budget_below_cheapest) {
    for (size_t s = 0; s < frontiers.size(); ++s) {
      for (const Point& p : frontiers[s]) {
        if (p.gain <= current[s].gain) continue;
        if (choice.macs - current[s].macs + p.macs > budget_macs) continue;
        choice.macs += p.macs - current[s].macs;
        current[s] = p;
      }
    }
  }
  for (size_t s = 0; s < current.size(); ++s) {
    choice.chosen.push_back(current[s].option);
    choice.value += current[s].gain;
    choice.gain_db += sites[s].options[current[s].option].gain_db;
  }
  return choice;
}

}  // namespace catq
