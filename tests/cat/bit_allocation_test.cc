#include "core/cat/bit_allocation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace catq {
namespace {

// A site whose noise at b bits is base / 4^(b - 4): each 2 bits remove 15/16
// of it, as a grid with twice the steps per bit would.
SiteBitOptions Site(int64_t units, double base) {
  SiteBitOptions site;
  site.units = units;
  for (size_t i = 0; i < kBitChoices.size(); ++i) {
    site.noise[i] = base / std::pow(4.0, kBitChoices[i] - 4);
  }
  return site;
}

double Average(const std::vector<SiteBitOptions>& sites, const std::vector<int>& bits) {
  double sum = 0.0;
  double units = 0.0;
  for (size_t s = 0; s < sites.size(); ++s) {
    sum += static_cast<double>(sites[s].units * bits[s]);
    units += static_cast<double>(sites[s].units);
  }
  return sum / units;
}

TEST(ChooseBits, TheNoisiestSiteGetsMoreBitsWithinTheBudget) {
  // Four sites of equal size; site 2 is the noisiest by far.
  const std::vector<SiteBitOptions> sites = {Site(100, 1.0), Site(100, 2.0), Site(100, 50.0),
                                             Site(100, 0.5)};
  const BitChoice five = ChooseBits(sites, 5.0);
  ASSERT_EQ(five.bits.size(), 4u);
  EXPECT_EQ(five.bits, (std::vector<int>{4, 4, 8, 4}));
  EXPECT_LE(Average(sites, five.bits), 5.0);
  EXPECT_DOUBLE_EQ(five.average_bits, Average(sites, five.bits));
  EXPECT_FALSE(five.budget_below_cheapest);
  for (double budget : {4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0}) {
    const BitChoice choice = ChooseBits(sites, budget);
    EXPECT_LE(Average(sites, choice.bits), budget + 1e-12) << budget;
    // Site 2 never has fewer bits than any other site.
    for (int bits : choice.bits) EXPECT_LE(bits, choice.bits[2]) << budget;
  }
  EXPECT_EQ(ChooseBits(sites, 8.0).bits, (std::vector<int>{8, 8, 8, 8}));
  EXPECT_EQ(ChooseBits(sites, 4.0).bits, (std::vector<int>{4, 4, 4, 4}));
}

TEST(ChooseBits, NoiseRemovedPerUnitDecidesNotNoiseAlone) {
  // Site 0 is noisier in total but ten times larger: per extra bit-unit the
  // small site removes more, so it goes first (to 8 bits), and site 0's step
  // no longer fits. By noise alone site 0 would have gone to 6.
  const std::vector<SiteBitOptions> sites = {Site(1000, 4.0), Site(100, 1.0)};
  const BitChoice choice = ChooseBits(sites, 4.0 + 2000.0 / 1100.0);
  EXPECT_EQ(choice.bits, (std::vector<int>{4, 8}));
}

TEST(ChooseBits, BudgetBelowFourGivesEverySiteFourAndSaysSo) {
  const std::vector<SiteBitOptions> sites = {Site(10, 1.0), Site(10, 9.0)};
  const BitChoice choice = ChooseBits(sites, 3.0);
  EXPECT_TRUE(choice.budget_below_cheapest);
  EXPECT_EQ(choice.bits, (std::vector<int>{4, 4}));
}

TEST(ChooseBits, TiesGoToTheEarlierSite) {
  const std::vector<SiteBitOptions> sites = {Site(10, 1.0), Site(10, 1.0)};
  EXPECT_EQ(ChooseBits(sites, 5.0).bits, (std::vector<int>{6, 4}));
}

}  // namespace
}  // namespace catq
