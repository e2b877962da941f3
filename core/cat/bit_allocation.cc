#include "core/cat/bit_allocation.h"

#include <cstddef>

namespace catq {

BitChoice ChooseBits(absl::Span<const SiteBitOptions> sites, double average_bits) {
  BitChoice choice;
  std::vector<size_t> at(sites.size(), 0);  // per site: an index into kBitChoices
  double total_units = 0.0;
  for (const SiteBitOptions& site : sites) total_units += static_cast<double>(site.units);
  const double budget = average_bits * total_units;
  double used = static_cast<double>(kBitChoices[0]) * total_units;
  choice.budget_below_cheapest = used > budget;
  while (!choice.budget_below_cheapest) {
    size_t best = sites.size();
    double best_rate = 0.0;
    for (size_t s = 0; s < sites.size(); ++s) {
      if (at[s] + 1 >= kBitChoices.size()) continue;
      const double extra =
          static_cast<double>(sites[s].units * (kBitChoices[at[s] + 1] - kBitChoices[at[s]]));
      if (used + extra > budget) continue;
      const double rate = (sites[s].noise[at[s]] - sites[s].noise[at[s] + 1]) / extra;
      if (!(rate > 0.0)) continue;  // more bits that remove no noise are not worth any
      if (best == sites.size() || rate > best_rate) {
        best = s;
        best_rate = rate;
      }
    }
    if (best == sites.size()) break;
    used += static_cast<double>(sites[best].units *
                                (kBitChoices[at[best] + 1] - kBitChoices[at[best]]));
    ++at[best];
  }
  for (size_t s = 0; s < sites.size(); ++s) {
    choice.bits.push_back(kBitChoices[at[s]]);
    choice.noise += sites[s].noise[at[s]];
  }
  choice.average_bits = total_units > 0.0 ? used / total_units : 0.0;
  return choice;
}

}  // namespace catq
