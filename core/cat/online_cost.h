// File: core/cat/online_cost.h
//
// What a site's online transform costs at inference, in multiply-accumulates
// (MACs) per token, and the yardstick it is measured against: the MACs per
// token of all of the model's quantized linears. cat-auto
// (core/cat/block_size_choice.h) spends a budget on this ratio.
//
//   block factor  sum over blocks of size^2: d*k when k divides d, a smaller
//                 last block of r channels adds r^2 (architecture.md 4);
//                 k = 1 is a diagonal, d MACs; no block factor, 0
//   mixing        d = 2^a q (MixingMatrix): a fast Walsh-Hadamard transform
//                 of order 2^a on each of q strides, d*a, plus a q x q
//                 matmul on each of the 2^a groups, d*q when q > 1:
//                 d*(a + q), or d*log2(d) for a power of two
//   folded        a diagonal folded into its producer costs nothing
//
//   const int64_t macs = SiteOnlineMacs(172, 32, /*mixing_q=*/43, /*folded=*/false);
//   // 5 * 32^2 + 12^2 + 172 * (2 + 43) = 13004
//   const double relative = double(total_site_macs) / LinearMacsPerToken(config);
//
// Thread-safety: pure functions.
#ifndef CATQ_CORE_CAT_ONLINE_COST_H_
#define CATQ_CORE_CAT_ONLINE_COST_H_

#include <cstdint>

#include "core/model/llama_config.h"

namespace catq {

// BlockFactorMacs: sum of the squared block sizes of BlockPartition(dim, k);
// 0 when block_size is 0 (no block factor). REQUIRES: dim >= 1, block_size >= 0.
int64_t BlockFactorMacs(int64_t dim, int64_t block_size);

// MixingMacs: dim * (log2(dim / q) + (q > 1 ? q : 0)); 0 when mixing_q is 0
// (no mixing). REQUIRES: mixing_q 0, or q divides dim with dim / q a power
// of two.
int64_t MixingMacs(int64_t dim, int64_t mixing_q);

// SiteOnlineMacs: the site's transform per token: 0 when folded, else
// BlockFactorMacs + MixingMacs.
int64_t SiteOnlineMacs(int64_t dim, int64_t block_size, int64_t mixing_q, bool folded);

// LinearMacsPerToken: sum over layers and the seven linears of in * out.
int64_t LinearMacsPerToken(const LlamaConfig& config);

}  // namespace catq

#endif  // CATQ_CORE_CAT_ONLINE_COST_H_
