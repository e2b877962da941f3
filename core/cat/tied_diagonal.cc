#include "core/cat/tied_diagonal.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// OK when `groups` partitions `dim` channels: ids in range, none empty.
absl::Status CheckGroups(const ChannelGroups& groups, int64_t dim) {
  if (static_cast<int64_t>(groups.of_channel.size()) != dim) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "groups: %d channels assigned, the site has %d", groups.of_channel.size(), dim));
  }
  std::vector<bool> used(static_cast<size_t>(std::max<int64_t>(groups.count, 0)), false);
  for (int64_t c = 0; c < dim; ++c) {
    const int64_t g = groups.of_channel[static_cast<size_t>(c)];
    if (g < 0 || g >= groups.count) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "groups: channel %d is in group %d, outside [0, %d)", c, g, groups.count));
    }
    used[static_cast<size_t>(g)] = true;
  }
  for (int64_t g = 0; g < groups.count; ++g) {
    if (!used[static_cast<size_t>(g)]) {
      return absl::InvalidArgumentError(absl::StrFormat("groups: group %d has no channel", g));
    }
  }
  return absl::OkStatus();
}

// Per group, the sum (kSum) or the maximum (kMax) of its channels' values.
enum class Combine { kSum, kMax };
Eigen::VectorXd CombineGroups(const Eigen::Ref<const Eigen::VectorXd>& values,
                              const ChannelGroups& groups, Combine combine) {
  Eigen::VectorXd out = Eigen::VectorXd::Zero(groups.count);
  for (Eigen::Index c = 0; c < values.size(); ++c) {
    double& slot = out(groups.of_channel[static_cast<size_t>(c)]);
    slot = combine == Combine::kSum ? slot + values(c) : std::max(slot, values(c));
  }
  return out;
}

// One value per group back to the channels.
Eigen::VectorXd Expand(const Eigen::VectorXd& per_group, const ChannelGroups& groups) {
  Eigen::VectorXd t(static_cast<Eigen::Index>(groups.of_channel.size()));
  for (Eigen::Index c = 0; c < t.size(); ++c) {
    t(c) = per_group(groups.of_channel[static_cast<size_t>(c)]);
  }
  return t;
}

}  // namespace

ChannelGroups AttentionOutputGroups(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim) {
  const int64_t heads_per_kv = num_heads / num_kv_heads;
  ChannelGroups groups;
  groups.count = num_kv_heads * head_dim;
  groups.of_channel.reserve(static_cast<size_t>(num_heads * head_dim));
  for (int64_t h = 0; h < num_heads; ++h) {
    for (int64_t j = 0; j < head_dim; ++j) {
      groups.of_channel.push_back((h / heads_per_kv) * head_dim + j);
    }
  }
  return groups;
}

absl::StatusOr<TiedDiagonal> SolveTiedDiagonalCat(
    const Eigen::Ref<const Eigen::VectorXd>& sx_diagonal,
    const Eigen::Ref<const Eigen::VectorXd>& sw_diagonal, const ChannelGroups& groups,
    const BlockCatOptions& options) {
  if (sx_diagonal.size() != sw_diagonal.size()) {
    return absl::InvalidArgumentError(absl::StrFormat("Sx has %d diagonal entries, Sw %d",
                                                      sx_diagonal.size(), sw_diagonal.size()));
  }
  CATQ_RETURN_IF_ERROR(CheckGroups(groups, sx_diagonal.size()));
  // The entries are checked per channel first: a negative one could hide in
  // a group's sum.
  for (Eigen::Index c = 0; c < sx_diagonal.size(); ++c) {
    if (!(sx_diagonal(c) >= 0.0 && sw_diagonal(c) >= 0.0) || !std::isfinite(sx_diagonal(c)) ||
        !std::isfinite(sw_diagonal(c))) {
      return absl::InvalidArgumentError(
          absl::StrFormat("channel %d: Sx %g, Sw %g; expected finite values >= 0", c,
                          sx_diagonal(c), sw_diagonal(c)));
    }
  }
  const Eigen::VectorXd x = CombineGroups(sx_diagonal, groups, Combine::kSum);
  const Eigen::VectorXd w = CombineGroups(sw_diagonal, groups, Combine::kSum);
  std::vector<Eigen::MatrixXd> sx_blocks;
  std::vector<Eigen::MatrixXd> sw_blocks;
  sx_blocks.reserve(static_cast<size_t>(groups.count));
  sw_blocks.reserve(static_cast<size_t>(groups.count));
  for (int64_t g = 0; g < groups.count; ++g) {
    sx_blocks.push_back(Eigen::MatrixXd::Constant(1, 1, x(g)));
    sw_blocks.push_back(Eigen::MatrixXd::Constant(1, 1, w(g)));
  }
  CATQ_ASSIGN_OR_RETURN(BlockCatResult solved, SolveBlockCat(sx_blocks, sw_blocks, options));
  Eigen::VectorXd per_group(groups.count);
  for (int64_t g = 0; g < groups.count; ++g) per_group(g) = solved.blocks[g](0, 0);
  return TiedDiagonal{Expand(per_group, groups), std::move(solved.report)};
}

absl::StatusOr<Eigen::VectorXd> TiedSmoothQuantDiagonal(
    const Eigen::Ref<const Eigen::VectorXd>& activation_absmax,
    const Eigen::Ref<const Eigen::VectorXd>& weight_absmax, const ChannelGroups& groups,
    double alpha) {
  // The channels checked first, naming the bad one: a NaN or a negative
  // entry would vanish in its group's maximum.
  CATQ_RETURN_IF_ERROR(SmoothQuantDiagonal(activation_absmax, weight_absmax, alpha).status());
  CATQ_RETURN_IF_ERROR(CheckGroups(groups, activation_absmax.size()));
  CATQ_ASSIGN_OR_RETURN(
      const Eigen::VectorXd per_group,
      SmoothQuantDiagonal(CombineGroups(activation_absmax, groups, Combine::kMax),
                          CombineGroups(weight_absmax, groups, Combine::kMax), alpha));
  return Expand(per_group, groups);
}

absl::StatusOr<Eigen::VectorXd> TiedGroupValues(const Eigen::Ref<const Eigen::VectorXd>& t,
                                                const ChannelGroups& groups) {
  CATQ_RETURN_IF_ERROR(CheckGroups(groups, t.size()));
  Eigen::VectorXd values(groups.count);
  std::vector<bool> seen(static_cast<size_t>(groups.count), false);
  for (Eigen::Index c = 0; c < t.size(); ++c) {
    const int64_t g = groups.of_channel[static_cast<size_t>(c)];
    if (!seen[static_cast<size_t>(g)]) {
      values(g) = t(c);
      seen[static_cast<size_t>(g)] = true;
    } else if (t(c) != values(g)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "channel %d holds %g, another channel of its group %d holds %g", c, t(c), g, values(g)));
    }
  }
  return values;
}

}  // namespace catq
