// Tests of CollectSiteStatistics and the calibration text: statistics equal
// those of the activations the forward pass produces, on any thread count,
// with and without folded norm gains.
#include "core/cat/calibration.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/cat/folded_norm_weights.h"
#include "core/model/llama2c_import.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/model/synth.h"
#include "core/model/text_documents.h"
#include "core/tensor/safetensors_file.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// Keeps every activation of one site, in sequence order.
class CaptureHook : public SiteHook {
 public:
  CaptureHook(int64_t layer, Site site, int64_t sequences)
      : layer_(layer), site_(site), rows_(static_cast<size_t>(sequences)) {}
  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> x) override {
    if (call.layer == layer_ && call.site == site_) rows_[static_cast<size_t>(call.sequence)] = x;
    return absl::OkStatus();
  }
  RowMatrixXf All() const {
    int64_t total = 0;
    for (const RowMatrixXf& r : rows_) total += r.rows();
    RowMatrixXf all(total, rows_[0].cols());
    int64_t at = 0;
    for (const RowMatrixXf& r : rows_) {
      all.middleRows(at, r.rows()) = r;
      at += r.rows();
    }
    return all;
  }

 private:
  const int64_t layer_;
  const Site site_;
  std::vector<RowMatrixXf> rows_;
};

class CalibrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SynthOptions options;
    options.preset = "tiny";
    ASSERT_OK(WriteSyntheticModel(Env::Default(), options, dir_.Join("m")));
    absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir_.Join("m"));
    ASSERT_OK(model);
    model_ = std::make_unique<LlamaModel>(std::move(*model));
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> token(
        3, static_cast<int32_t>(model_->config().vocab_size) - 1);
    for (int64_t length : {40, 3, 97, 64, 12, 80}) {
      std::vector<int32_t> ids = {1};
      for (int64_t i = 1; i < length; ++i) ids.push_back(token(rng));
      sequences_.push_back(ids);
    }
  }

  absl::StatusOr<Calibration> Collect(int threads, bool fold, int64_t block_size = 0,
                                      int64_t samples = 100) {
    CalibrationOptions options;
    options.forward.num_threads = threads;
    options.forward.max_batch_tokens = 128;
    options.fold_norm_gains = fold;
    options.block_size = block_size;
    options.sample_tokens = samples;
    return CollectSiteStatistics(*model_, sequences_, options);
  }

  // The activations of (layer, site) as the forward pass makes them.
  RowMatrixXf Activations(int64_t layer, Site site, bool fold) {
    CaptureHook hook(layer, site, static_cast<int64_t>(sequences_.size()));
    FoldedNormWeightProvider folded(*model_);
    ModelWeightProvider plain(*model_);
    ForwardOptions options;
    options.num_threads = 1;
    options.weights = fold ? static_cast<WeightProvider*>(&folded) : &plain;
    options.hooks = {&hook};
    EXPECT_OK(RunForward(*model_, sequences_, options));
    return hook.All();
  }

  testing::TempDir dir_;
  std::unique_ptr<LlamaModel> model_;
  std::vector<std::vector<int32_t>> sequences_;
};

TEST_F(CalibrationTest, EverySiteOfEveryLayerWithTheSiteWidth) {
  absl::StatusOr<Calibration> calib = Collect(2, true);
  ASSERT_OK(calib);
  const LlamaConfig& config = model_->config();
  EXPECT_EQ(calib->statistics.size(), static_cast<size_t>(4 * config.num_hidden_layers));
  EXPECT_OK(CheckStatisticsCover(config, calib->statistics));
  EXPECT_EQ(calib->sequences, 6);
  EXPECT_EQ(calib->tokens, 40 + 3 + 97 + 64 + 12 + 80);
  for (const auto& [key, stats] : calib->statistics) {
    EXPECT_EQ(stats.tokens(), calib->tokens) << key;
    EXPECT_TRUE(stats.is_full()) << key;
  }
  EXPECT_EQ(calib->statistics.at("model.layers.1.mlp_out").dim(), 172);
  EXPECT_EQ(calib->samples.at("model.layers.1.mlp_out").rows(), 100);
}

TEST_F(CalibrationTest, StatisticsAndSamplesAreThoseOfTheForwardActivations) {
  for (bool fold : {true, false}) {
    SCOPED_TRACE(fold ? "folded gains" : "plain gains");
    absl::StatusOr<Calibration> calib = Collect(2, fold);
    ASSERT_OK(calib);
    for (Site site : {Site::kAttnIn, Site::kMlpOut}) {
      const RowMatrixXf x = Activations(1, site, fold);
      const RowMatrixXd xd = x.cast<double>();
      const Eigen::MatrixXd want = xd.transpose() * xd;
      const std::string key = SiteQualifiedName(1, site);
      absl::StatusOr<Eigen::MatrixXd> got = calib->statistics.at(key).SumFull();
      ASSERT_OK(got);
      EXPECT_LT((*got - want).cwiseAbs().maxCoeff(), 1e-9 * want.cwiseAbs().maxCoeff()) << key;
      EXPECT_EQ(calib->samples.at(key), x.topRows(100)) << key;
    }
  }
}

TEST_F(CalibrationTest, FoldingDividesTheNormInputsByTheGain) {
  absl::StatusOr<Calibration> folded = Collect(1, true);
  absl::StatusOr<Calibration> plain = Collect(1, false);
  ASSERT_OK(folded);
  ASSERT_OK(plain);
  absl::StatusOr<std::vector<float>> gain =
      model_->GetFloat(NormWeightName(0, NormKind::kPostAttentionLayernorm));
  ASSERT_OK(gain);
  const Eigen::VectorXd g =
      Eigen::Map<const Eigen::VectorXf>(gain->data(), gain->size()).cast<double>();
  absl::StatusOr<Eigen::MatrixXd> a = folded->statistics.at("model.layers.0.mlp_in").SumFull();
  absl::StatusOr<Eigen::MatrixXd> b = plain->statistics.at("model.layers.0.mlp_in").SumFull();
  ASSERT_OK(a);
  ASSERT_OK(b);
  // x_plain = g . x_folded, so Sx_plain = D Sx_folded D.
  const Eigen::MatrixXd expect = g.asDiagonal() * *a * g.asDiagonal();
  EXPECT_LT((expect - *b).cwiseAbs().maxCoeff(), 1e-5 * b->cwiseAbs().maxCoeff());
  // Sites after no norm are the same either way (the model's function is).
  absl::StatusOr<Eigen::MatrixXd> c = folded->statistics.at("model.layers.1.mlp_out").SumFull();
  absl::StatusOr<Eigen::MatrixXd> d = plain->statistics.at("model.layers.1.mlp_out").SumFull();
  EXPECT_LT((*c - *d).cwiseAbs().maxCoeff(), 1e-4 * d->cwiseAbs().maxCoeff());
}

// The statistics are rounded in sequence order whatever the thread count
// (job outputs are compared byte for byte across worker counts).
TEST_F(CalibrationTest, SameBitsOnAnyThreadCount) {
  for (int64_t block_size : {0, 16}) {
    SCOPED_TRACE(absl::StrCat("block_size ", block_size));
    absl::StatusOr<Calibration> one = Collect(1, true, block_size);
    ASSERT_OK(one);
    for (int threads : {2, 3, 4}) {
      SCOPED_TRACE(absl::StrCat(threads, " threads"));
      absl::StatusOr<Calibration> many = Collect(threads, true, block_size);
      ASSERT_OK(many);
      ASSERT_EQ(many->statistics.size(), one->statistics.size());
      for (const auto& [key, stats] : one->statistics) {
        const SiteStatistics& other = many->statistics.at(key);
        ASSERT_EQ(other.NumBlocks(), stats.NumBlocks()) << key;
        for (int64_t b = 0; b < stats.NumBlocks(); ++b) {
          EXPECT_EQ(other.UpperSumBlock(b), stats.UpperSumBlock(b)) << key << " block " << b;
        }
        EXPECT_EQ(other.tokens(), stats.tokens()) << key;
        for (ActivationRange range : {ActivationRange::kAsymmetric, ActivationRange::kSymmetric}) {
          EXPECT_EQ(other.range_sq_sum(range), stats.range_sq_sum(range)) << key;
        }
        EXPECT_EQ(other.channel_absmax(), stats.channel_absmax()) << key;
        EXPECT_EQ(many->samples.at(key), one->samples.at(key)) << key;
      }
    }
  }
}

// An activation that overflows fails the call with the site named, on any
// thread count, and never leaves a worker waiting for its turn.
TEST_F(CalibrationTest, AnOverflowingSiteFailsEveryThreadCount) {
  const std::string path = dir_.Join("m/model.safetensors");
  {
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    ASSERT_OK(file);
    const TensorInfo* up = file->Find("model.layers.1.mlp.up_proj.weight");
    ASSERT_NE(up, nullptr);
    ASSERT_EQ(up->dtype, DType::kF32);
    const std::vector<float> huge(static_cast<size_t>(up->NumElements()), 3e38f);
    std::fstream out(path, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(static_cast<std::streamoff>(file->data_offset() + up->data_begin));
    out.write(reinterpret_cast<const char*>(huge.data()),
              static_cast<std::streamsize>(huge.size() * sizeof(float)));
    ASSERT_TRUE(out.good());
  }
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir_.Join("m"));
  ASSERT_OK(model);
  model_ = std::make_unique<LlamaModel>(std::move(*model));
  for (int threads : {1, 2, 3, 4}) {
    SCOPED_TRACE(absl::StrCat(threads, " threads"));
    EXPECT_STATUS(Collect(threads, false), absl::StatusCode::kInvalidArgument,
                  "model.layers.1.mlp_out");
  }
}

TEST_F(CalibrationTest, BadInputIsNamed) {
  EXPECT_STATUS(CollectSiteStatistics(*model_, {}, {}), absl::StatusCode::kInvalidArgument,
                "no sequences");
  sequences_[2][5] = 100000;
  EXPECT_STATUS(Collect(1, true), absl::StatusCode::kInvalidArgument, "sequence 2");
  sequences_[2][5] = 5;
  absl::StatusOr<Calibration> calib = Collect(1, true);
  ASSERT_OK(calib);
  SiteStatisticsMap missing = calib->statistics;
  missing.erase("model.layers.1.attn_out");
  EXPECT_STATUS(CheckStatisticsCover(model_->config(), missing), absl::StatusCode::kInvalidArgument,
                "model.layers.1.attn_out: no statistics");
  SiteStatisticsMap wrong = calib->statistics;
  wrong.erase("model.layers.0.mlp_out");
  wrong.emplace("model.layers.0.mlp_out", *SiteStatistics::Create(64));
  EXPECT_STATUS(CheckStatisticsCover(model_->config(), wrong), absl::StatusCode::kInvalidArgument,
                "model.layers.0.mlp_out: dim 64, the model's site has 172 channels");
}

// stories260K (../shared) imported to a Hugging Face directory at `dir`.
absl::StatusOr<LlamaModel> ImportStories260K(const std::string& dir) {
  absl::Status imported =
      ImportLlama2c(Env::Default(), testing::SharedPath("models/stories260K/stories260K.bin"),
                    testing::SharedPath("models/stories260K/tok512.bin"), dir);
  if (!imported.ok()) return imported;
  return LlamaModel::Open(dir);
}

TEST(CalibrationText, FirstDocumentsWithinTheTokenBudget) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  absl::StatusOr<LlamaModel> model = ImportStories260K(dir.Join("hf"));
  ASSERT_OK(model);
  const std::string text = testing::SharedPath("data/tinystories_197k.txt");
  absl::StatusOr<std::vector<std::vector<int32_t>>> first64 =
      CalibrationSequencesFromText(Env::Default(), *model, dir.Join("hf"), text, {64, 0});
  ASSERT_OK(first64);
  EXPECT_EQ(first64->size(), 64u);
  int64_t tokens = 0;
  for (const auto& ids : *first64) {
    EXPECT_EQ(ids[0], 1);
    EXPECT_LE(ids.size(), 512u);
    tokens += static_cast<int64_t>(ids.size());
  }
  absl::StatusOr<std::vector<std::vector<int32_t>>> budget =
      CalibrationSequencesFromText(Env::Default(), *model, dir.Join("hf"), text, {0, 1000});
  ASSERT_OK(budget);
  int64_t budget_tokens = 0;
  for (const auto& ids : *budget) budget_tokens += static_cast<int64_t>(ids.size());
  EXPECT_EQ(budget_tokens, 1000);
  EXPECT_EQ((*budget)[0], (*first64)[0]);
  EXPECT_STATUS(CalibrationSequencesFromText(Env::Default(), *model, dir.Join("hf"),
                                             dir.Join("absent.txt"), {}),
                absl::StatusCode::kNotFound, "absent.txt");
}

// The same documents as token ids (BOS included, as the text path adds it)
// give the same sequences, so statistics from either agree exactly.
TEST(CalibrationTokenIds, SameSequencesAsTheText) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  absl::StatusOr<LlamaModel> model = ImportStories260K(dir.Join("hf"));
  ASSERT_OK(model);
  const std::string text = testing::SharedPath("data/tinystories_197k.txt");
  absl::StatusOr<std::vector<std::vector<int32_t>>> from_text =
      CalibrationSequencesFromText(Env::Default(), *model, dir.Join("hf"), text, {16, 0});
  ASSERT_OK(from_text);
  absl::StatusOr<std::vector<std::string>> documents = ReadTextDocuments(Env::Default(), text);
  ASSERT_OK(documents);
  absl::StatusOr<Llama2cTokenizer> tokenizer =
      Llama2cTokenizer::Load(Env::Default(), dir.Join("hf/tokenizer.bin"), 512);
  ASSERT_OK(tokenizer);
  std::string bytes;
  for (const std::vector<int32_t>& ids : TokenizeDocuments(*tokenizer, *documents)) {
    for (int32_t id : ids) bytes.append(reinterpret_cast<const char*>(&id), sizeof(id));
    const int32_t separator = -1;
    bytes.append(reinterpret_cast<const char*>(&separator), sizeof(separator));
  }
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("calib.ids"), bytes));
  absl::StatusOr<std::vector<std::vector<int32_t>>> from_ids =
      CalibrationSequencesFromTokenIds(Env::Default(), *model, dir.Join("calib.ids"), {16, 0});
  ASSERT_OK(from_ids);
  EXPECT_EQ(*from_ids, *from_text);
  // An id outside the model's vocabulary names the file and its offset.
  const int32_t too_big = 512;
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("bad.ids"),
                                std::string(reinterpret_cast<const char*>(&too_big), 4)));
  EXPECT_STATUS(CalibrationSequencesFromTokenIds(Env::Default(), *model, dir.Join("bad.ids"), {}),
                absl::StatusCode::kInvalidArgument, "bad.ids: id 512 at byte offset 0");
}

}  // namespace
}  // namespace catq
