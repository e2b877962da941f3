// WriteSyntheticSiteStatistics: every site of a config, in blocks or full,
// readable by the checks a client upload goes through, and the same bytes
// for the same options.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/cat/site_statistics.h"
#include "core/cat/synthetic_statistics.h"
#include "core/model/llama_weights.h"
#include "core/model/synth.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using testing::TempDir;

TEST(SyntheticSiteStatistics, EverySiteInBlocksPassesTheUploadChecks) {
  absl::StatusOr<LlamaConfig> config = SynthPresetConfig("tiny");  // hidden 64, intermediate 172
  ASSERT_OK(config);
  TempDir dir;
  SyntheticStatisticsOptions options;
  options.block_size = 32;  // mlp_out: 5 blocks of 32 and a tail of 12
  options.tokens = 40;
  ASSERT_OK(WriteSyntheticSiteStatistics(Env::Default(), *config, options,
                                         dir.Join("stats.safetensors")));
  absl::StatusOr<std::map<std::string, SiteStatistics>> read =
      ReadSiteStatistics(dir.Join("stats.safetensors"));
  ASSERT_OK(read);
  ASSERT_EQ(read->size(), 4u * static_cast<size_t>(config->num_hidden_layers));
  for (int64_t layer = 0; layer < config->num_hidden_layers; ++layer) {
    for (Site site : kAllSites) {
      const std::string key = SiteQualifiedName(layer, site);
      SCOPED_TRACE(key);
      ASSERT_TRUE(read->contains(key));
      const SiteStatistics& stats = read->at(key);
      EXPECT_EQ(stats.dim(), SiteDim(*config, site));
      EXPECT_EQ(stats.block_size(), 32);
      EXPECT_EQ(stats.tokens(), 40);
    }
  }
}

TEST(SyntheticSiteStatistics, SameOptionsSameBytesAndBadOptionsNamed) {
  absl::StatusOr<LlamaConfig> config = SynthPresetConfig("tiny");
  ASSERT_OK(config);
  TempDir dir;
  SyntheticStatisticsOptions options;
  options.block_size = 0;  // full matrices
  ASSERT_OK(WriteSyntheticSiteStatistics(Env::Default(), *config, options, dir.Join("a")));
  ASSERT_OK(WriteSyntheticSiteStatistics(Env::Default(), *config, options, dir.Join("b")));
  absl::StatusOr<std::string> a = Env::Default()->ReadFile(dir.Join("a"));
  absl::StatusOr<std::string> b = Env::Default()->ReadFile(dir.Join("b"));
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(*a, *b);
  options.seed = 1;
  ASSERT_OK(WriteSyntheticSiteStatistics(Env::Default(), *config, options, dir.Join("c")));
  EXPECT_NE(*Env::Default()->ReadFile(dir.Join("c")), *a);

  options.tokens = 0;
  EXPECT_STATUS(WriteSyntheticSiteStatistics(Env::Default(), *config, options, dir.Join("d")),
                absl::StatusCode::kInvalidArgument, "tokens");
  options.tokens = 8;
  options.outlier_scale = -1.0f;
  EXPECT_STATUS(WriteSyntheticSiteStatistics(Env::Default(), *config, options, dir.Join("d")),
                absl::StatusCode::kInvalidArgument, "outlier_scale");
}

}  // namespace
}  // namespace catq
