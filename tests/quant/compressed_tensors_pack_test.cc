#include "core/quant/compressed_tensors_pack.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/quant/rtn.h"
#include "tests/quant/quant_test_util.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

// A word as safetensors I32 stores it, written as the hex the layout gives.
int32_t Word(uint32_t hex) { return std::bit_cast<int32_t>(hex); }

// 2 x 16, symmetric 4-bit, per channel. Derivation of word [0, 0]: elements
// 0..7 of row 0 are q = 0 1 2 3 4 5 6 7, nibbles q + 8 = 8 9 A B C D E F,
// element 0 in the lowest nibble, so reading the hex from the top nibble down:
// F E D C B A 9 8 = 0xFEDCBA98 (negative as int32).
//   word [0, 1]: q = -1 -2 -3 -4 -5 -6 -7 0 -> 7 6 5 4 3 2 1 8 -> 0x81234567
//   word [1, 0]: q = 7 -7 0 0 3 -3 1 -1     -> F 1 8 8 B 5 9 7 -> 0x795B881F
//   word [1, 1]: q = 0 0 0 0 0 0 0 5        -> 8 8 8 8 8 8 8 D -> 0xD8888888
QuantizedWeight KnownSymmetric2x16() {
  QuantizedWeight qw;
  qw.rows = 2;
  qw.cols = 16;
  qw.q = {0, 1,  2, 3, 4, 5,  6, 7,  -1, -2, -3, -4, -5, -6, -7, 0,  //
          7, -7, 0, 0, 3, -3, 1, -1, 0,  0,  0,  0,  0,  0,  0,  5};
  qw.scales = {0.5f, 0.25f};
  return qw;
}

// 3 x 8, asymmetric 4-bit, groups of 4: zero points [3, 2].
//   weight_packed [0]: q = -8 7 0 1 2 3 4 5 -> 0 F 8 9 A B C D -> 0xDCBA98F0
//   weight_packed [1]: q = 0 x 8            -> 0x88888888
//   weight_packed [2]: q = -1 .. -8         -> 7 6 5 4 3 2 1 0 -> 0x01234567
//   weight_zero_point [0, 0]: rows 0, 1, 2 zeros -3 5 7 -> 5 D F, padding 8
//                             -> 0x88888FD5
//   weight_zero_point [0, 1]: zeros 0 -7 2 -> 8 1 A, padding 8 -> 0x88888A18
QuantizedWeight KnownAsymmetric3x8() {
  QuantizedWeight qw;
  qw.rows = 3;
  qw.cols = 8;
  qw.options.group_size = 4;
  qw.options.symmetric = false;
  qw.q = {-8, 7,  0,  1,  2,  3,  4,  5,  //
          0,  0,  0,  0,  0,  0,  0,  0,  //
          -1, -2, -3, -4, -5, -6, -7, -8};
  qw.scales = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  qw.zeros = {-3, 0,   //
              5,  -7,  //
              7,  2};
  return qw;
}

// 1 x 13: q = 1 everywhere but element 12 = -3. Word 1 holds elements 8..12
// (nibbles 9 9 9 9 5) and three padding nibbles of 8 -> 0x88859999.
QuantizedWeight KnownPadded1x13() {
  QuantizedWeight qw;
  qw.rows = 1;
  qw.cols = 13;
  qw.q = std::vector<int8_t>(13, 1);
  qw.q[12] = -3;
  qw.scales = {1.0f};
  return qw;
}

TEST(PackInt4CompressedTensors, KnownSymmetricWordsBitForBit) {
  QuantizedWeight qw = KnownSymmetric2x16();
  auto packed = PackInt4CompressedTensors(qw);
  ASSERT_OK(packed);
  EXPECT_EQ(packed->weight_packed, (std::vector<int32_t>{Word(0xFEDCBA98), Word(0x81234567),
                                                         Word(0x795B881F), Word(0xD8888888)}));
  EXPECT_EQ(packed->weight_packed[0], -19088744);
  EXPECT_TRUE(packed->weight_zero_point.empty());
  EXPECT_EQ(packed->groups, 1);
  EXPECT_EQ(packed->weight_shape(), (std::array<int64_t, 2>{2, 16}));
  auto back = UnpackInt4CompressedTensors(*packed, qw.scales, qw.options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, qw);
}

TEST(PackInt4CompressedTensors, KnownAsymmetricZeroPointsPackAlongOutput) {
  QuantizedWeight qw = KnownAsymmetric3x8();
  auto packed = PackInt4CompressedTensors(qw);
  ASSERT_OK(packed);
  EXPECT_EQ(packed->weight_packed,
            (std::vector<int32_t>{Word(0xDCBA98F0), Word(0x88888888), Word(0x01234567)}));
  EXPECT_EQ(packed->weight_zero_point, (std::vector<int32_t>{Word(0x88888FD5), Word(0x88888A18)}));
  auto back = UnpackInt4CompressedTensors(*packed, qw.scales, qw.options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, qw);
}

TEST(PackInt4CompressedTensors, PaddingNibblesPastInHoldEight) {
  auto packed = PackInt4CompressedTensors(KnownPadded1x13());
  ASSERT_OK(packed);
  EXPECT_EQ(packed->weight_packed, (std::vector<int32_t>{Word(0x99999999), Word(0x88859999)}));
}

TEST(PackInt4CompressedTensors, RejectsMoreThanFourBitsAndInvalidWeights) {
  auto qw = QuantizeRtn(testing::RandomWeights(2, 8, 1), WeightQuantOptions{5, -1, true});
  ASSERT_OK(qw);
  EXPECT_STATUS(PackInt4CompressedTensors(*qw), absl::StatusCode::kInvalidArgument,
                "options.bits: 5 does not fit int4 packing (at most 4)");
  QuantizedWeight bad = KnownSymmetric2x16();
  bad.q[17] = 8;
  EXPECT_STATUS(PackInt4CompressedTensors(bad), absl::StatusCode::kInvalidArgument, "q[1, 1] is 8");
}

TEST(UnpackInt4CompressedTensors, NamesArrayWithExpectedAndActualSize) {
  QuantizedWeight qw = KnownSymmetric2x16();
  const CompressedTensorsInt4 good = *PackInt4CompressedTensors(qw);
  CompressedTensorsInt4 packed = good;
  packed.weight_packed.pop_back();
  EXPECT_STATUS(UnpackInt4CompressedTensors(packed, qw.scales, qw.options),
                absl::StatusCode::kInvalidArgument,
                "weight_packed: expected 4 values ([2, 2]), got 3");
  packed = good;
  packed.groups = 2;
  EXPECT_STATUS(UnpackInt4CompressedTensors(packed, qw.scales, qw.options),
                absl::StatusCode::kInvalidArgument,
                "groups: 2, expected 1 for in = 16 and group_size -1");
  EXPECT_STATUS(UnpackInt4CompressedTensors(good, {0.5f}, qw.options),
                absl::StatusCode::kInvalidArgument,
                "weight_scale: expected 2 values ([2, 1]), got 1");
  packed = good;
  packed.weight_zero_point = {Word(0x88888888)};
  EXPECT_STATUS(UnpackInt4CompressedTensors(packed, qw.scales, qw.options),
                absl::StatusCode::kInvalidArgument,
                "weight_zero_point: symmetric weights have none, got 1 words");
  EXPECT_STATUS(UnpackInt4CompressedTensors(good, qw.scales, WeightQuantOptions{4, -1, false}),
                absl::StatusCode::kInvalidArgument,
                "weight_zero_point: expected 1 values ([1, 1]), got 0");
  EXPECT_STATUS(UnpackInt4CompressedTensors(good, qw.scales, WeightQuantOptions{9, -1, true}),
                absl::StatusCode::kInvalidArgument, "options: bits: 9 is outside [2, 8]");
}

TEST(UnpackInt4CompressedTensors, CorruptPaddingIsDataLossNamingRowAndWord) {
  QuantizedWeight qw = KnownPadded1x13();
  CompressedTensorsInt4 packed = *PackInt4CompressedTensors(qw);
  packed.weight_packed[1] = Word(0x88959999);  // Nibble 5 (element 13, padding) = 9.
  EXPECT_STATUS(UnpackInt4CompressedTensors(packed, qw.scales, qw.options),
                absl::StatusCode::kDataLoss,
                "weight_packed[row 0, word 1]: padding nibble 5 (past in = 13) is 9, expected 8");

  QuantizedWeight asym = KnownAsymmetric3x8();
  CompressedTensorsInt4 packed_asym = *PackInt4CompressedTensors(asym);
  packed_asym.weight_zero_point[1] = Word(0x08888A18);  // Nibble 7 (row 7, padding) = 0.
  EXPECT_STATUS(UnpackInt4CompressedTensors(packed_asym, asym.scales, asym.options),
                absl::StatusCode::kDataLoss,
                "weight_zero_point[word row 0, group 1]: padding nibble 7 (past out = 3) is 0, "
                "expected 8");
}

TEST(UnpackInt4CompressedTensors, LevelOutsideBitsIsDataLoss) {
  QuantizedWeight qw = KnownSymmetric2x16();
  CompressedTensorsInt4 packed = *PackInt4CompressedTensors(qw);
  EXPECT_STATUS(UnpackInt4CompressedTensors(packed, qw.scales, WeightQuantOptions{2, -1, true}),
                absl::StatusCode::kDataLoss,
                "weight_packed[row 0, word 0] nibble 2 (column 2): q = 2 is outside [-2, 1] for "
                "2 bits");
}

TEST(UnpackInt4CompressedTensors, NonFiniteScaleIsRejected) {
  QuantizedWeight qw = KnownSymmetric2x16();
  CompressedTensorsInt4 packed = *PackInt4CompressedTensors(qw);
  const std::vector<float> scales = {0.5f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_STATUS(UnpackInt4CompressedTensors(packed, scales, qw.options),
                absl::StatusCode::kInvalidArgument, "weight_scale: scales[1, 0] is nan");
}

class CompressedTensorsRoundTrip : public ::testing::TestWithParam<testing::RoundTripCase> {};

TEST_P(CompressedTensorsRoundTrip, UnpackGivesBackExactlyWhatWasPacked) {
  const auto [rows, cols, group_size, bits, symmetric] = GetParam();
  const WeightQuantOptions options = testing::RoundTripOptions(GetParam());
  auto qw = QuantizeRtn(testing::RoundTripWeights(GetParam()), options);
  ASSERT_OK(qw);
  auto packed = PackInt4CompressedTensors(*qw);
  ASSERT_OK(packed);
  EXPECT_EQ(static_cast<int64_t>(packed->weight_packed.size()), rows * ((cols + 7) / 8));
  EXPECT_EQ(static_cast<int64_t>(packed->weight_zero_point.size()),
            symmetric ? 0 : ((rows + 7) / 8) * qw->groups());
  auto back = UnpackInt4CompressedTensors(*packed, qw->scales, options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, *qw);
  EXPECT_EQ(Dequantize(*back), Dequantize(*qw));
  // The general entry points are the int4 ones on these widths.
  auto general = PackCompressedTensors(*qw);
  ASSERT_OK(general);
  EXPECT_EQ(general->weight_packed, packed->weight_packed);
  EXPECT_EQ(general->weight_zero_point, packed->weight_zero_point);
  auto general_back = UnpackCompressedTensors(*general, qw->scales, options);
  ASSERT_OK(general_back);
  testing::ExpectSameWeight(*general_back, *qw);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CompressedTensorsRoundTrip, testing::RoundTripCases(),
                         testing::RoundTripName);

// 8-bit fields: four levels per word, byte k % 4 of word k / 4 holding q + 128.

// 2 x 6, symmetric 8-bit, per channel: odd width, two padding bytes per row.
//   word [0, 0]: q = 0 1 -1 127       -> 80 81 7F FF -> 0xFF7F8180
//   word [0, 1]: q = -127 -128, pad   -> 01 00 80 80 -> 0x80800001
//   word [1, 0]: q = 5 -5 64 -64      -> 85 7B C0 40 -> 0x40C07B85
//   word [1, 1]: q = 100 -100, pad    -> E4 1C 80 80 -> 0x80801CE4
QuantizedWeight KnownSymmetric8Bit2x6() {
  QuantizedWeight qw;
  qw.rows = 2;
  qw.cols = 6;
  qw.options.bits = 8;
  qw.q = {0, 1,  -1, 127, -127, -128,  //
          5, -5, 64, -64, 100,  -100};
  qw.scales = {0.5f, 0.25f};
  return qw;
}

// 5 x 4, asymmetric 8-bit, groups of 2: zero points pack along the output,
// four rows per word, rows 5..7 padding.
//   weight_packed [0]: q = -128 127 0 1 -> 00 FF 80 81 -> 0x8180FF00
//   weight_packed [1..4]: q = 0         -> 0x80808080
//   weight_zero_point [0, 0]: rows 0..3 zeros -128 127 0 1 -> 0x8180FF00
//   weight_zero_point [0, 1]: zeros 10 -10 50 -50          -> 0x4EB2768A
//   weight_zero_point [1, 0]: row 4 zero -3, padding 128   -> 0x8080807D
//   weight_zero_point [1, 1]: row 4 zero 7, padding 128    -> 0x80808087
QuantizedWeight KnownAsymmetric8Bit5x4() {
  QuantizedWeight qw;
  qw.rows = 5;
  qw.cols = 4;
  qw.options = WeightQuantOptions{8, 2, false};
  qw.q = std::vector<int8_t>(20, 0);
  qw.q[0] = -128;
  qw.q[1] = 127;
  qw.q[3] = 1;
  qw.scales = std::vector<float>(10, 1.0f);
  qw.zeros = {-128, 10, 127, -10, 0, 50, 1, -50, -3, 7};
  return qw;
}

TEST(PackCompressedTensors8Bit, KnownSymmetricWordsBitForBit) {
  const QuantizedWeight qw = KnownSymmetric8Bit2x6();
  auto packed = PackCompressedTensors(qw);
  ASSERT_OK(packed);
  EXPECT_EQ(packed->weight_packed, (std::vector<int32_t>{Word(0xFF7F8180), Word(0x80800001),
                                                         Word(0x40C07B85), Word(0x80801CE4)}));
  // A top byte >= 0x80 reads as a negative int32, as safetensors stores it.
  EXPECT_EQ(packed->weight_packed[0], -8420992);
  EXPECT_TRUE(packed->weight_zero_point.empty());
  EXPECT_EQ(packed->weight_shape(), (std::array<int64_t, 2>{2, 6}));
  auto back = UnpackCompressedTensors(*packed, qw.scales, qw.options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, qw);
}

TEST(PackCompressedTensors8Bit, KnownAsymmetricZeroPointsPackAlongOutput) {
  const QuantizedWeight qw = KnownAsymmetric8Bit5x4();
  auto packed = PackCompressedTensors(qw);
  ASSERT_OK(packed);
  EXPECT_EQ(packed->weight_packed,
            (std::vector<int32_t>{Word(0x8180FF00), Word(0x80808080), Word(0x80808080),
                                  Word(0x80808080), Word(0x80808080)}));
  EXPECT_EQ(packed->weight_zero_point, (std::vector<int32_t>{Word(0x8180FF00), Word(0x4EB2768A),
                                                             Word(0x8080807D), Word(0x80808087)}));
  auto back = UnpackCompressedTensors(*packed, qw.scales, qw.options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, qw);
  EXPECT_EQ(Dequantize(*back), Dequantize(qw));
}

// The same signed offset as 4 bits, 2^(F-1): a level q is stored as q + 8 in
// a nibble and q + 128 in a byte, so the levels -8..7 of one row give the
// nibbles 0..F and the bytes 0x78..0x87.
TEST(PackCompressedTensors8Bit, SignedOffsetIsHalfTheFieldRange) {
  QuantizedWeight qw;
  qw.rows = 1;
  qw.cols = 16;
  qw.scales = {1.0f};
  for (int k = 0; k < 16; ++k) qw.q.push_back(static_cast<int8_t>(k - 8));
  auto nibbles = PackCompressedTensors(qw);
  ASSERT_OK(nibbles);
  EXPECT_EQ(nibbles->weight_packed, (std::vector<int32_t>{Word(0x76543210), Word(0xFEDCBA98)}));
  qw.options.bits = 8;
  auto bytes = PackCompressedTensors(qw);
  ASSERT_OK(bytes);
  EXPECT_EQ(bytes->weight_packed, (std::vector<int32_t>{Word(0x7B7A7978), Word(0x7F7E7D7C),
                                                        Word(0x83828180), Word(0x87868584)}));
}

TEST(PackCompressedTensors8Bit, WidthsWithoutAFieldAreRefused) {
  EXPECT_EQ(PackedFieldBits(2), 4);
  EXPECT_EQ(PackedFieldBits(4), 4);
  EXPECT_EQ(PackedFieldBits(6), 6);
  EXPECT_EQ(PackedFieldBits(8), 8);
  EXPECT_EQ(PackedFieldBits(5), 0);
  EXPECT_EQ(PackedFieldBits(7), 0);
  EXPECT_TRUE(IsExactPackedWidth(4));
  EXPECT_TRUE(IsExactPackedWidth(6));
  EXPECT_TRUE(IsExactPackedWidth(8));
  EXPECT_FALSE(IsExactPackedWidth(3));
  EXPECT_FALSE(IsExactPackedWidth(5));
  auto qw = QuantizeRtn(testing::RandomWeights(2, 8, 1), WeightQuantOptions{5, -1, true});
  ASSERT_OK(qw);
  EXPECT_STATUS(PackCompressedTensors(*qw), absl::StatusCode::kInvalidArgument,
                "options.bits: 5 has no pack-quantized field");
  auto eight = QuantizeRtn(testing::RandomWeights(2, 8, 1), WeightQuantOptions{8, -1, true});
  ASSERT_OK(eight);
  EXPECT_STATUS(PackInt4CompressedTensors(*eight), absl::StatusCode::kInvalidArgument,
                "options.bits: 8 does not fit int4 packing (at most 4)");
}

TEST(UnpackCompressedTensors8Bit, CorruptPaddingAndSizesAreNamed) {
  const QuantizedWeight qw = KnownSymmetric8Bit2x6();
  const CompressedTensorsPacked good = *PackCompressedTensors(qw);
  CompressedTensorsPacked packed = good;
  packed.weight_packed[1] = Word(0x80000001);  // Byte 2 (element 6, padding) = 0.
  EXPECT_STATUS(UnpackCompressedTensors(packed, qw.scales, qw.options), absl::StatusCode::kDataLoss,
                "weight_packed[row 0, word 1]: padding byte 2 (past in = 6) is 0, expected 128");
  // Four-bit options read the 8-bit words as the wrong number of words.
  EXPECT_STATUS(UnpackCompressedTensors(good, qw.scales, WeightQuantOptions{4, -1, true}),
                absl::StatusCode::kInvalidArgument,
                "weight_packed: expected 2 values ([2, 1]), got 4");
  const QuantizedWeight asym = KnownAsymmetric8Bit5x4();
  CompressedTensorsPacked packed_asym = *PackCompressedTensors(asym);
  packed_asym.weight_zero_point[3] = Word(0x81808087);  // Byte 3 (row 7, padding) = 0x81.
  EXPECT_STATUS(UnpackCompressedTensors(packed_asym, asym.scales, asym.options),
                absl::StatusCode::kDataLoss,
                "weight_zero_point[word row 1, group 1]: padding byte 3 (past out = 5) is 129, "
                "expected 128");
}

// rows (out), cols (in), group_size, bits (8), symmetric: widths that leave
// 1, 3 and no padding bytes, per channel and groups with a smaller last one.
auto Int8RoundTripCases() {
  return ::testing::Combine(
      ::testing::Values<int64_t>(16, 13), ::testing::Values<int64_t>(172, 13, 7, 64),
      ::testing::Values(kPerChannelGroupSize, 128, 5), ::testing::Values(8), ::testing::Bool());
}

class CompressedTensors8BitRoundTrip : public ::testing::TestWithParam<testing::RoundTripCase> {};

TEST_P(CompressedTensors8BitRoundTrip, UnpackGivesBackExactlyWhatWasPacked) {
  const auto [rows, cols, group_size, bits, symmetric] = GetParam();
  const WeightQuantOptions options = testing::RoundTripOptions(GetParam());
  auto qw = QuantizeRtn(testing::RoundTripWeights(GetParam()), options);
  ASSERT_OK(qw);
  auto packed = PackCompressedTensors(*qw);
  ASSERT_OK(packed);
  EXPECT_EQ(static_cast<int64_t>(packed->weight_packed.size()), rows * ((cols + 3) / 4));
  EXPECT_EQ(static_cast<int64_t>(packed->weight_zero_point.size()),
            symmetric ? 0 : ((rows + 3) / 4) * qw->groups());
  auto back = UnpackCompressedTensors(*packed, qw->scales, options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, *qw);
  EXPECT_EQ(Dequantize(*back), Dequantize(*qw));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CompressedTensors8BitRoundTrip, Int8RoundTripCases(),
                         testing::RoundTripName);

// 1 x 7, symmetric 6-bit: five 6-bit fields per word (32 / 6), field i at
// bits 6i, each q + 32; bits 30-31 stay 0.
//   word [0]: q = -31 31 0 1 -1 -> 1 63 32 33 31
//             = 1 | 63<<6 | 32<<12 | 33<<18 | 31<<24 = 0x1F860FC1
//   word [1]: q = 5 -7, padding  -> 37 25 32 32 32
//             = 37 | 25<<6 | 32<<12 | 32<<18 | 32<<24 = 0x20820665
TEST(PackCompressedTensors6Bit, KnownSymmetricWordsBitForBit) {
  QuantizedWeight qw;
  qw.rows = 1;
  qw.cols = 7;
  qw.options = WeightQuantOptions{6, kPerChannelGroupSize, true};
  qw.q = {-31, 31, 0, 1, -1, 5, -7};
  qw.scales = {0.5f};
  auto packed = PackCompressedTensors(qw);
  ASSERT_OK(packed);
  EXPECT_EQ(packed->weight_packed, (std::vector<int32_t>{Word(0x1F860FC1), Word(0x20820665)}));
  EXPECT_EQ(PackedWordsFor(7, 6), 2);
  auto back = UnpackCompressedTensors(*packed, qw.scales, qw.options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, qw);
}

// 6 x 5, asymmetric 6-bit per channel: zero points pack along the output,
// five rows per word.
//   weight_packed [r]: q = 0 x 5 -> 32 x 5 = 0x20820820
//   weight_zero_point [0, 0]: zeros -32 31 0 10 -5 -> 0 63 32 42 27 = 0x1BAA0FC0
//   weight_zero_point [1, 0]: zero 3, padding 32   -> 35 32 32 32 32 = 0x20820823
TEST(PackCompressedTensors6Bit, KnownAsymmetricZeroPointsPackAlongOutput) {
  QuantizedWeight qw;
  qw.rows = 6;
  qw.cols = 5;
  qw.options = WeightQuantOptions{6, kPerChannelGroupSize, false};
  qw.q = std::vector<int8_t>(30, 0);
  qw.scales = std::vector<float>(6, 1.0f);
  qw.zeros = {-32, 31, 0, 10, -5, 3};
  auto packed = PackCompressedTensors(qw);
  ASSERT_OK(packed);
  EXPECT_EQ(packed->weight_packed, std::vector<int32_t>(6, Word(0x20820820)));
  EXPECT_EQ(packed->weight_zero_point, (std::vector<int32_t>{Word(0x1BAA0FC0), Word(0x20820823)}));
  auto back = UnpackCompressedTensors(*packed, qw.scales, qw.options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, qw);
}

TEST(UnpackCompressedTensors6Bit, CorruptPaddingIsDataLoss) {
  QuantizedWeight qw;
  qw.rows = 1;
  qw.cols = 7;
  qw.options = WeightQuantOptions{6, kPerChannelGroupSize, true};
  qw.q = {-31, 31, 0, 1, -1, 5, -7};
  qw.scales = {0.5f};
  CompressedTensorsPacked packed = *PackCompressedTensors(qw);
  packed.weight_packed[1] = Word(0x20800665);  // Field 2 (element 7, padding) = 0.
  EXPECT_STATUS(UnpackCompressedTensors(packed, qw.scales, qw.options), absl::StatusCode::kDataLoss,
                "weight_packed[row 0, word 1]: padding 6-bit field 2 (past in = 7) is 0, "
                "expected 32");
}

auto Int6RoundTripCases() {
  return ::testing::Combine(
      ::testing::Values<int64_t>(1, 6, 11), ::testing::Values<int64_t>(1, 5, 7, 131),
      ::testing::Values(kPerChannelGroupSize, 128, 5), ::testing::Values(6), ::testing::Bool());
}

class CompressedTensors6BitRoundTrip : public ::testing::TestWithParam<testing::RoundTripCase> {};

TEST_P(CompressedTensors6BitRoundTrip, UnpackGivesBackExactlyWhatWasPacked) {
  const auto [rows, cols, group_size, bits, symmetric] = GetParam();
  const WeightQuantOptions options = testing::RoundTripOptions(GetParam());
  auto qw = QuantizeRtn(testing::RoundTripWeights(GetParam()), options);
  ASSERT_OK(qw);
  auto packed = PackCompressedTensors(*qw);
  ASSERT_OK(packed);
  EXPECT_EQ(static_cast<int64_t>(packed->weight_packed.size()), rows * ((cols + 4) / 5));
  EXPECT_EQ(static_cast<int64_t>(packed->weight_zero_point.size()),
            symmetric ? 0 : ((rows + 4) / 5) * qw->groups());
  auto back = UnpackCompressedTensors(*packed, qw->scales, options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, *qw);
  EXPECT_EQ(Dequantize(*back), Dequantize(*qw));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CompressedTensors6BitRoundTrip, Int6RoundTripCases(),
                         testing::RoundTripName);

}  // namespace
}  // namespace catq
