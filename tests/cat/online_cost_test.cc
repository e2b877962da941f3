#include "core/cat/online_cost.h"

#include <gtest/gtest.h>

namespace catq {
namespace {

TEST(OnlineCostTest, BlockFactorIsTheSumOfSquaredBlockSizes) {
  EXPECT_EQ(BlockFactorMacs(64, 64), 64 * 64);
  EXPECT_EQ(BlockFactorMacs(64, 16), 4 * 16 * 16);
  // 172 = 5 * 32 + 12: five blocks of 32 and a tail of 12.
  EXPECT_EQ(BlockFactorMacs(172, 32), 5 * 32 * 32 + 12 * 12);
  EXPECT_EQ(BlockFactorMacs(172, 1), 172);
  EXPECT_EQ(BlockFactorMacs(172, 1 << 30), 172 * 172);  // k >= d: full CAT
  EXPECT_EQ(BlockFactorMacs(172, 0), 0);                // no block factor
}

TEST(OnlineCostTest, MixingIsAWalshHadamardPlusTheSmallFactor) {
  EXPECT_EQ(MixingMacs(64, 1), 64 * 6);            // 2^6: d log2 d
  EXPECT_EQ(MixingMacs(172, 43), 172 * (2 + 43));  // 4 * 43: d (a + q)
  EXPECT_EQ(MixingMacs(12, 12), 12 * 12);          // a Hadamard of order 12 alone
  EXPECT_EQ(MixingMacs(172, 0), 0);                // no mixing
}

TEST(OnlineCostTest, SiteCostAddsBothFactorsAndAFoldedSiteIsFree) {
  EXPECT_EQ(SiteOnlineMacs(172, 32, 43, false), 5264 + 7740);
  EXPECT_EQ(SiteOnlineMacs(64, 1, 0, false), 64);
  EXPECT_EQ(SiteOnlineMacs(64, 1, 0, true), 0);
}

TEST(OnlineCostTest, LinearMacsSumInTimesOutOverLayers) {
  LlamaConfig config;  // stories260K's shape
  config.hidden_size = 64;
  config.intermediate_size = 172;
  config.num_hidden_layers = 5;
  config.num_attention_heads = 8;
  config.num_key_value_heads = 4;
  // q, o: 64 x 64; k, v: 32 x 64; gate, up: 172 x 64; down: 64 x 172.
  const int64_t per_layer = 2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64;
  EXPECT_EQ(per_layer, 45312);
  EXPECT_EQ(LinearMacsPerToken(config), 5 * per_layer);
}

}  // namespace
}  // namespace catq
