// File: core/cat/tied_diagonal.h
//
// Diagonal transforms whose entries are tied across groups of channels: one
// scale per group. What a diagonal T needs to fold into the rows of the
// linear that produces the site when several site channels read one row:
// attn_out under grouped-query attention, where channel j of every query
// head of a group is a mix of value channel j of their shared KV head, so
// scaling v_proj's row scales the channel of all those query heads alike.
//
//   const ChannelGroups groups = AttentionOutputGroups(32, 8, 128);
//   CATQ_ASSIGN_OR_RETURN(TiedDiagonal cat,
//                         SolveTiedDiagonalCat(sx_diagonal, sw_diagonal, groups, {}));
//   CATQ_ASSIGN_OR_RETURN(Eigen::VectorXd v_rows, TiedGroupValues(cat.t, groups));
//
// The tied optimum of block CAT at k = 1 (cat-method.md 2.1 and 2.3). A
// diagonal T = diag(t) maximizes the alignment
//   A = tr(Sw Sx) / (tr(T Sx T^T) * tr(T^-T Sw T^-1))
// when it minimizes the denominator (the numerator does not depend on T):
//   P(t) = (sum_j t_j^2 x_j) * (sum_j w_j / t_j^2),  x_j = (Sx)_jj, w_j = (Sw)_jj,
// so only the diagonals of Sx and Sw enter. Tie t_j = s_g for every channel j
// of group G_g and collect the terms of each group:
//   P(s) = (sum_g s_g^2 X_g) * (sum_g W_g / s_g^2),  X_g = sum_{j in G_g} x_j,
//                                                    W_g = sum_{j in G_g} w_j.
// This is the untied k = 1 problem over the groups, with the group's second
// moments summed (not the channels' scales averaged). By Cauchy-Schwarz with
// a_g = s_g sqrt(X_g) and b_g = sqrt(W_g) / s_g,
//   P(s) = (sum_g a_g^2)(sum_g b_g^2) >= (sum_g a_g b_g)^2 = (sum_g sqrt(X_g W_g))^2,
// a bound free of s, reached iff a_g is proportional to b_g, i.e.
//   s_g = c * (W_g / X_g)^(1/4)
// for any c > 0 (a common scale leaves A unchanged; c = 1 here). The tied
// A_max is tr(Sw Sx) / (sum_g sqrt(X_g W_g))^2. With one channel per group it
// is the untied x_j' = x_j (w_j / x_j)^(1/4). Block CAT's damping of a 1 x 1
// block multiplies it by (1 + lambda), on both sides, so it cancels as in the
// untied solve; the solve below is SolveBlockCat on the 1 x 1 blocks [X_g]
// and [W_g], so a group with X_g = 0 or W_g = 0 keeps s_g = 1 as an untied
// channel does, and the report counts groups as blocks.
//
// SmoothQuant has no objective to tie; its rule balances the maxima of the
// activations and the weights. One scale s for a group makes the group's
// activation maximum max_{j in G}|x_j| / s and its weight maximum
// s * max_{j in G}|W_:,j|, so the tied SmoothQuant applies the per-channel
// rule to the group's maxima (choice).
//
// Thread-safety: pure functions.
#ifndef CATQ_CORE_CAT_TIED_DIAGONAL_H_
#define CATQ_CORE_CAT_TIED_DIAGONAL_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/block_cat.h"

namespace catq {

// A partition of a site's channels into groups that share one diagonal
// entry: of_channel[c] is the group of channel c, in [0, count).
struct ChannelGroups {
  std::vector<int64_t> of_channel;
  int64_t count = 0;
};

// AttentionOutputGroups
//
// attn_out of an attention layer with `num_heads` query heads sharing
// `num_kv_heads` KV heads (query head h reads KV head h / (num_heads /
// num_kv_heads)) of `head_dim` channels each: channel h * head_dim + j is in
// group kv(h) * head_dim + j, which is the v_proj row it reads. With
// num_kv_heads == num_heads every channel is its own group. REQUIRES: all
// positive, num_kv_heads divides num_heads (ValidateLlamaConfig checks both).
ChannelGroups AttentionOutputGroups(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim);

struct TiedDiagonal {
  Eigen::VectorXd t;  // per channel, equal within each group
  // SolveBlockCat's report over the groups' 1 x 1 blocks.
  BlockCatReport report;
};

// SolveTiedDiagonalCat
//
// The alignment-optimal diagonal with one entry per group (see the file
// comment), from the diagonals of Sx and Sw (the site's 1 x 1 blocks).
// InvalidArgument for lengths that differ from each other or from
// groups.of_channel, a group id outside [0, groups.count), a group with no
// channel, and SolveBlockCat's errors (a negative or non-finite entry, bad
// options).
absl::StatusOr<TiedDiagonal> SolveTiedDiagonalCat(
    const Eigen::Ref<const Eigen::VectorXd>& sx_diagonal,
    const Eigen::Ref<const Eigen::VectorXd>& sw_diagonal, const ChannelGroups& groups,
    const BlockCatOptions& options = {});

// TiedSmoothQuantDiagonal
//
// SmoothQuantDiagonal (block_cat.h) of the groups' maxima, one entry per
// group, expanded to the channels. Errors as SolveTiedDiagonalCat's checks
// of the groups, and SmoothQuantDiagonal's.
absl::StatusOr<Eigen::VectorXd> TiedSmoothQuantDiagonal(
    const Eigen::Ref<const Eigen::VectorXd>& activation_absmax,
    const Eigen::Ref<const Eigen::VectorXd>& weight_absmax, const ChannelGroups& groups,
    double alpha);

// TiedGroupValues
//
// The one value of `t` in each group, by group id (for attn_out: v_proj's
// row scales). InvalidArgument when the lengths or groups are bad (as
// above) or two channels of a group hold different values: `t` was not tied.
absl::StatusOr<Eigen::VectorXd> TiedGroupValues(const Eigen::Ref<const Eigen::VectorXd>& t,
                                                const ChannelGroups& groups);

}  // namespace catq

#endif  // CATQ_CORE_CAT_TIED_DIAGONAL_H_
