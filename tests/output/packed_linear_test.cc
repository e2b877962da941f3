#include "core/output/packed_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/quant/rtn.h"
#include "core/tensor/half.h"
#include "core/tensor/safetensors_dir.h"
#include "core/tensor/safetensors_writer.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

RowMatrixXf Gaussian(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  RowMatrixXf w(rows, cols);
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = normal(rng);
  return w;
}

WeightQuantOptions W4(int group_size, bool symmetric) {
  WeightQuantOptions options;
  options.group_size = group_size;
  options.symmetric = symmetric;
  return options;
}

// Writes `packed` as a single safetensors file and opens it as a directory.
SafetensorsDir WriteAndOpen(const PackedLinear& packed, const testing::TempDir& dir) {
  const std::string path = dir.Join("linear.safetensors");
  auto writer = SafetensorsWriter::Create(Env::Default(), path, packed.specs);
  EXPECT_OK(writer);
  for (const std::string& bytes : packed.bytes) EXPECT_OK((*writer)->Append(bytes));
  EXPECT_OK((*writer)->Finish());
  auto opened = SafetensorsDir::Open(path);
  EXPECT_OK(opened);
  return std::move(*opened);
}

TEST(PackedLinearSpecs, ShapesFollowTheOutputContract) {
  const std::vector<TensorSpec> specs = PackedLinearSpecs("m", 10, 172, W4(64, false), DType::kF16);
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_EQ(specs[0].name, "m.weight_packed");
  EXPECT_EQ(specs[0].dtype, DType::kI32);
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{10, 22}));  // ceil(172 / 8)
  EXPECT_EQ(specs[1].name, "m.weight_scale");
  EXPECT_EQ(specs[1].dtype, DType::kF16);
  EXPECT_EQ(specs[1].shape, (std::vector<int64_t>{10, 3}));  // 64 + 64 + 44
  EXPECT_EQ(specs[2].name, "m.weight_shape");
  EXPECT_EQ(specs[2].shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(specs[3].name, "m.weight_zero_point");
  EXPECT_EQ(specs[3].shape, (std::vector<int64_t>{2, 3}));  // ceil(10 / 8) rows of words
  EXPECT_EQ(PackedLinearSpecs("m", 10, 172, W4(-1, true), DType::kF32).size(), 3u);
}

// 8-bit weights: four levels per word along the input, zero points four
// rows per word along the output.
TEST(PackedLinearSpecs, EightBitWordsHoldFourLevels) {
  WeightQuantOptions w8 = W4(64, false);
  w8.bits = 8;
  const std::vector<TensorSpec> specs = PackedLinearSpecs("m", 10, 173, w8, DType::kF16);
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{10, 44}));  // ceil(173 / 4)
  EXPECT_EQ(specs[1].shape, (std::vector<int64_t>{10, 3}));
  EXPECT_EQ(specs[3].shape, (std::vector<int64_t>{3, 3}));  // ceil(10 / 4) rows of words
}

// An 8-bit linear written to shards reads back as the grid it was quantized
// to, about 24 dB (4 bits) more accurate than at 4 bits.
TEST(QuantizeAndPackLinear, EightBitLinearsReadBackExactly) {
  testing::TempDir dir;
  const RowMatrixXf w = Gaussian(13, 101, 4);
  for (bool symmetric : {true, false}) {
    SCOPED_TRACE(symmetric ? "sym" : "asym");
    WeightQuantOptions w8 = W4(32, symmetric);
    w8.bits = 8;
    auto packed = QuantizeAndPackLinear("layer.q", w, w8, DType::kF16);
    ASSERT_OK(packed);
    for (size_t i = 0; i < packed->specs.size(); ++i) {
      EXPECT_EQ(packed->bytes[i].size(), packed->specs[i].NumBytes()) << packed->specs[i].name;
    }
    auto four = QuantizeAndPackLinear("layer.q", w, W4(32, symmetric), DType::kF16);
    ASSERT_OK(four);
    EXPECT_GT(packed->weight_sqnr_db, four->weight_sqnr_db + 20.0);
    EXPECT_LE(packed->max_error_steps, 0.5 + 1e-6);
    auto expected = QuantizeRtn(w, w8, StorageScaleRounding(DType::kF16));
    ASSERT_OK(expected);
    SafetensorsDir read = WriteAndOpen(*packed, dir);
    auto qw = ReadPackedLinear(read, "layer.q", w8);
    ASSERT_OK(qw);
    EXPECT_EQ(qw->q, expected->q);
    EXPECT_EQ(qw->zeros, expected->zeros);
    EXPECT_EQ(qw->scales, expected->scales);
  }
}

TEST(QuantizeAndPackLinear, BytesMatchSpecsAndReadBackExactly) {
  testing::TempDir dir;
  const RowMatrixXf w = Gaussian(12, 100, 1);
  for (DType scale_dtype : {DType::kF16, DType::kBF16, DType::kF32}) {
    for (bool symmetric : {true, false}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(scale_dtype), symmetric ? " sym" : " asym"));
      auto packed = QuantizeAndPackLinear("layer.q", w, W4(32, symmetric), scale_dtype);
      ASSERT_OK(packed);
      ASSERT_EQ(packed->bytes.size(), packed->specs.size());
      for (size_t i = 0; i < packed->specs.size(); ++i) {
        EXPECT_EQ(packed->bytes[i].size(), packed->specs[i].NumBytes()) << packed->specs[i].name;
      }
      EXPECT_LE(packed->max_error_steps, 0.5 + 1e-6);
      EXPECT_GT(packed->weight_sqnr_db, 15.0);
      EXPECT_LT(packed->weight_sqnr_db, 30.0);

      SafetensorsDir read = WriteAndOpen(*packed, dir);
      auto qw = ReadPackedLinear(read, "layer.q", W4(32, symmetric));
      ASSERT_OK(qw);
      const RowMatrixXf back = Dequantize(*qw);
      for (Eigen::Index r = 0; r < w.rows(); ++r) {
        for (Eigen::Index c = 0; c < w.cols(); ++c) {
          const float step = qw->scales[r * qw->groups() + c / 32];
          ASSERT_LE(std::fabs(back(r, c) - w(r, c)), 0.5f * step * (1 + 1e-5f)) << r << "," << c;
        }
      }
    }
  }
}

TEST(QuantizeAndPackLinear, RefusesWhatPackQuantizedCannotHold) {
  const RowMatrixXf w = Gaussian(2, 16, 2);
  for (int bits : {2, 3, 5, 7}) {
    WeightQuantOptions options = W4(-1, true);
    options.bits = bits;
    EXPECT_STATUS(QuantizeAndPackLinear("m", w, options, DType::kF16),
                  absl::StatusCode::kInvalidArgument,
                  absl::StrCat("m: weights.bits: the pack-quantized output stores 4-, 6- or 8-bit "
                               "weights; got ",
                               bits));
  }
  EXPECT_STATUS(QuantizeAndPackLinear("m", w, W4(-1, true), DType::kI32),
                absl::StatusCode::kInvalidArgument, "m: scale_dtype: must be F16, BF16 or F32");
  RowMatrixXf bad = w;
  bad(1, 3) = NAN;
  EXPECT_STATUS(QuantizeAndPackLinear("m", bad, W4(-1, true), DType::kF16),
                absl::StatusCode::kInvalidArgument, "m: weight[1, 3] is NaN");
}

TEST(ReadPackedLinear, NamesTheMissingOrMisshapenTensor) {
  testing::TempDir dir;
  auto packed = QuantizeAndPackLinear("x", Gaussian(4, 16, 3), W4(-1, true), DType::kF16);
  ASSERT_OK(packed);
  SafetensorsDir read = WriteAndOpen(*packed, dir);
  EXPECT_STATUS(ReadPackedLinear(read, "y", W4(-1, true)), absl::StatusCode::kNotFound,
                "y.weight_shape");
  // The file has per-channel scales [4, 1]; asking for groups of 8 expects [4, 2].
  EXPECT_STATUS(ReadPackedLinear(read, "x", W4(8, true)), absl::StatusCode::kInvalidArgument,
                "x.weight_scale: shape [4, 1], expected [4, 2]");
  EXPECT_STATUS(ReadPackedLinear(read, "x", W4(-1, false)), absl::StatusCode::kNotFound,
                "x.weight_zero_point");
}

// weight_sqnr_db and max_error_steps are what their definitions give on the
// stored grid (Dequantize of what reads back), to the last bit: the packer
// decodes group by group instead of making a dequantized copy.
TEST(QuantizeAndPackLinear, ErrorFiguresAreTheirDefinitionOnTheStoredGrid) {
  testing::TempDir dir;
  const RowMatrixXf w = Gaussian(9, 100, 3);
  for (int group : {-1, 32}) {
    for (bool symmetric : {true, false}) {
      SCOPED_TRACE(absl::StrCat("group ", group, symmetric ? " sym" : " asym"));
      auto packed = QuantizeAndPackLinear("layer.q", w, W4(group, symmetric), DType::kF16);
      ASSERT_OK(packed);
      auto qw = ReadPackedLinear(WriteAndOpen(*packed, dir), "layer.q", W4(group, symmetric));
      ASSERT_OK(qw);
      const RowMatrixXf back = Dequantize(*qw);
      double signal = 0.0;
      double noise = 0.0;
      double max_steps = 0.0;
      for (Eigen::Index r = 0; r < w.rows(); ++r) {
        for (Eigen::Index c = 0; c < w.cols(); ++c) {
          const double e = static_cast<double>(w(r, c)) - back(r, c);
          signal += static_cast<double>(w(r, c)) * w(r, c);
          noise += e * e;
          const double step = qw->scales[r * qw->groups() + GroupOfColumn(c, group)];
          if (step > 0.0) max_steps = std::max(max_steps, std::fabs(e) / step);
        }
      }
      EXPECT_EQ(packed->weight_sqnr_db, 10.0 * std::log10(signal / noise));
      EXPECT_EQ(packed->max_error_steps, max_steps);
    }
  }
}

}  // namespace
}  // namespace catq
