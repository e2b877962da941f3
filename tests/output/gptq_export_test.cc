// The GPTQ-layout export against the compressed-tensors output it comes
// from: each linear read back the way a GPTQ v1 loader dequantizes it
// ((q_u - (stored_zero + 1)) * scale, decoded here from the raw words, not
// with the packer) equals the output's dequantized weight bit for bit; every
// other tensor is byte-identical; outputs a GPTQ loader would run wrongly
// (online transforms, zero points of -8, non-F16 scales) are refused naming
// the site or tensor.
#include "core/output/gptq_export.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cat/calibration.h"
#include "core/eval/quantized_model.h"
#include "core/model/llama_model.h"
#include "core/model/synth.h"
#include "core/output/in_process_quantizer.h"
#include "core/output/output_names.h"
#include "core/tensor/safetensors_dir.h"
#include "core/tensor/safetensors_names.h"
#include "core/tensor/safetensors_writer.h"
#include "core/util/status_macros.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::testing::HasSubstr;

nlohmann::json ReadJson(const std::string& path) {
  return nlohmann::json::parse(testing::ReadTestFile(path), nullptr, /*allow_exceptions=*/false);
}

uint32_t Nibble(int32_t word, int64_t n) { return (static_cast<uint32_t>(word) >> (4 * n)) & 0xFu; }

// The weight [out, in] that GPTQ v1 tensors of `module` stand for, decoded
// from the raw words as AutoGPTQ's v1 kernels read them, after checking every
// tensor's dtype and shape and g_idx = i / group_size.
void DequantizeGptq(const SafetensorsDir& dir, const std::string& module, MatrixShape shape,
                    int group_size, RowMatrixXf* out) {
  const int64_t rows = shape.rows;
  const int64_t cols = shape.cols;
  const int64_t groups = group_size > 0 ? (cols + group_size - 1) / group_size : 1;
  const GptqWeightNames names = GptqWeightNamesFor(module);
  auto expect = [&](const std::string& name, DType dtype, std::vector<int64_t> want) {
    auto view = dir.Get(name);
    ASSERT_OK(view);
    EXPECT_EQ(view->dtype(), dtype) << name;
    ASSERT_EQ(view->shape(), want) << name;
  };
  ASSERT_NO_FATAL_FAILURE(expect(names.qweight, DType::kI32, {(cols + 7) / 8, rows}));
  ASSERT_NO_FATAL_FAILURE(expect(names.qzeros, DType::kI32, {groups, (rows + 7) / 8}));
  ASSERT_NO_FATAL_FAILURE(expect(names.scales, DType::kF16, {groups, rows}));
  ASSERT_NO_FATAL_FAILURE(expect(names.g_idx, DType::kI32, {cols}));
  auto qweight = dir.Get(names.qweight)->CopyAs<int32_t>();
  auto qzeros = dir.Get(names.qzeros)->CopyAs<int32_t>();
  auto scales = dir.Get(names.scales)->ToFloat();
  auto g_idx = dir.Get(names.g_idx)->CopyAs<int32_t>();
  ASSERT_OK(qweight);
  ASSERT_OK(qzeros);
  ASSERT_OK(scales);
  ASSERT_OK(g_idx);
  for (int64_t i = 0; i < cols; ++i) {
    ASSERT_EQ((*g_idx)[i], group_size > 0 ? i / group_size : 0) << names.g_idx << "[" << i << "]";
  }
  out->resize(rows, cols);
  for (int64_t o = 0; o < rows; ++o) {
    for (int64_t i = 0; i < cols; ++i) {
      const int64_t g = (*g_idx)[i];
      const int q_u = static_cast<int>(Nibble((*qweight)[(i / 8) * rows + o], i % 8));
      const int zero_u =
          static_cast<int>(Nibble((*qzeros)[g * ((rows + 7) / 8) + o / 8], o % 8)) + 1;
      (*out)(o, i) = static_cast<float>(q_u - zero_u) * (*scales)[g * rows + o];
    }
  }
}

// Every linear of `gptq_dir` equals, bit for bit, the dequantized linear of
// the compressed-tensors output `ct_dir`; every other tensor is byte-identical
// (same dtype and shape); no other tensor is there; config.json is the
// output's with the GPTQ quantization_config, which quantize_config.json
// repeats.
void ExpectFaithfulExport(const std::string& ct_dir, const std::string& gptq_dir) {
  auto ct = QuantizedModel::Open(ct_dir);
  ASSERT_OK(ct);
  auto gptq = SafetensorsDir::Open(gptq_dir);
  ASSERT_OK(gptq);
  const LlamaConfig& config = ct->config();
  const WeightQuantOptions& weights = ct->quantization().weights;
  std::set<std::string> expected_names;
  std::set<std::string> packed_names;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      const std::string module = LinearModuleName(layer, kind);
      auto want = ct->Linear(layer, kind);
      ASSERT_OK(want);
      RowMatrixXf got;
      ASSERT_NO_FATAL_FAILURE(
          DequantizeGptq(*gptq, module, LinearShape(config, kind), weights.group_size, &got));
      ASSERT_EQ(got.rows(), want->rows());
      ASSERT_EQ(got.cols(), want->cols());
      EXPECT_EQ(std::memcmp(got.data(), want->data(), sizeof(float) * got.size()), 0)
          << module << ": max |difference| " << (got - *want).cwiseAbs().maxCoeff();
      const GptqWeightNames names = GptqWeightNamesFor(module);
      expected_names.insert({names.qweight, names.qzeros, names.scales, names.g_idx});
      const PackedWeightNames packed = PackedWeightNamesFor(module);
      packed_names.insert({packed.packed, packed.scale, packed.shape, packed.zero_point});
    }
  }
  for (const std::string& name : ct->model().tensors().TensorNames()) {
    if (packed_names.contains(name)) continue;
    expected_names.insert(name);
    auto a = ct->model().tensors().Get(name);
    auto b = gptq->Get(name);
    ASSERT_OK(a);
    ASSERT_OK(b);
    EXPECT_EQ(a->dtype(), b->dtype()) << name;
    EXPECT_EQ(a->shape(), b->shape()) << name;
    EXPECT_TRUE(a->bytes() == b->bytes()) << name << " differs";
  }
  const std::vector<std::string> names = gptq->TensorNames();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected_names);

  nlohmann::json ct_config = ReadJson(ct_dir + "/config.json");
  nlohmann::json gptq_config = ReadJson(gptq_dir + "/config.json");
  const nlohmann::json qc = {
      {"quant_method", "gptq"},
      {"bits", 4},
      {"group_size", weights.group_size > 0 ? weights.group_size : -1},
      {"desc_act", false},
      {"sym", weights.symmetric},
      {"checkpoint_format", "gptq"},
  };
  EXPECT_EQ(gptq_config["quantization_config"], qc);
  EXPECT_EQ(ReadJson(gptq_dir + "/quantize_config.json"), qc);
  ct_config.erase("quantization_config");
  gptq_config.erase("quantization_config");
  EXPECT_EQ(gptq_config, ct_config);
}

// A copy of the model at `from` in `to` (one model.safetensors), with the
// config and the tensors (F32 in synthetic models) changed by the callbacks.
using TensorEdit = std::function<void(const std::string& name, std::vector<int64_t>& shape,
                                      std::vector<float>& values)>;
absl::Status RewriteModel(const std::string& from, const std::string& to,
                          const std::function<void(nlohmann::json&)>& edit_config,
                          const TensorEdit& edit_tensor) {
  Env* env = Env::Default();
  CATQ_ASSIGN_OR_RETURN(SafetensorsDir model, SafetensorsDir::Open(from));
  std::vector<TensorSpec> specs;
  std::vector<std::vector<float>> data;
  for (const SafetensorsFile& file : model.files()) {
    for (const TensorInfo& info : file.tensors()) {
      CATQ_ASSIGN_OR_RETURN(std::vector<float> values, file.View(info).ToFloat());
      std::vector<int64_t> shape = info.shape;
      edit_tensor(info.name, shape, values);
      specs.push_back({info.name, DType::kF32, shape});
      data.push_back(std::move(values));
    }
  }
  CATQ_RETURN_IF_ERROR(env->CreateDirs(to));
  CATQ_ASSIGN_OR_RETURN(
      auto writer, SafetensorsWriter::Create(env, to + "/" + kSafetensorsSingleFileName, specs));
  for (const std::vector<float>& values : data) {
    CATQ_RETURN_IF_ERROR(writer->Append(absl::string_view(
        reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float))));
  }
  CATQ_RETURN_IF_ERROR(writer->Finish());
  CATQ_ASSIGN_OR_RETURN(std::string text, env->ReadFile(from + "/config.json"));
  nlohmann::json config = nlohmann::json::parse(text);
  edit_config(config);
  return WriteFileAtomically(env, to + "/config.json", config.dump(2));
}

Recipe RtnRecipe(int group_size, bool symmetric) {
  Recipe recipe;
  recipe.method = Method::kRtn;
  recipe.weights.group_size = group_size;
  recipe.weights.symmetric = symmetric;
  return recipe;
}

class GptqExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions synth;
    synth.preset = "tiny";
    ASSERT_OK(WriteSyntheticModel(Env::Default(), synth, Model()));
  }

  std::string Model() const { return dir_.Join("model"); }

  // Quantizes `model` with `recipe` into dir_/`name`, calibrating on random
  // tokens when the recipe needs it; returns the output directory.
  std::string Quantize(const std::string& name, const Recipe& recipe, const std::string& model = "",
                       uint64_t max_shard_bytes = 0) {
    const std::string model_dir = model.empty() ? Model() : model;
    InProcessOptions options;
    if (max_shard_bytes > 0) options.max_shard_bytes = max_shard_bytes;
    CalibrationData data;
    if (recipe.method != Method::kRtn) {
      auto opened = LlamaModel::Open(model_dir);
      EXPECT_OK(opened);
      std::mt19937 rng(7);
      std::uniform_int_distribution<int32_t> token(3, opened->config().vocab_size - 1);
      std::vector<std::vector<int32_t>> sequences(4, std::vector<int32_t>(40, 1));
      for (auto& sequence : sequences) {
        for (size_t i = 1; i < sequence.size(); ++i) sequence[i] = token(rng);
      }
      CalibrationOptions calibration;
      calibration.sample_tokens = 0;
      auto collected = CollectSiteStatistics(*opened, sequences, calibration);
      EXPECT_OK(collected);
      data.statistics = std::move(collected->statistics);
      options.calibration_data = &data;
    }
    const std::string out = dir_.Join(name);
    EXPECT_OK(QuantizeModelInProcess(Env::Default(), model_dir, out, recipe, options));
    return out;
  }

  testing::TempDir dir_;
};

struct GridCase {
  const char* name;
  int group_size;
  bool symmetric;
};
void PrintTo(const GridCase& grid, std::ostream* os) { *os << grid.name; }

class GptqExportGridTest : public GptqExportTest, public ::testing::WithParamInterface<GridCase> {};

TEST_P(GptqExportGridTest, RtnLinearsDequantizeBitForBitAndTheRestIsCopied) {
  const GridCase& grid = GetParam();
  const std::string out = Quantize("out", RtnRecipe(grid.group_size, grid.symmetric));
  auto summary = ExportGptqLayout(Env::Default(), out, dir_.Join("gptq"), GptqExportOptions());
  ASSERT_OK(summary);
  ExpectFaithfulExport(out, dir_.Join("gptq"));
  EXPECT_EQ(summary->linears, 14);                // 2 layers x 7
  EXPECT_EQ(summary->copied_tensors, 2 * 2 + 3);  // norms, embeddings, final norm, lm_head
  EXPECT_EQ(summary->files,
            (std::vector<std::string>{"config.json", "model.safetensors", "quantize_config.json"}));
}

INSTANTIATE_TEST_SUITE_P(Grids, GptqExportGridTest,
                         ::testing::Values(GridCase{"PerChannelSymmetric", -1, true},
                                           GridCase{"Group32Symmetric", 32, true},
                                           GridCase{"Group32Asymmetric", 32, false},
                                           GridCase{"PerChannelAsymmetric", -1, false}),
                         [](const auto& info) { return std::string(info.param.name); });

// BF16 scales have fewer mantissa bits than F16: within F16's range they
// convert exactly.
TEST_F(GptqExportTest, Bf16ScalesConvertExactly) {
  Recipe recipe = RtnRecipe(32, true);
  recipe.scale_dtype = DType::kBF16;
  const std::string out = Quantize("out", recipe);
  ASSERT_OK(ExportGptqLayout(Env::Default(), out, dir_.Join("gptq")));
  ExpectFaithfulExport(out, dir_.Join("gptq"));
}

TEST_F(GptqExportTest, F32ScalesAreRefusedNamingTheTensor) {
  Recipe recipe = RtnRecipe(-1, true);
  recipe.scale_dtype = DType::kF32;
  EXPECT_STATUS(CheckRecipeGptqExportable(recipe), absl::StatusCode::kInvalidArgument,
                "recipe.scale_dtype");
  const std::string out = Quantize("out", recipe);
  EXPECT_STATUS(ExportGptqLayout(Env::Default(), out, dir_.Join("gptq")),
                absl::StatusCode::kFailedPrecondition,
                "model.layers.0.self_attn.q_proj.weight_scale[");
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq")));
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq.partial")));
}

// Block CAT k=16 stores online transforms at every site: refused before
// anything is written, naming the first site; the recipe alone says so.
TEST_F(GptqExportTest, OnlineTransformIsRefusedNamingTheSite) {
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = 16;
  recipe.activation_bits = 4;
  EXPECT_STATUS(CheckRecipeGptqExportable(recipe), absl::StatusCode::kInvalidArgument,
                "recipe.method: cat with block_size 16 and Hadamard mixing");
  const std::string out = Quantize("cat", recipe);
  const nlohmann::json config = ReadJson(out + "/config.json");
  ASSERT_TRUE(config["quantization_config"]["catq"]["sites"]["model.layers.0.attn_in"]["online"]);
  EXPECT_STATUS(ExportGptqLayout(Env::Default(), out, dir_.Join("gptq")),
                absl::StatusCode::kFailedPrecondition,
                "model.layers.0.attn_in: has an online transform");
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq")));
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq.partial")));
}

// Grouped query heads (the tiny model: 8 query heads on 4 KV heads) and
// norms stored in BF16 keep no diagonal online any more: attn_out's diagonal
// is tied across each KV head's query heads and folds into v_proj, the norm
// gains are written in F32. SmoothQuant and block CAT k=1 export, bit for
// bit, from the F32 and the BF16 model.
TEST_F(GptqExportTest, GroupedHeadsAndBf16NormsFoldEverywhereAndExport) {
  SynthOptions synth;
  synth.preset = "tiny";
  synth.dtype = DType::kBF16;
  const std::string bf16 = dir_.Join("bf16");
  ASSERT_OK(WriteSyntheticModel(Env::Default(), synth, bf16));
  Recipe smooth;
  smooth.method = Method::kSmoothQuant;
  Recipe cat1;
  cat1.method = Method::kCat;
  cat1.block_size = 1;
  cat1.cat_hadamard = false;
  for (const std::string& model_dir : {Model(), bf16}) {
    for (const Recipe& recipe : {smooth, cat1}) {
      const std::string name =
          absl::StrCat(MethodName(recipe.method), model_dir == bf16 ? "-bf16" : "-f32");
      SCOPED_TRACE(name);
      auto model = LlamaModel::Open(model_dir);
      ASSERT_OK(model);
      ASSERT_LT(model->config().num_key_value_heads, model->config().num_attention_heads);
      EXPECT_OK(CheckGptqExportable(*model, recipe));
      const std::string out = Quantize(name, recipe, model_dir);
      const nlohmann::json sites =
          ReadJson(out + "/config.json")["quantization_config"]["catq"]["sites"];
      for (const auto& [key, site] : sites.items()) {
        EXPECT_FALSE(site["online"]) << key;
        EXPECT_TRUE(site["folded"]) << key;
      }
      auto stored = SafetensorsDir::Open(out);
      ASSERT_OK(stored);
      for (const std::string& tensor : stored->TensorNames()) {
        EXPECT_EQ(tensor.find(".catq."), std::string::npos) << tensor;
      }
      auto norm = stored->Get("model.layers.1.post_attention_layernorm.weight");
      ASSERT_OK(norm);
      EXPECT_EQ(norm->dtype(), DType::kF32);
      ASSERT_OK(ExportGptqLayout(Env::Default(), out, dir_.Join(name + "-gptq")));
      ExpectFaithfulExport(out, dir_.Join(name + "-gptq"));
    }
  }
}

// With one KV head per query head every diagonal folds (norm gains, v_proj,
// up_proj): SmoothQuant and block CAT k=1 without mixing export, bit for bit.
TEST_F(GptqExportTest, DiagonalRecipesThatFoldEverywhereExport) {
  const std::string mha = dir_.Join("mha");
  ASSERT_OK(RewriteModel(
      Model(), mha,
      [](nlohmann::json& config) { config["num_key_value_heads"] = config["num_attention_heads"]; },
      [](const std::string& name, std::vector<int64_t>& shape, std::vector<float>& values) {
        // k_proj, v_proj [4 heads x 8, 64] -> [8 heads x 8, 64]: query head h
        // keeps the KV head it read (h / 2).
        if (name.find("k_proj") == std::string::npos && name.find("v_proj") == std::string::npos) {
          return;
        }
        const int64_t head_dim = 8;
        const int64_t cols = shape[1];
        std::vector<float> wide;
        for (int64_t h = 0; h < 8; ++h) {
          const float* head = values.data() + (h / 2) * head_dim * cols;
          wide.insert(wide.end(), head, head + head_dim * cols);
        }
        shape[0] = 8 * head_dim;
        values = std::move(wide);
      }));
  Recipe smooth;
  smooth.method = Method::kSmoothQuant;
  Recipe cat1;
  cat1.method = Method::kCat;
  cat1.block_size = 1;
  cat1.cat_hadamard = false;
  cat1.weights.group_size = 32;
  for (const Recipe& recipe : {smooth, cat1}) {
    SCOPED_TRACE(std::string(MethodName(recipe.method)));
    auto model = LlamaModel::Open(mha);
    ASSERT_OK(model);
    EXPECT_OK(CheckGptqExportable(*model, recipe));
    const std::string name(MethodName(recipe.method));
    const std::string out = Quantize(name, recipe, mha);
    const nlohmann::json sites =
        ReadJson(out + "/config.json")["quantization_config"]["catq"]["sites"];
    for (const auto& [key, site] : sites.items()) {
      EXPECT_FALSE(site["online"]) << key;
      EXPECT_TRUE(site["folded"]) << key;
    }
    ASSERT_OK(ExportGptqLayout(Env::Default(), out, dir_.Join(name + "-gptq")));
    ExpectFaithfulExport(out, dir_.Join(name + "-gptq"));
  }
}

// A group whose values are all >= 0 has the asymmetric zero point -8
// (unsigned 0), which v1's "zero minus one" cannot store.
TEST_F(GptqExportTest, ZeroPointOfMinusEightIsRefusedNamingTheTensor) {
  const std::string positive = dir_.Join("positive");
  ASSERT_OK(RewriteModel(
      Model(), positive, [](nlohmann::json&) {},
      [](const std::string& name, std::vector<int64_t>& shape, std::vector<float>& values) {
        if (name != "model.layers.1.mlp.down_proj.weight") return;
        for (int64_t c = 0; c < shape[1]; ++c) values[3 * shape[1] + c] = std::fabs(values[c]);
      }));
  const std::string out = Quantize("out", RtnRecipe(-1, false), positive);
  EXPECT_STATUS(ExportGptqLayout(Env::Default(), out, dir_.Join("gptq")),
                absl::StatusCode::kFailedPrecondition,
                "model.layers.1.mlp.down_proj.weight_zero_point: output row 3, group 0 has zero "
                "point -8");
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq")));
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq.partial")));
}

// The output is read as evaluation reads it: weights of other than 4 bits are
// refused naming the field.
TEST_F(GptqExportTest, OtherBitWidthsAreRefusedNamingTheField) {
  const std::string out = Quantize("out", RtnRecipe(-1, true));
  nlohmann::json config = ReadJson(out + "/config.json");
  config["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 3;
  ASSERT_OK(WriteFileAtomically(Env::Default(), out + "/config.json", config.dump(2)));
  EXPECT_STATUS(ExportGptqLayout(Env::Default(), out, dir_.Join("gptq")),
                absl::StatusCode::kInvalidArgument,
                "quantization_config.config_groups.group_0.weights.num_bits: 3");
}

// An 8-bit output is refused before anything is written, naming
// weights.bits: the export writes 4-bit GPTQ words only. The recipe check
// says the same before quantizing.
TEST_F(GptqExportTest, EightBitOutputIsRefusedNamingWeightsBits) {
  Recipe recipe = RtnRecipe(32, true);
  recipe.weights.bits = 8;
  EXPECT_STATUS(CheckRecipeGptqExportable(recipe), absl::StatusCode::kInvalidArgument,
                "recipe.weights.bits: 8; the GPTQ export writes 4-bit weights only");
  const std::string out = Quantize("out", recipe);
  EXPECT_STATUS(ExportGptqLayout(Env::Default(), out, dir_.Join("gptq")),
                absl::StatusCode::kInvalidArgument, "weights.bits: 8 (config.json");
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq")));
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq.partial")));
}

// A sharded output gives a sharded export with an index whose weight_map
// names every tensor; tokenizer files are copied, the report is not.
TEST_F(GptqExportTest, ShardsIndexAndSideFilesLikeTheSource) {
  ASSERT_OK(WriteFileAtomically(Env::Default(), Model() + "/tokenizer.json", "{\"vocab\": 1}"));
  const std::string out = Quantize("out", RtnRecipe(32, true), "", /*max_shard_bytes=*/64 << 10);
  auto source = SafetensorsDir::Open(out);
  ASSERT_OK(source);
  ASSERT_GT(source->files().size(), 1u);
  auto summary = ExportGptqLayout(Env::Default(), out, dir_.Join("gptq"), GptqExportOptions());
  ASSERT_OK(summary);
  ExpectFaithfulExport(out, dir_.Join("gptq"));
  EXPECT_EQ(testing::ReadTestFile(dir_.Join("gptq/tokenizer.json")), "{\"vocab\": 1}");
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq/catq_report.json")));
  const nlohmann::json index = ReadJson(dir_.Join("gptq/") + kSafetensorsIndexFileName);
  std::set<std::string> shards;
  for (const auto& [name, shard] : index["weight_map"].items()) shards.insert(shard);
  EXPECT_GT(shards.size(), 1u);
  EXPECT_EQ(index["metadata"]["total_size"], summary->data_bytes);
  for (const std::string& shard : shards) {
    EXPECT_NE(std::find(summary->files.begin(), summary->files.end(), shard), summary->files.end())
        << shard;
  }
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq/") + kSafetensorsSingleFileName));
}

TEST_F(GptqExportTest, ExistingExportDirectoryIsKeptUnlessReplaced) {
  const std::string out = Quantize("out", RtnRecipe(-1, true));
  ASSERT_OK(Env::Default()->CreateDirs(dir_.Join("gptq")));
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join("gptq/old"), "old"));
  EXPECT_STATUS(ExportGptqLayout(Env::Default(), out, dir_.Join("gptq")),
                absl::StatusCode::kAlreadyExists, "gptq");
  EXPECT_TRUE(Env::Default()->FileExists(dir_.Join("gptq/old")));
  GptqExportOptions options;
  options.replace = true;
  ASSERT_OK(ExportGptqLayout(Env::Default(), out, dir_.Join("gptq"), options));
  EXPECT_FALSE(Env::Default()->FileExists(dir_.Join("gptq/old")));
  ExpectFaithfulExport(out, dir_.Join("gptq"));
}

}  // namespace
}  // namespace catq
