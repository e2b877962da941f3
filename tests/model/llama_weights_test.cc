#include "core/model/llama_weights.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/util/status_matchers.h"

namespace catq {
namespace {

using ::testing::ElementsAre;

LlamaConfig Stories260K(bool tied) {
  LlamaConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_hidden_layers = 5;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.vocab_size = 512;
  c.max_position_embeddings = 512;
  c.tie_word_embeddings = tied;
  return c;
}

TEST(LlamaWeights, HuggingFaceNames) {
  EXPECT_EQ(LinearWeightName(3, LinearKind::kQProj), "model.layers.3.self_attn.q_proj.weight");
  EXPECT_EQ(LinearWeightName(0, LinearKind::kKProj), "model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(LinearWeightName(0, LinearKind::kVProj), "model.layers.0.self_attn.v_proj.weight");
  EXPECT_EQ(LinearWeightName(0, LinearKind::kOProj), "model.layers.0.self_attn.o_proj.weight");
  EXPECT_EQ(LinearWeightName(1, LinearKind::kGateProj), "model.layers.1.mlp.gate_proj.weight");
  EXPECT_EQ(LinearWeightName(1, LinearKind::kUpProj), "model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(LinearWeightName(12, LinearKind::kDownProj), "model.layers.12.mlp.down_proj.weight");
  EXPECT_EQ(LinearModuleName(2, LinearKind::kUpProj), "model.layers.2.mlp.up_proj");
  EXPECT_EQ(LinearKindName(LinearKind::kGateProj), "gate_proj");
  EXPECT_EQ(NormWeightName(4, NormKind::kInputLayernorm), "model.layers.4.input_layernorm.weight");
  EXPECT_EQ(NormWeightName(4, NormKind::kPostAttentionLayernorm),
            "model.layers.4.post_attention_layernorm.weight");
  EXPECT_EQ(SiteQualifiedName(7, Site::kMlpOut), "model.layers.7.mlp_out");
}

TEST(LlamaWeights, ShapesFromConfig) {
  const LlamaConfig c = Stories260K(true);
  EXPECT_EQ(LinearShape(c, LinearKind::kQProj), (MatrixShape{64, 64}));
  EXPECT_EQ(LinearShape(c, LinearKind::kKProj), (MatrixShape{32, 64}));
  EXPECT_EQ(LinearShape(c, LinearKind::kVProj), (MatrixShape{32, 64}));
  EXPECT_EQ(LinearShape(c, LinearKind::kOProj), (MatrixShape{64, 64}));
  EXPECT_EQ(LinearShape(c, LinearKind::kGateProj), (MatrixShape{172, 64}));
  EXPECT_EQ(LinearShape(c, LinearKind::kUpProj), (MatrixShape{172, 64}));
  EXPECT_EQ(LinearShape(c, LinearKind::kDownProj), (MatrixShape{64, 172}));
}

TEST(LlamaWeights, SitesKnowTheirLinearsAndNorms) {
  EXPECT_THAT(SiteLinears(Site::kAttnIn),
              ElementsAre(LinearKind::kQProj, LinearKind::kKProj, LinearKind::kVProj));
  EXPECT_THAT(SiteLinears(Site::kAttnOut), ElementsAre(LinearKind::kOProj));
  EXPECT_THAT(SiteLinears(Site::kMlpIn), ElementsAre(LinearKind::kGateProj, LinearKind::kUpProj));
  EXPECT_THAT(SiteLinears(Site::kMlpOut), ElementsAre(LinearKind::kDownProj));
  for (Site site : kAllSites) {
    for (LinearKind kind : SiteLinears(site)) EXPECT_EQ(SiteOfLinear(kind), site);
    absl::StatusOr<Site> parsed = ParseSite(SiteName(site));
    ASSERT_OK(parsed);
    EXPECT_EQ(*parsed, site);
  }
  EXPECT_EQ(SitePrecedingNorm(Site::kAttnIn), NormKind::kInputLayernorm);
  EXPECT_EQ(SitePrecedingNorm(Site::kMlpIn), NormKind::kPostAttentionLayernorm);
  EXPECT_FALSE(SitePrecedingNorm(Site::kAttnOut).has_value());
  EXPECT_FALSE(SitePrecedingNorm(Site::kMlpOut).has_value());
  EXPECT_EQ(SiteName(Site::kAttnOut), "attn_out");
  EXPECT_STATUS(ParseSite("mlp_mid"), absl::StatusCode::kInvalidArgument, "\"mlp_mid\"");

  const LlamaConfig c = Stories260K(true);
  EXPECT_EQ(SiteDim(c, Site::kAttnIn), 64);
  EXPECT_EQ(SiteDim(c, Site::kAttnOut), 64);
  EXPECT_EQ(SiteDim(c, Site::kMlpIn), 64);
  EXPECT_EQ(SiteDim(c, Site::kMlpOut), 172);
  for (LinearKind kind : kAllLinearKinds) {
    EXPECT_EQ(LinearShape(c, kind).cols, SiteDim(c, SiteOfLinear(kind))) << LinearKindName(kind);
  }
}

TEST(LlamaWeights, ExpectedTensorsInWritingOrder) {
  std::vector<ExpectedTensor> tied = ExpectedLlamaTensors(Stories260K(true));
  ASSERT_EQ(tied.size(), 1u + 5 * 9 + 1);
  EXPECT_EQ(tied.front().name, kEmbedTokensName);
  EXPECT_THAT(tied.front().shape, ElementsAre(512, 64));
  EXPECT_EQ(tied[1].name, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(tied[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_THAT(tied[3].shape, ElementsAre(32, 64));
  EXPECT_EQ(tied[9].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_THAT(tied[9].shape, ElementsAre(64, 172));
  EXPECT_EQ(tied.back().name, kFinalNormName);

  std::vector<ExpectedTensor> untied = ExpectedLlamaTensors(Stories260K(false));
  ASSERT_EQ(untied.size(), tied.size() + 1);
  EXPECT_EQ(untied.back().name, kLmHeadName);
  EXPECT_THAT(untied.back().shape, ElementsAre(512, 64));
}

}  // namespace
}  // namespace catq
