// Tests of the site task and of the calibrated in-process quantizer: the
// methods rank as the paper says on stories260K, GPTQ beats RTN on every
// layer, the online tensors follow the output contract, and statistics from a
// file give the same shards as statistics from text.
#include "core/output/site_quantizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <cmath>
#include <fstream>

#include "absl/strings/match.h"
#include "core/cat/calibration.h"
#include "core/cat/mixing_matrix.h"
#include "core/model/llama2c_import.h"
#include "core/model/synth.h"
#include "core/output/in_process_quantizer.h"
#include "core/tensor/safetensors_dir.h"
#include "nlohmann/json.hpp"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::string ReadBytes(const std::string& path) {
  absl::StatusOr<std::string> bytes = Env::Default()->ReadFile(path);
  EXPECT_OK(bytes);
  return bytes.ok() ? *bytes : "";
}

Recipe W4A4(Method method, int block_size = 32) {
  Recipe recipe;
  recipe.method = method;
  recipe.block_size = block_size;
  recipe.activation_bits = 4;
  return recipe;
}

// stories260K imported once, calibrated on the first 64 paragraphs of the
// TinyStories text (the setting).
class Stories260KQuantizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::SharedDir().empty()) return;
    dir_ = new testing::TempDir();
    ASSERT_OK(ImportLlama2c(Env::Default(),
                            testing::SharedPath("models/stories260K/stories260K.bin"),
                            testing::SharedPath("models/stories260K/tok512.bin"), Model()));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string Model() { return dir_->Join("hf"); }

  static InProcessOptions Calibrated() {
    InProcessOptions options;
    options.replace = true;
    options.calibration.text_path = testing::SharedPath("data/tinystories_197k.txt");
    options.calibration.text.max_documents = 64;
    return options;
  }

  static QuantizationReport Quantize(const Recipe& recipe, const std::string& out,
                                     const InProcessOptions& options = Calibrated()) {
    absl::StatusOr<QuantizationReport> report =
        QuantizeModelInProcess(Env::Default(), Model(), dir_->Join(out), recipe, options);
    EXPECT_OK(report);
    return report.ok() ? *report : QuantizationReport{};
  }

  static double MeanMeasuredSqnr(const QuantizationReport& report) {
    double sum = 0.0;
    for (const LinearReport& linear : report.linears) sum += linear.sqnr_after->measured_sqnr_db;
    return sum / static_cast<double>(report.linears.size());
  }

  static testing::TempDir* dir_;
};

testing::TempDir* Stories260KQuantizerTest::dir_ = nullptr;

TEST_F(Stories260KQuantizerTest, MethodsRankNoneHadamardBlockCatFullCat) {
  CATQ_REQUIRE_SHARED();
  const double none = MeanMeasuredSqnr(Quantize(W4A4(Method::kRtn), "rtn"));
  const double hadamard = MeanMeasuredSqnr(Quantize(W4A4(Method::kHadamard), "h"));
  const QuantizationReport cat32 = Quantize(W4A4(Method::kCat, 32), "cat32");
  const double block = MeanMeasuredSqnr(cat32);
  const double full = MeanMeasuredSqnr(Quantize(W4A4(Method::kCat, 1 << 20), "catd"));
  // An independent implementation measured 17.2 / 18.1 / 19.4 / 20.7 dB.
  EXPECT_NEAR(none, 17.2, 0.5);
  EXPECT_LT(none + 0.5, hadamard);
  EXPECT_LT(hadamard + 0.5, block);
  EXPECT_LT(block + 0.5, full);
  EXPECT_NEAR(full, 20.7, 0.5);
  // The SQNR model holds on at least 30 of the 35 linears (issue 4).
  int within = 0;
  for (const LinearReport& linear : cat32.linears) {
    within +=
        std::abs(linear.sqnr_after->predicted_sqnr_db - linear.sqnr_after->measured_sqnr_db) <= 1.0;
  }
  EXPECT_GE(within, 30);
  for (const SiteReport& site : cat32.sites) {
    EXPECT_EQ(site.transform, "cat");
    EXPECT_EQ(site.block_size, 32) << site.key;
    EXPECT_LT(site.max_inverse_residual, 1e-6) << site.key;
    EXPECT_GE(site.condition, 1.0) << site.key;
  }
}

// GPTQ's output error on calibration samples is no larger than RTN's, for
// every layer, with and without a transform (issue 3).
TEST_F(Stories260KQuantizerTest, GptqOutputErrorIsNoLargerThanRtnOnEveryLayer) {
  CATQ_REQUIRE_SHARED();
  for (Method method : {Method::kRtn, Method::kCat}) {
    Recipe rtn = W4A4(method);
    Recipe gptq = rtn;
    gptq.weight_quantizer = WeightQuantizer::kGptq;
    const QuantizationReport a = Quantize(rtn, "a");
    const QuantizationReport b = Quantize(gptq, "b");
    ASSERT_EQ(a.linears.size(), b.linears.size());
    std::map<int64_t, std::pair<double, double>> noise_by_layer;  // rtn, gptq
    for (size_t i = 0; i < a.linears.size(); ++i) {
      // Relative noise energy 10^(-SQNR/10) of the weight alone, W x vs Q(W) x.
      noise_by_layer[a.linears[i].layer].first +=
          std::pow(10.0, -a.linears[i].sqnr_after->measured_weight_sqnr_db / 10);
      noise_by_layer[b.linears[i].layer].second +=
          std::pow(10.0, -b.linears[i].sqnr_after->measured_weight_sqnr_db / 10);
    }
    for (const auto& [layer, noise] : noise_by_layer) {
      EXPECT_LE(noise.second, noise.first) << MethodName(method) << " layer " << layer;
    }
  }
}

TEST_F(Stories260KQuantizerTest, OnlineTensorsAndSiteRecordsFollowTheContract) {
  CATQ_REQUIRE_SHARED();
  Quantize(W4A4(Method::kCat, 32), "cat32");
  absl::StatusOr<SafetensorsDir> out = SafetensorsDir::Open(dir_->Join("cat32"));
  ASSERT_OK(out);
  const absl::StatusOr<MixingMatrix> mix172 = MixingMatrix::Create(172, {});
  const absl::StatusOr<MixingMatrix> mix64 = MixingMatrix::Create(64, {});
  ASSERT_OK(mix172);
  ASSERT_OK(mix64);
  for (int layer = 0; layer < 5; ++layer) {
    const std::string p = absl::StrCat("model.layers.", layer, ".catq.");
    auto shape = [&](const std::string& name) {
      absl::StatusOr<TensorView> view = out->Get(p + name);
      EXPECT_TRUE(view.ok()) << name << ": " << view.status();
      EXPECT_EQ(view->dtype(), DType::kF32);
      return view.ok() ? view->shape() : std::vector<int64_t>{};
    };
    EXPECT_EQ(shape("attn_in.blocks"), (std::vector<int64_t>{2, 32, 32}));
    EXPECT_EQ(shape("mlp_out.blocks"), (std::vector<int64_t>{5, 32, 32}));
    EXPECT_EQ(shape("mlp_out.blocks_tail"), (std::vector<int64_t>{12, 12}));
    EXPECT_FALSE(out->Contains(p + "attn_in.blocks_tail"));
    EXPECT_EQ(out->Contains(p + "attn_in.rot_q"), mix64->q() > 1);
    if (mix172->q() > 1) {
      EXPECT_EQ(shape("mlp_out.rot_q"), (std::vector<int64_t>{mix172->q(), mix172->q()}));
    }
  }
  const nlohmann::json sites =
      ReadJson(dir_->Join("cat32/config.json"))["quantization_config"]["catq"]["sites"];
  EXPECT_EQ(sites.size(), 20u);
  const nlohmann::json& site = sites["model.layers.3.mlp_out"];
  EXPECT_TRUE(site["online"].get<bool>());
  EXPECT_TRUE(site["hadamard"].get<bool>());
  EXPECT_EQ(site["block_size"].get<int>(), 32);
  EXPECT_FALSE(site["folded"].get<bool>());
  const nlohmann::json report = ReadJson(dir_->Join("cat32/catq_report.json"));
  EXPECT_EQ(report["calibration"]["documents"].get<int>(), 64);
  EXPECT_EQ(report["sites"].size(), 20u);
  EXPECT_FALSE(report["linears"][0]["sqnr_after"]["measured_sqnr_db"].is_null());
}

TEST_F(Stories260KQuantizerTest, StatisticsFileGivesTheSameShardsAsText) {
  CATQ_REQUIRE_SHARED();
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(Model());
  ASSERT_OK(model);
  const InProcessOptions text = Calibrated();
  absl::StatusOr<std::vector<std::vector<int32_t>>> ids = CalibrationSequencesFromText(
      Env::Default(), *model, Model(), text.calibration.text_path, text.calibration.text);
  ASSERT_OK(ids);
  absl::StatusOr<Calibration> calib = CollectSiteStatistics(*model, *ids, {});
  ASSERT_OK(calib);
  const std::string stats = dir_->Join("stats.safetensors");
  ASSERT_OK(WriteSiteStatistics(Env::Default(), stats, calib->statistics));
  InProcessOptions from_file;
  from_file.replace = true;
  from_file.calibration.statistics_path = stats;
  for (Method method : {Method::kSmoothQuant, Method::kCat}) {
    Quantize(W4A4(method), "from_text", text);
    const QuantizationReport report = Quantize(W4A4(method), "from_file", from_file);
    EXPECT_EQ(report.calibration.source, "statistics");
    EXPECT_EQ(ReadBytes(dir_->Join("from_text/model.safetensors")),
              ReadBytes(dir_->Join("from_file/model.safetensors")))
        << MethodName(method);
  }
}

class SiteQuantizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions options;
    options.preset = "tiny";
    ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir_.Join("m")));
    absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir_.Join("m"));
    ASSERT_OK(model);
    model_ = std::make_unique<LlamaModel>(std::move(*model));
    std::vector<std::vector<int32_t>> ids;
    for (int s = 0; s < 4; ++s) {
      std::vector<int32_t> seq = {1};
      for (int t = 1; t < 50; ++t) seq.push_back(3 + (s * 37 + t * 11) % 200);
      ids.push_back(seq);
    }
    absl::StatusOr<Calibration> calib = CollectSiteStatistics(*model_, ids, {});
    ASSERT_OK(calib);
    calibration_ = std::move(*calib);
  }

  const SiteStatistics& Stats(Site site) {
    return calibration_.statistics.at(SiteQualifiedName(1, site));
  }

  testing::TempDir dir_;
  std::unique_ptr<LlamaModel> model_;
  Calibration calibration_;
};

TEST_F(SiteQuantizerTest, PackedWeightsDecodeToTheTransformedWeights) {
  for (Method method : {Method::kRtn, Method::kSmoothQuant, Method::kHadamard, Method::kCat}) {
    SCOPED_TRACE(MethodName(method));
    const Recipe recipe = W4A4(method, 16);
    absl::StatusOr<SiteWeights> weights = ReadSiteWeights(*model_, 1, Site::kMlpIn, recipe);
    ASSERT_OK(weights);
    ASSERT_EQ(weights->modules.size(), 2u);
    absl::StatusOr<SiteResult> result =
        QuantizeSite(recipe, *weights, &Stats(Site::kMlpIn),
                     &calibration_.samples.at(SiteQualifiedName(1, Site::kMlpIn)));
    ASSERT_OK(result);
    EXPECT_EQ(result->record.online, method != Method::kRtn);
    EXPECT_EQ(result->record.hadamard, method == Method::kHadamard || method == Method::kCat);
    EXPECT_EQ(result->online.blocks.has_value(),
              method == Method::kSmoothQuant || method == Method::kCat);
    for (const LinearReport& linear : result->linears) {
      EXPECT_LE(linear.max_error_steps, 0.5 + 1e-4) << linear.module;
      EXPECT_GT(linear.weight_sqnr_db, 10.0) << linear.module;
      ASSERT_TRUE(linear.sqnr_after.has_value());
    }
    absl::StatusOr<std::vector<TensorSpec>> specs =
        PlanSiteTransformSpecs(recipe, 1, Site::kMlpIn, weights->dim(), false);
    ASSERT_OK(specs);
    for (const TensorSpec& spec : *specs) {
      const bool tail = absl::EndsWith(spec.name, ".blocks_tail");
      const bool rot = absl::EndsWith(spec.name, ".rot_q");
      const auto& tensor =
          tail ? result->online.blocks_tail : (rot ? result->online.rot_q : result->online.blocks);
      ASSERT_TRUE(tensor.has_value()) << spec.name;
      EXPECT_EQ(tensor->shape, spec.shape) << spec.name;
    }
  }
}

// The stage timings the server exports (catq_task_duration_seconds{kind=
// solve|quantize|pack}) partition the site's time: each is counted once, so
// together they never exceed it, and every stage that ran took some time.
TEST_F(SiteQuantizerTest, StageSecondsPartitionTheSiteTime) {
  const Recipe recipe = W4A4(Method::kCat, 16);
  absl::StatusOr<SiteWeights> weights = ReadSiteWeights(*model_, 1, Site::kMlpIn, recipe);
  ASSERT_OK(weights);
  absl::StatusOr<SiteResult> result =
      QuantizeSite(recipe, *weights, &Stats(Site::kMlpIn),
                   &calibration_.samples.at(SiteQualifiedName(1, Site::kMlpIn)));
  ASSERT_OK(result);
  const StageSeconds& stages = result->report.stages;
  for (double stage : {stages.solve, stages.quantize, stages.pack, stages.measure}) {
    EXPECT_GT(stage, 0.0);
  }
  EXPECT_LE(stages.solve + stages.quantize + stages.pack + stages.measure, result->report.seconds);
}

// The blocks of B as QuantizeSite stores them (float32, [d/k, k, k] then the
// tail), as one dense d x d matrix.
Eigen::MatrixXd StoredBlockDiagonal(const SiteTransformTensors& online, int64_t d, int64_t k) {
  Eigen::MatrixXd dense = Eigen::MatrixXd::Zero(d, d);
  const std::vector<float>& blocks = online.blocks->values;
  for (int64_t b = 0; b < d / k; ++b) {
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) dense(b * k + i, b * k + j) = blocks[(b * k + i) * k + j];
    }
  }
  const int64_t r = d % k;
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j < r; ++j) {
      dense(d - r + i, d - r + j) = online.blocks_tail->values[i * r + j];
    }
  }
  return dense;
}

double ConditionNumberOf(const Eigen::MatrixXd& m) {
  const Eigen::VectorXd sigma = Eigen::JacobiSVD<Eigen::MatrixXd>(m).singularValues();
  return sigma(0) / sigma(sigma.size() - 1);
}

// cond(T) in the report is the solve's (one SVD per block, before the
// float32 rounding), and it is cond_2 of the whole T: the largest singular
// value over all blocks over the smallest, which on mlp_out exceeds the
// worst block's own ratio.
TEST_F(SiteQuantizerTest, ReportsTheConditionNumberOfTheStoredTransform) {
  const int64_t k = 16;
  Recipe recipe = W4A4(Method::kCat, k);
  recipe.cat_hadamard = false;
  absl::StatusOr<SiteWeights> weights = ReadSiteWeights(*model_, 1, Site::kMlpOut, recipe);
  ASSERT_OK(weights);
  absl::StatusOr<SiteResult> result =
      QuantizeSite(recipe, *weights, &Stats(Site::kMlpOut), nullptr);
  ASSERT_OK(result);
  const int64_t d = weights->dim();
  ASSERT_TRUE(result->online.blocks.has_value());
  ASSERT_TRUE(result->online.blocks_tail.has_value());  // d = 172 = 10 * 16 + 12
  const Eigen::MatrixXd dense = StoredBlockDiagonal(result->online, d, k);
  double worst_block = 1.0;
  for (int64_t begin = 0; begin < d; begin += k) {
    const int64_t n = std::min(k, d - begin);
    worst_block = std::max(worst_block, ConditionNumberOf(dense.block(begin, begin, n, n)));
  }
  const double whole = ConditionNumberOf(dense);
  ASSERT_GT(whole, 1.01 * worst_block);  // else this test could not tell them apart
  // The stored blocks are the solved ones rounded to float32.
  EXPECT_NEAR(result->report.condition, whole, 1e-5 * whole);
}

TEST_F(SiteQuantizerTest, MissingOrMismatchedStatisticsAreNamed) {
  const Recipe cat = W4A4(Method::kCat, 16);
  absl::StatusOr<SiteWeights> weights = ReadSiteWeights(*model_, 1, Site::kMlpOut, cat);
  ASSERT_OK(weights);
  EXPECT_STATUS(QuantizeSite(cat, *weights, nullptr, nullptr), absl::StatusCode::kInvalidArgument,
                "model.layers.1.mlp_out: method cat with the rtn weight quantizer needs "
                "calibration statistics");
  EXPECT_STATUS(QuantizeSite(cat, *weights, &Stats(Site::kMlpIn), nullptr),
                absl::StatusCode::kInvalidArgument,
                "model.layers.1.mlp_out: statistics have dim 64, the site's weights 172");
  absl::StatusOr<SiteStatistics> blocks8 = SiteStatistics::Create(172, {.block_size = 8});
  ASSERT_OK(blocks8);
  ASSERT_OK(blocks8->Accumulate(calibration_.samples.at("model.layers.1.mlp_out")));
  EXPECT_STATUS(QuantizeSite(cat, *weights, &*blocks8, nullptr), absl::StatusCode::kInvalidArgument,
                "block CAT with k = 16 needs the full Sx");
  Recipe gptq = W4A4(Method::kHadamard);
  gptq.weight_quantizer = WeightQuantizer::kGptq;
  EXPECT_STATUS(QuantizeSite(gptq, *weights, &*blocks8, nullptr),
                absl::StatusCode::kInvalidArgument, "gptq needs the full Sx");
}

TEST_F(SiteQuantizerTest, SmoothQuantNeedsChannelMaxima) {
  const std::string path = dir_.Join("s.safetensors");
  ASSERT_OK(WriteSiteStatistics(Env::Default(), path, calibration_.statistics));
  // A file written by another tool may lack .absmax; rebuild one without it.
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_OK(file);
  std::vector<TensorSpec> specs;
  std::vector<std::string> bytes;
  for (const TensorInfo& info : file->tensors()) {
    if (absl::EndsWith(info.name, ".absmax")) continue;
    specs.push_back({info.name, info.dtype, info.shape});
    bytes.emplace_back(file->View(info).bytes());
  }
  const std::string stripped = dir_.Join("no_absmax.safetensors");
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(Env::Default(), stripped, specs);
  ASSERT_OK(writer);
  for (const std::string& b : bytes) ASSERT_OK((*writer)->Append(b));
  ASSERT_OK((*writer)->Finish());
  absl::StatusOr<SiteStatisticsMap> read = ReadSiteStatistics(stripped);
  ASSERT_OK(read);
  const Recipe smooth = W4A4(Method::kSmoothQuant);
  absl::StatusOr<SiteWeights> weights = ReadSiteWeights(*model_, 1, Site::kAttnIn, smooth);
  ASSERT_OK(weights);
  EXPECT_STATUS(QuantizeSite(smooth, *weights, &read->at("model.layers.1.attn_in"), nullptr),
                absl::StatusCode::kInvalidArgument,
                "model.layers.1.attn_in: smoothquant needs the per-channel activation maxima");
}

// Without samples QuantizeSite transforms the moved-in weights in place
// instead of a copy; the stored bytes and error figures must not depend on
// which of the two paths ran.
TEST_F(SiteQuantizerTest, InPlacePathStoresTheSameBytesAsTheMeasuringPath) {
  Recipe gptq = W4A4(Method::kCat, 16);
  gptq.weight_quantizer = WeightQuantizer::kGptq;
  for (const Recipe& recipe :
       {W4A4(Method::kRtn), W4A4(Method::kHadamard), W4A4(Method::kCat, 16), gptq}) {
    SCOPED_TRACE(MethodName(recipe.method));
    absl::StatusOr<SiteWeights> weights = ReadSiteWeights(*model_, 1, Site::kMlpIn, recipe);
    ASSERT_OK(weights);
    const RowMatrixXf& samples = calibration_.samples.at(SiteQualifiedName(1, Site::kMlpIn));
    absl::StatusOr<SiteResult> measured =
        QuantizeSite(recipe, *weights, &Stats(Site::kMlpIn), &samples);
    absl::StatusOr<SiteResult> in_place =
        QuantizeSite(recipe, std::move(*weights), &Stats(Site::kMlpIn), nullptr);
    ASSERT_OK(measured);
    ASSERT_OK(in_place);
    ASSERT_EQ(measured->packed.size(), in_place->packed.size());
    EXPECT_EQ(in_place->report.dim, measured->report.dim);
    for (size_t i = 0; i < measured->packed.size(); ++i) {
      EXPECT_EQ(in_place->packed[i].bytes, measured->packed[i].bytes) << i;
      EXPECT_EQ(in_place->packed[i].weight_sqnr_db, measured->packed[i].weight_sqnr_db) << i;
      EXPECT_EQ(in_place->packed[i].max_error_steps, measured->packed[i].max_error_steps) << i;
    }
  }
}

}  // namespace
}  // namespace catq
