// ReadLayerCalibration: a layer task reads its own sites' statistics and
// samples from the files of a whole model's calibration.
#include "core/output/calibration_data.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/cat/site_statistics.h"
#include "core/model/llama_weights.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using testing::TempDir;

constexpr int64_t kDim = 24;
constexpr int64_t kLayers = 3;

// Token t of site (layer, s): distinct values per site, so a mixed-up key
// shows as a different sum.
RowMatrixXf SiteActivations(int64_t layer, int s) {
  RowMatrixXf x(5, kDim);
  for (int64_t t = 0; t < x.rows(); ++t) {
    for (int64_t j = 0; j < kDim; ++j) x(t, j) = static_cast<float>(1 + layer * 7 + s * 3 + t - j);
  }
  return x;
}

class LayerCalibrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int64_t layer = 0; layer < kLayers; ++layer) {
      for (int s = 0; s < 4; ++s) {
        const std::string key = SiteQualifiedName(layer, kAllSites[s]);
        absl::StatusOr<SiteStatistics> stats = SiteStatistics::Create(kDim, {.block_size = 8});
        ASSERT_OK(stats);
        ASSERT_OK(stats->Accumulate(SiteActivations(layer, s)));
        statistics_.emplace(key, *std::move(stats));
        samples_.emplace(key, SiteActivations(layer, s));
      }
    }
    files_.statistics_path = dir_.Join("statistics.safetensors");
    files_.samples_path = dir_.Join("samples.safetensors");
    ASSERT_OK(WriteSiteStatistics(Env::Default(), files_.statistics_path, statistics_));
    ASSERT_OK(WriteActivationSamples(Env::Default(), files_.samples_path, samples_));
  }

  TempDir dir_;
  std::map<std::string, SiteStatistics> statistics_;
  std::map<std::string, RowMatrixXf> samples_;
  CalibrationFiles files_;
};

TEST_F(LayerCalibrationTest, ReadsExactlyTheLayersSites) {
  absl::StatusOr<CalibrationData> data = ReadLayerCalibration(Env::Default(), files_, 1);
  ASSERT_OK(data);
  ASSERT_EQ(data->statistics.size(), 4u);
  ASSERT_EQ(data->samples.size(), 4u);
  for (Site site : kAllSites) {
    const std::string key = SiteQualifiedName(1, site);
    SCOPED_TRACE(key);
    ASSERT_TRUE(data->statistics.contains(key));
    const SiteStatistics& read = data->statistics.at(key);
    EXPECT_EQ(read.tokens(), statistics_.at(key).tokens());
    EXPECT_EQ(read.norm_sq_sum(), statistics_.at(key).norm_sq_sum());
    ASSERT_TRUE(data->samples.contains(key));
    EXPECT_EQ(data->samples.at(key), samples_.at(key));
  }
}

TEST_F(LayerCalibrationTest, NoStatisticsMeansNoCalibration) {
  absl::StatusOr<CalibrationData> data = ReadLayerCalibration(Env::Default(), {}, 0);
  ASSERT_OK(data);
  EXPECT_TRUE(data->statistics.empty());
  EXPECT_TRUE(data->samples.empty());
  // Statistics without samples: no samples, statistics all the same.
  data = ReadLayerCalibration(Env::Default(), {files_.statistics_path, ""}, 2);
  ASSERT_OK(data);
  EXPECT_EQ(data->statistics.size(), 4u);
  EXPECT_TRUE(data->samples.empty());
}

TEST_F(LayerCalibrationTest, ALayerTheStatisticsLackIsNotFoundNamingTheSite) {
  EXPECT_STATUS(ReadLayerCalibration(Env::Default(), files_, kLayers), absl::StatusCode::kNotFound,
                "no statistics for model.layers.3.");
}

}  // namespace
}  // namespace catq
