// Tests of QuantizedModel (core/eval/quantized_model.h): an output directory
// with online transforms evaluates to the model it came from, and malformed
// directories are refused with the tensor or field named.
#include "core/eval/quantized_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/eval/evaluate.h"
#include "core/model/llama_forward.h"
#include "core/model/synth.h"
#include "core/quant/quantized_weight.h"
#include "tests/eval/output_dir_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using absl::StatusCode::kInvalidArgument;
using testing::OutputDir;
using testing::TransformedOutputOptions;

// max |a - b| / max |b|.
double RelativeError(const RowMatrixXf& a, const RowMatrixXf& b) {
  return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}

std::vector<int32_t> TestTokens(int64_t length) {
  std::vector<int32_t> ids = {1};
  for (int64_t i = 1; i < length; ++i) ids.push_back(static_cast<int32_t>((i * 37 + 5) % 512));
  return ids;
}

// The tiny synthetic model (hidden 64, intermediate 172, 2 layers): attn_in,
// attn_out and mlp_in are 64 wide (B: 3 blocks of 20 and a tail of 4; M the
// FWHT, no rot_q), mlp_out 172 (8 blocks and a tail of 12; M = H_4 (x) Q_43).
class QuantizedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions options;
    options.preset = "tiny";
    ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir_.Join("fp")));
    absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir_.Join("fp"));
    ASSERT_OK(model);
    model_ = std::make_unique<LlamaModel>(*std::move(model));
  }

  OutputDir MakeOutput(const TransformedOutputOptions& options = {}) {
    absl::StatusOr<OutputDir> out = testing::MakeTransformedOutput(*model_, options);
    EXPECT_OK(out);
    return out.value_or(OutputDir());
  }

  // The status of opening the fixture's output after `mutate`.
  absl::Status OpenMutated(const std::function<void(OutputDir&)>& mutate,
                           const TransformedOutputOptions& options = {}) {
    OutputDir out = MakeOutput(options);
    mutate(out);
    const std::string dir = dir_.Join(absl::StrCat("out", ++outputs_));
    CATQ_RETURN_IF_ERROR(out.Write(dir));
    return QuantizedModel::Open(dir).status();
  }

  // The logits of the output `out` for TestTokens(48), run as stored.
  RowMatrixXf QuantizedLogits(const OutputDir& out) {
    const std::string dir = dir_.Join(absl::StrCat("out", ++outputs_));
    EXPECT_OK(out.Write(dir));
    absl::StatusOr<QuantizedModel> q = QuantizedModel::Open(dir);
    EXPECT_OK(q);
    if (!q.ok()) return RowMatrixXf();
    const QuantizedForward forward(*q, {});
    absl::StatusOr<RowMatrixXf> logits = ComputeLogits(q->model(), tokens_, forward.options());
    EXPECT_OK(logits);
    return logits.value_or(RowMatrixXf());
  }

  RowMatrixXf FpLogits() {
    absl::StatusOr<RowMatrixXf> logits = ComputeLogits(*model_, tokens_);
    EXPECT_OK(logits);
    return logits.value_or(RowMatrixXf());
  }

  testing::TempDir dir_;
  std::unique_ptr<LlamaModel> model_;
  const std::vector<int32_t> tokens_ = TestTokens(48);
  int outputs_ = 0;
};

// ---------------------------------------------------------------------------
// Function preservation through the stored format.

TEST_F(QuantizedModelTest, OpensTheStoredTransforms) {
  const std::string dir = dir_.Join("out");
  ASSERT_OK(MakeOutput().Write(dir));
  absl::StatusOr<QuantizedModel> q = QuantizedModel::Open(dir);
  ASSERT_OK(q);
  EXPECT_EQ(q->quantization().method, "cat");
  EXPECT_EQ(q->quantization().activation_bits, 16);
  for (int64_t layer = 0; layer < 2; ++layer) {
    for (Site site : kAllSites) {
      SCOPED_TRACE(SiteQualifiedName(layer, site));
      const SiteTransform* t = q->OnlineTransform(layer, site);
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t->block_size(), 20);
      ASSERT_TRUE(t->has_mixing());
      EXPECT_EQ(t->mixing()->q(), site == Site::kMlpOut ? 43 : 1);
    }
    EXPECT_FALSE(q->is_packed(layer, LinearKind::kQProj));
  }
}

// x' = T x at each site with the stored T, then the stored W T^-1: the FP
// model's logits up to float rounding.
TEST_F(QuantizedModelTest, StoredTransformsPreserveTheFunction) {
  const RowMatrixXf fp = FpLogits();
  const RowMatrixXf quantized = QuantizedLogits(MakeOutput());
  ASSERT_EQ(quantized.rows(), fp.rows());
  EXPECT_LT(RelativeError(quantized, fp), 1e-4);

  TransformedOutputOptions blocks_only;
  blocks_only.hadamard = false;
  EXPECT_LT(RelativeError(QuantizedLogits(MakeOutput(blocks_only)), fp), 1e-4);
}

// The check has teeth: one block read transposed (B_1^T for B_1) breaks it.
TEST_F(QuantizedModelTest, ATransposedBlockBreaksFunctionPreservation) {
  OutputDir out = MakeOutput();
  const std::string name = "model.layers.0.catq.attn_in.blocks";
  std::vector<float> blocks = out.Floats(name);
  Eigen::Map<RowMatrixXf> block1(blocks.data() + 400, 20, 20);
  block1.transposeInPlace();
  out.SetFloats(name, {3, 20, 20}, blocks);
  EXPECT_GT(RelativeError(QuantizedLogits(out), FpLogits()), 1e-2);
}

// A packed linear reads back as its dequantized RTN grid.
TEST_F(QuantizedModelTest, PackedLinearsAreDequantized) {
  TransformedOutputOptions packed;
  packed.pack_linears = true;
  const std::string dir = dir_.Join("packed");
  ASSERT_OK(MakeOutput(packed).Write(dir));
  absl::StatusOr<QuantizedModel> q = QuantizedModel::Open(dir);
  ASSERT_OK(q);
  EXPECT_TRUE(q->is_packed(1, LinearKind::kDownProj));
  EXPECT_EQ(q->quantization().weights.group_size, 32);
  absl::StatusOr<RowMatrixXf> w = q->Linear(1, LinearKind::kDownProj);
  ASSERT_OK(w);
  absl::StatusOr<QuantizedWeight> qw =
      ReadPackedLinear(q->model().tensors(), "model.layers.1.mlp.down_proj", {4, 32, true});
  ASSERT_OK(qw);
  EXPECT_EQ(*w, Dequantize(*qw));
  EXPECT_STATUS(q->Linear(2, LinearKind::kQProj), kInvalidArgument, "layer 2");
}

// ---------------------------------------------------------------------------
// Malformed online tensors: InvalidArgument naming the tensor.

TEST_F(QuantizedModelTest, RefusesAMissingRotQ) {
  // mlp_out is 172 wide: the mixing needs its Q_43.
  EXPECT_STATUS(
      OpenMutated([](OutputDir& out) { out.tensors.erase("model.layers.0.catq.mlp_out.rot_q"); }),
      kInvalidArgument, "model.layers.0.catq.mlp_out.rot_q: no rot_q means q = 1");
}

TEST_F(QuantizedModelTest, RefusesWrongBlockShapes) {
  EXPECT_STATUS(OpenMutated([](OutputDir& out) {
                  out.SetFloats("model.layers.0.catq.attn_in.blocks", {4, 16, 16},
                                std::vector<float>(1024, 0.5f));
                }),
                kInvalidArgument,
                "model.layers.0.catq.attn_in.blocks: shape [4, 16, 16], expected [3, 20, 20]");
  EXPECT_STATUS(OpenMutated([](OutputDir& out) {
                  out.tensors.erase("model.layers.1.catq.attn_out.blocks_tail");
                }),
                kInvalidArgument, "model.layers.1.catq.attn_out.blocks_tail: missing");
  EXPECT_STATUS(OpenMutated([](OutputDir& out) {
                  out.tensors["model.layers.0.catq.mlp_in.blocks"].dtype = DType::kI32;
                }),
                kInvalidArgument, "model.layers.0.catq.mlp_in.blocks: dtype I32, expected F32");
  EXPECT_STATUS(
      OpenMutated([](OutputDir& out) {
        out.SetFloats("model.layers.0.catq.mlp_out.rot_q", {43, 42}, std::vector<float>(43 * 42));
      }),
      kInvalidArgument, "model.layers.0.catq.mlp_out.rot_q: shape [43, 42]");
}

TEST_F(QuantizedModelTest, RefusesANonOrthogonalRotQ) {
  EXPECT_STATUS(OpenMutated([](OutputDir& out) {
                  const std::string name = "model.layers.1.catq.mlp_out.rot_q";
                  std::vector<float> q = out.Floats(name);
                  for (int64_t i = 0; i < 43; ++i) q[i * 43 + 5] *= 1.01f;  // Column 5.
                  out.SetFloats(name, {43, 43}, q);
                }),
                kInvalidArgument,
                "model.layers.1.catq.mlp_out.rot_q: rot_q (43x43) is not orthogonal");
}

TEST_F(QuantizedModelTest, RefusesNonFiniteOrSingularBlocks) {
  EXPECT_STATUS(OpenMutated([](OutputDir& out) {
                  const std::string name = "model.layers.0.catq.attn_out.blocks";
                  std::vector<float> b = out.Floats(name);
                  b[1 * 400 + 2 * 20 + 3] = std::numeric_limits<float>::quiet_NaN();
                  out.SetFloats(name, {3, 20, 20}, b);
                }),
                kInvalidArgument, "model.layers.0.catq.attn_out.blocks: element [1, 2, 3] is nan");
  EXPECT_STATUS(OpenMutated([](OutputDir& out) {
                  const std::string name = "model.layers.1.catq.mlp_out.blocks_tail";
                  out.SetFloats(name, {12, 12},
                                std::vector<float>(144, std::numeric_limits<float>::infinity()));
                }),
                kInvalidArgument, "model.layers.1.catq.mlp_out.blocks_tail: element [0, 0] is inf");
  EXPECT_STATUS(OpenMutated([](OutputDir& out) {
                  const std::string name = "model.layers.0.catq.attn_in.blocks";
                  std::vector<float> b = out.Floats(name);
                  std::fill(b.begin(), b.begin() + 400, 0.0f);
                  out.SetFloats(name, {3, 20, 20}, b);
                }),
                kInvalidArgument, "model.layers.0.catq.attn_in.blocks: block 0 is singular");
}

// Tensors and the sites map must agree: nothing is guessed from which
// tensors exist.
TEST_F(QuantizedModelTest, RefusesTensorsTheSiteMapDoesNotDescribe) {
  EXPECT_STATUS(
      OpenMutated([](OutputDir& out) { out.Site("model.layers.0.attn_in")["online"] = false; }),
      kInvalidArgument,
      "model.layers.0.catq.attn_in.blocks: present, but quantization_config says site "
      "model.layers.0.attn_in is not online");
  EXPECT_STATUS(
      OpenMutated([](OutputDir& out) { out.Site("model.layers.1.mlp_out")["hadamard"] = false; }),
      kInvalidArgument,
      "model.layers.1.catq.mlp_out.rot_q: present, but the site's hadamard is false");
  EXPECT_STATUS(
      OpenMutated([](OutputDir& out) { out.Site("model.layers.0.mlp_in")["block_size"] = 16; }),
      kInvalidArgument,
      "model.layers.0.catq.mlp_in.blocks: shape [3, 20, 20], expected [4, 16, 16]");
}

// ---------------------------------------------------------------------------
// Malformed config and linears.

TEST_F(QuantizedModelTest, RefusesAMalformedQuantizationConfig) {
  EXPECT_STATUS(OpenMutated([](OutputDir& out) { out.config.erase("quantization_config"); }),
                kInvalidArgument, "config.json: quantization_config: missing");
  EXPECT_STATUS(
      OpenMutated([](OutputDir& out) {
        out.config["quantization_config"]["catq"]["sites"].erase("model.layers.1.mlp_out");
      }),
      kInvalidArgument, "quantization_config.catq.sites[\"model.layers.1.mlp_out\"]: missing");
  EXPECT_STATUS(OpenMutated([](OutputDir& out) {
                  out.Site("model.layers.7.attn_in") = out.Site("model.layers.0.attn_in");
                }),
                kInvalidArgument, "layer 7 is outside [0, 2)");
  EXPECT_STATUS(
      OpenMutated([](OutputDir& out) {
        out.config["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 3;
      }),
      kInvalidArgument, "quantization_config.config_groups.group_0.weights.num_bits: 3");
  EXPECT_STATUS(
      OpenMutated([](OutputDir& out) { out.Site("model.layers.0.attn_out")["folded"] = true; }),
      kInvalidArgument, "both online and folded");
}

TEST_F(QuantizedModelTest, RefusesMissingOrInconsistentLinears) {
  EXPECT_STATUS(
      OpenMutated([](OutputDir& out) { out.tensors.erase("model.layers.0.mlp.up_proj.weight"); }),
      kInvalidArgument, "model.layers.0.mlp.up_proj.weight_packed: missing from");
  TransformedOutputOptions packed;
  packed.pack_linears = true;
  EXPECT_STATUS(
      OpenMutated(
          [](OutputDir& out) { out.tensors.erase("model.layers.1.self_attn.o_proj.weight_scale"); },
          packed),
      kInvalidArgument, "model.layers.1.self_attn.o_proj.weight_scale: missing");
  EXPECT_STATUS(OpenMutated(
                    [](OutputDir& out) {
                      out.tensors["model.layers.0.mlp.down_proj.weight_shape"].bytes[0] = 65;
                    },
                    packed),
                kInvalidArgument,
                "model.layers.0.mlp.down_proj.weight_shape: holds [65, 172], expected [64, 172]");
  EXPECT_STATUS(OpenMutated(
                    [](OutputDir& out) {
                      out.SetFloats("model.layers.0.self_attn.q_proj.weight", {64, 64},
                                    std::vector<float>(64 * 64));
                    },
                    packed),
                kInvalidArgument, "both .weight_packed and .weight");
}

}  // namespace
}  // namespace catq
