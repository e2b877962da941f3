// Tests of sequential calibration: layer 0 is measured as the float mode
// measures it, later layers behind the quantized layers before them, with
// the same bits on any thread count; and on stories260K the statistics of
// the last layer are those of the stored output run as evaluation runs it,
// with the mode in the report.
#include "core/output/sequential_calibration.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "core/cat/site_statistics_hook.h"
#include "core/eval/online_quantization_hook.h"
#include "core/eval/quantized_model.h"
#include "core/eval/quantized_weight_provider.h"
#include "core/model/llama2c_import.h"
#include "core/model/synth.h"
#include "core/output/calibration_data.h"
#include "core/output/in_process_quantizer.h"
#include "nlohmann/json.hpp"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::testing::HasSubstr;

Recipe CatW4A4(int block_size) {
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = block_size;
  recipe.activation_bits = 4;
  return recipe;
}

// Two statistics hold the same bits: sums, norms, ranges and tokens.
void ExpectSameBits(const SiteStatistics& a, const SiteStatistics& b, const std::string& key) {
  absl::StatusOr<Eigen::MatrixXd> sum_a = a.SumFull();
  absl::StatusOr<Eigen::MatrixXd> sum_b = b.SumFull();
  ASSERT_OK(sum_a);
  ASSERT_OK(sum_b);
  EXPECT_TRUE(*sum_a == *sum_b) << key << ": max difference "
                                << (*sum_a - *sum_b).cwiseAbs().maxCoeff();
  EXPECT_EQ(a.norm_sq_sum(), b.norm_sq_sum()) << key;
  for (ActivationRange range : {ActivationRange::kAsymmetric, ActivationRange::kSymmetric}) {
    EXPECT_EQ(a.range_sq_sum(range), b.range_sq_sum(range)) << key;
  }
  EXPECT_EQ(a.tokens(), b.tokens()) << key;
}

class SequentialCalibrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions options;
    options.preset = "tiny";
    ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir_.Join("m")));
    absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir_.Join("m"));
    ASSERT_OK(model);
    model_ = std::make_unique<LlamaModel>(std::move(*model));
    std::mt19937 rng(11);
    std::uniform_int_distribution<int32_t> token(
        3, static_cast<int32_t>(model_->config().vocab_size) - 1);
    for (int64_t length : {40, 3, 97, 64, 12, 80, 7, 33, 120, 2, 56, 71}) {
      std::vector<int32_t> ids = {1};
      for (int64_t i = 1; i < length; ++i) ids.push_back(token(rng));
      sequences_.push_back(ids);
    }
  }

  CalibrationOptions Options(int threads) const {
    CalibrationOptions options;
    options.forward.num_threads = threads;
    options.sample_tokens = 100;
    return options;
  }

  testing::TempDir dir_;
  std::unique_ptr<LlamaModel> model_;
  std::vector<std::vector<int32_t>> sequences_;
};

TEST_F(SequentialCalibrationTest, LayerZeroIsTheFloatModesAndLaterLayersDiffer) {
  absl::StatusOr<Calibration> fp = CollectSiteStatistics(*model_, sequences_, Options(2));
  absl::StatusOr<Calibration> sequential =
      CollectSequentialSiteStatistics(*model_, CatW4A4(16), sequences_, Options(2));
  ASSERT_OK(fp);
  ASSERT_OK(sequential);
  ASSERT_EQ(sequential->statistics.size(), fp->statistics.size());
  EXPECT_EQ(sequential->tokens, fp->tokens);
  EXPECT_EQ(sequential->sequences, fp->sequences);
  for (Site site : kAllSites) {
    const std::string key = SiteQualifiedName(0, site);
    ExpectSameBits(sequential->statistics.at(key), fp->statistics.at(key), key);
    EXPECT_TRUE(sequential->samples.at(key) == fp->samples.at(key)) << key;
  }
  // Layer 1 reads what the quantized layer 0 computes: W4A4 moves it.
  const std::string key = SiteQualifiedName(1, Site::kAttnIn);
  absl::StatusOr<Eigen::MatrixXd> seq_sum = sequential->statistics.at(key).SumFull();
  absl::StatusOr<Eigen::MatrixXd> fp_sum = fp->statistics.at(key).SumFull();
  ASSERT_OK(seq_sum);
  ASSERT_OK(fp_sum);
  const double relative = (*seq_sum - *fp_sum).norm() / fp_sum->norm();
  EXPECT_GT(relative, 1e-3) << key;
  EXPECT_LT(relative, 0.5) << key;  // Still the same model, roughly.
}

TEST_F(SequentialCalibrationTest, SameBitsOnAnyThreadCount) {
  absl::StatusOr<Calibration> one =
      CollectSequentialSiteStatistics(*model_, CatW4A4(16), sequences_, Options(1));
  ASSERT_OK(one);
  for (int threads : {2, 3}) {
    SCOPED_TRACE(absl::StrCat(threads, " threads"));
    absl::StatusOr<Calibration> many =
        CollectSequentialSiteStatistics(*model_, CatW4A4(16), sequences_, Options(threads));
    ASSERT_OK(many);
    ASSERT_EQ(many->statistics.size(), one->statistics.size());
    for (const auto& [key, stats] : one->statistics) {
      ExpectSameBits(stats, many->statistics.at(key), key);
      EXPECT_TRUE(one->samples.at(key) == many->samples.at(key)) << key;
    }
  }
}

TEST_F(SequentialCalibrationTest, PrecomputedStatisticsCannotBeSequential) {
  CalibrationInput input;
  input.statistics_path = dir_.Join("stats.safetensors");  // Refused before it is read.
  input.sequential = true;
  CalibrationReport report;
  absl::StatusOr<CalibrationData> data =
      LoadCalibration(Env::Default(), *model_, dir_.Join("m"), CatW4A4(16), input, &report);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(data.status().message(), HasSubstr("sequential"));
}

// Forwards the calls of one site to `inner` only.
class OneSiteHook : public SiteHook {
 public:
  OneSiteHook(int64_t layer, Site site, SiteHook* inner)
      : layer_(layer), site_(site), inner_(inner) {}
  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> x) override {
    if (call.layer != layer_ || call.site != site_) return absl::OkStatus();
    return inner_->OnSite(call, x);
  }

 private:
  const int64_t layer_;
  const Site site_;
  SiteHook* const inner_;
};

// In process on stories260K: the report records the mode, and the last
// layer's attn_in statistics are those of the stored output run as
// evaluation runs it (its layers 0..L-2 quantized by the layer tasks from
// the sequential statistics): so the pass ran the layers exactly as stored.
TEST(SequentialCalibrationStories260KTest, MatchesTheStoredOutputAsEvaluationRunsIt) {
  CATQ_REQUIRE_SHARED();
  Env* env = Env::Default();
  testing::TempDir dir;
  ASSERT_OK(ImportLlama2c(env, testing::SharedPath("models/stories260K/stories260K.bin"),
                          testing::SharedPath("models/stories260K/tok512.bin"), dir.Join("hf")));
  const Recipe recipe = CatW4A4(32);
  InProcessOptions options;
  options.calibration.text_path = testing::SharedPath("data/tinystories_197k.txt");
  options.calibration.text.max_documents = 16;
  options.calibration.sequential = true;
  options.calibration.threads = 2;
  absl::StatusOr<QuantizationReport> report =
      QuantizeModelInProcess(env, dir.Join("hf"), dir.Join("out"), recipe, options);
  ASSERT_OK(report);
  EXPECT_TRUE(report->calibration.sequential);
  const nlohmann::json stored =
      nlohmann::json::parse(testing::ReadTestFile(dir.Join("out/catq_report.json")));
  EXPECT_EQ(stored["calibration"]["mode"], "sequential");

  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.Join("hf"));
  ASSERT_OK(model);
  absl::StatusOr<std::vector<std::vector<int32_t>>> sequences = CalibrationSequencesFromText(
      env, *model, dir.Join("hf"), options.calibration.text_path, options.calibration.text);
  ASSERT_OK(sequences);
  CalibrationOptions calibration;
  calibration.sample_tokens = 0;
  calibration.forward.num_threads = 2;
  absl::StatusOr<Calibration> sequential =
      CollectSequentialSiteStatistics(*model, recipe, *sequences, calibration);
  ASSERT_OK(sequential);

  absl::StatusOr<QuantizedModel> quantized = QuantizedModel::Open(dir.Join("out"));
  ASSERT_OK(quantized);
  const int64_t last = model->config().num_hidden_layers - 1;
  SiteStatisticsHookOptions hook_options;
  hook_options.workers = 2;
  hook_options.first_layer = last;
  hook_options.num_layers = 1;
  SiteStatisticsHook statistics(model->config(), hook_options);
  OneSiteHook capture(last, Site::kAttnIn, &statistics);
  QuantizedWeightProvider weights(*quantized);
  OnlineQuantizationHook online(*quantized);
  ForwardOptions forward;
  forward.num_threads = 2;
  forward.weights = &weights;
  forward.hooks = {&capture, &online};
  ASSERT_OK(RunForward(quantized->model(), *sequences, forward));
  const std::string key = SiteQualifiedName(last, Site::kAttnIn);
  SiteStatisticsMap evaluated = std::move(statistics).TakeStatistics();
  ExpectSameBits(sequential->statistics.at(key), evaluated.at(key), key);
}

}  // namespace
}  // namespace catq
