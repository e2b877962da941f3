// File: core/cat/bit_allocation.h
//
// Mixed precision's choice of bits per site (issue 10, "Bit allocation"):
// each site picks its weight bits, and separately its activation bits, from
// {4, 6, 8} so that the average over the quantized linears, weighted by each
// site's cost units (the parameters of the linears reading it: for weights
// their size, for activations their MACs per token, the same number), is at
// most a budget, and the predicted noise summed over linears is smallest.
//
// The objective is block_size_choice.h's: relative noise powers (1 / SQNR)
// add through a network to first order, so the choice maximizes the
// predicted noise removed, not a sum of dB. The noise of a linear at b bits
// is cat-method.md section 1's prediction, rho / (12 N(b)^2 d A_l) per side
// (core/cat/block_size_choice.h, PredictBaselineNoise), so a site's options
// differ only in N(b).
//
// The solve: every site starts at 4 bits; then, while the budget allows,
// the next step (4 -> 6 or 6 -> 8) with the largest noise removed per extra
// bit-unit is taken; a step that does not fit is passed over for cheaper
// ones. Deterministic: ties go to the earlier site.
//
//   std::vector<SiteBitOptions> sites = ...;  // noise at 4, 6, 8 bits per site
//   BitChoice choice = ChooseBits(sites, 5.0);  // choice.bits[s] in {4, 6, 8}
//
// Thread-safety: pure functions.
#ifndef CATQ_CORE_CAT_BIT_ALLOCATION_H_
#define CATQ_CORE_CAT_BIT_ALLOCATION_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace catq {

// The widths a site may get, ascending.
inline constexpr std::array<int, 3> kBitChoices = {4, 6, 8};

// One site's options: its cost units and its predicted noise (summed over
// the linears reading it) at each of kBitChoices.
struct SiteBitOptions {
  int64_t units = 0;  // >= 1
  std::array<double, kBitChoices.size()> noise{};
};

struct BitChoice {
  std::vector<int> bits;               // per site, in kBitChoices
  double average_bits = 0.0;           // sum units * bits / sum units
  double noise = 0.0;                  // predicted noise summed over the sites
  bool budget_below_cheapest = false;  // budget < 4: every site got 4 bits
};

// ChooseBits: the choice above under an average of `average_bits`.
// REQUIRES: every site has units >= 1.
BitChoice ChooseBits(absl::Span<const SiteBitOptions> sites, double average_bits);

}  // namespace catq

#endif  // CATQ_CORE_CAT_BIT_ALLOCATION_H_
