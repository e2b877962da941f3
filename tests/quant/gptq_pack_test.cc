#include "core/quant/gptq_pack.h"

#include <gtest/gtest.h>

#include <bit>
#include <limits>
#include <string>
#include <vector>

#include "core/quant/compressed_tensors_pack.h"
#include "core/quant/rtn.h"
#include "tests/quant/quant_test_util.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

int32_t Word(uint32_t hex) { return std::bit_cast<int32_t>(hex); }

// 2 outputs x 16 inputs, symmetric 4-bit, per channel. qweight is
// [ceil(16/8) = 2, 2]: word [i/8, o] holds inputs 8*(i/8)..+7 of output o.
//   qweight [0, 0]: output 0, inputs 0..7  q = 0 1 2 3 4 5 6 7
//                   q_u = q + 8 = 8 9 A B C D E F, input 0 lowest -> 0xFEDCBA98
//   qweight [0, 1]: output 1, inputs 0..7  q = 7 -7 0 0 3 -3 1 -1     -> 0x795B881F
//   qweight [1, 0]: output 0, inputs 8..15 q = -1 -2 -3 -4 -5 -6 -7 0 -> 0x81234567
//   qweight [1, 1]: output 1, inputs 8..15 q = 0 0 0 0 0 0 0 5        -> 0xD8888888
//   qzeros [1, 1]: zero_u = 8 stored as 7 for outputs 0, 1; padding 7 -> 0x77777777
QuantizedWeight KnownSymmetric2x16() {
  QuantizedWeight qw;
  qw.rows = 2;
  qw.cols = 16;
  qw.q = {0, 1,  2, 3, 4, 5,  6, 7,  -1, -2, -3, -4, -5, -6, -7, 0,  //
          7, -7, 0, 0, 3, -3, 1, -1, 0,  0,  0,  0,  0,  0,  0,  5};
  qw.scales = {0.5f, 0.25f};
  return qw;
}

// 3 outputs x 8 inputs, asymmetric 4-bit, groups of 4. Zero points [3, 2]
// (signed) -> zero_u = zero + 8 -> stored zero_u - 1:
//   output 0: -3, 0 -> 5, 8  -> 4, 7
//   output 1: 5, -7 -> 13, 1 -> C, 0
//   output 2: 7, 2  -> 15, 10 -> E, 9
//   qzeros [0, 0] (group 0): 4 C E, padding 7 -> 0x77777EC4
//   qzeros [1, 0] (group 1): 7 0 9, padding 7 -> 0x77777907
//   qweight [0, o] = the 8 inputs of output o:
//     q = -8 7 0 1 2 3 4 5 -> 0 F 8 9 A B C D -> 0xDCBA98F0
//     q = 0 x 8 -> 0x88888888;  q = -1 .. -8 -> 7 6 5 4 3 2 1 0 -> 0x01234567
QuantizedWeight KnownAsymmetric3x8() {
  QuantizedWeight qw;
  qw.rows = 3;
  qw.cols = 8;
  qw.options.group_size = 4;
  qw.options.symmetric = false;
  qw.q = {-8, 7,  0,  1,  2,  3,  4,  5,  //
          0,  0,  0,  0,  0,  0,  0,  0,  //
          -1, -2, -3, -4, -5, -6, -7, -8};
  qw.scales = {1.0f, 2.0f,  //
               3.0f, 4.0f,  //
               5.0f, 6.0f};
  qw.zeros = {-3, 0,   //
              5,  -7,  //
              7,  2};
  return qw;
}

TEST(PackInt4Gptq, KnownSymmetricWordsBitForBit) {
  QuantizedWeight qw = KnownSymmetric2x16();
  auto gptq = PackInt4Gptq(qw);
  ASSERT_OK(gptq);
  EXPECT_EQ(gptq->qweight, (std::vector<int32_t>{Word(0xFEDCBA98), Word(0x795B881F),
                                                 Word(0x81234567), Word(0xD8888888)}));
  EXPECT_EQ(gptq->qzeros, std::vector<int32_t>{Word(0x77777777)});
  EXPECT_EQ(gptq->g_idx, std::vector<int32_t>(16, 0));
  EXPECT_EQ(gptq->scales, (std::vector<float>{0.5f, 0.25f}));
  auto back = UnpackInt4Gptq(*gptq, qw.options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, qw);
}

TEST(PackInt4Gptq, KnownAsymmetricQzerosUseMinusOne) {
  QuantizedWeight qw = KnownAsymmetric3x8();
  auto gptq = PackInt4Gptq(qw);
  ASSERT_OK(gptq);
  EXPECT_EQ(gptq->qweight,
            (std::vector<int32_t>{Word(0xDCBA98F0), Word(0x88888888), Word(0x01234567)}));
  EXPECT_EQ(gptq->qzeros, (std::vector<int32_t>{Word(0x77777EC4), Word(0x77777907)}));
  EXPECT_EQ(gptq->g_idx, (std::vector<int32_t>{0, 0, 0, 0, 1, 1, 1, 1}));
  // [groups, out]: the transpose of QuantizedWeight's [out, groups].
  EXPECT_EQ(gptq->scales, (std::vector<float>{1.0f, 3.0f, 5.0f, 2.0f, 4.0f, 6.0f}));
  auto back = UnpackInt4Gptq(*gptq, qw.options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, qw);
}

TEST(PackInt4Gptq, SymmetricQzerosAreAllSevens) {
  auto qw = QuantizeRtn(testing::RandomWeights(20, 256, 4), WeightQuantOptions{4, 128, true});
  ASSERT_OK(qw);
  auto gptq = PackInt4Gptq(*qw);
  ASSERT_OK(gptq);
  EXPECT_EQ(gptq->qzeros, std::vector<int32_t>(2 * 3, Word(0x77777777)));
  EXPECT_EQ(gptq->g_idx[127], 0);
  EXPECT_EQ(gptq->g_idx[128], 1);
}

TEST(PackInt4Gptq, CompressedTensorsWeightPackedIsTheTransposeOfQweight) {
  for (int group_size : {kPerChannelGroupSize, 16}) {
    auto qw =
        QuantizeRtn(testing::RandomWeights(24, 64, 9), WeightQuantOptions{4, group_size, true});
    ASSERT_OK(qw);
    auto gptq = PackInt4Gptq(*qw);
    auto ct = PackInt4CompressedTensors(*qw);
    ASSERT_OK(gptq);
    ASSERT_OK(ct);
    const int64_t words = 64 / 8;
    ASSERT_EQ(gptq->qweight.size(), ct->weight_packed.size());
    for (int64_t o = 0; o < 24; ++o) {
      for (int64_t w = 0; w < words; ++w) {
        EXPECT_EQ(ct->weight_packed[o * words + w], gptq->qweight[w * 24 + o]) << o << ", " << w;
      }
    }
  }
}

TEST(PackInt4Gptq, ZeroPointMinusEightUnderflowsAndIsRejected) {
  // All positive: zero_u = 0, stored signed as -8; v1 would store -1.
  RowMatrixXf w(2, 4);
  w << -1.0f, 2.0f, 3.0f, 4.0f,  //
      1.0f, 2.0f, 3.0f, 4.0f;
  auto qw = QuantizeRtn(w, WeightQuantOptions{4, -1, false});
  ASSERT_OK(qw);
  ASSERT_EQ(qw->zeros[1], -8);
  EXPECT_STATUS(PackInt4Gptq(*qw), absl::StatusCode::kInvalidArgument,
                "zeros[1, 0] is -8 (zero_u 0): GPTQ v1 stores zero_u - 1, which underflows");
}

TEST(UnpackInt4Gptq, StoredFifteenIsAnUnderflowAndDataLoss) {
  QuantizedWeight qw = KnownAsymmetric3x8();
  GptqInt4 gptq = *PackInt4Gptq(qw);
  gptq.qzeros[1] = Word(0x777779F7);  // Output 1, group 1: stored 15.
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw.options), absl::StatusCode::kDataLoss,
                "qzeros[group 1, word 0] nibble 1 (output 1): stored 15 means zero point 16");
}

TEST(UnpackInt4Gptq, SymmetricZeroOtherThanEightIsDataLoss) {
  QuantizedWeight qw = KnownSymmetric2x16();
  GptqInt4 gptq = *PackInt4Gptq(qw);
  gptq.qzeros[0] = Word(0x77777767);
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw.options), absl::StatusCode::kDataLoss,
                "qzeros[group 0, word 0] nibble 1 (output 1): stored 6, but symmetric weights "
                "store 7");
}

TEST(UnpackInt4Gptq, CorruptPaddingIsDataLoss) {
  QuantizedWeight qw;
  qw.rows = 2;
  qw.cols = 13;
  qw.q = std::vector<int8_t>(26, -1);
  qw.scales = {1.0f, 1.0f};
  GptqInt4 gptq = *PackInt4Gptq(qw);
  EXPECT_EQ(gptq.qweight[2], Word(0x88877777));  // Word row 1, output 0: 5 inputs, 3 padding.
  gptq.qweight[3] = Word(0x78877777);
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw.options), absl::StatusCode::kDataLoss,
                "qweight[word row 1, column 1]: padding nibble 7 (past in = 13) is 7, expected 8");
  gptq = *PackInt4Gptq(qw);
  gptq.qzeros[0] = Word(0x87777777);
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw.options), absl::StatusCode::kDataLoss,
                "qzeros[group 0, word 0] nibble 7: padding (past out = 2) is 8, expected 7");
}

TEST(UnpackInt4Gptq, GidxMustFollowGroupSize) {
  auto qw = QuantizeRtn(testing::RandomWeights(8, 172, 2), WeightQuantOptions{4, 128, true});
  ASSERT_OK(qw);
  GptqInt4 gptq = *PackInt4Gptq(*qw);
  gptq.g_idx[130] = 0;
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw->options), absl::StatusCode::kInvalidArgument,
                "g_idx[130] is 0, expected 1 = 130 / group_size 128");
  gptq.g_idx.pop_back();
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw->options), absl::StatusCode::kInvalidArgument,
                "g_idx: expected 172 values (one per input), got 171");
}

TEST(UnpackInt4Gptq, NamesArrayWithExpectedAndActualSize) {
  QuantizedWeight qw = KnownAsymmetric3x8();
  const GptqInt4 good = *PackInt4Gptq(qw);
  GptqInt4 gptq = good;
  gptq.qweight.push_back(0);
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw.options), absl::StatusCode::kInvalidArgument,
                "qweight: expected 3 values ([1, 3]), got 4");
  gptq = good;
  gptq.qzeros.pop_back();
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw.options), absl::StatusCode::kInvalidArgument,
                "qzeros: expected 2 values ([2, 1]), got 1");
  gptq = good;
  gptq.scales.pop_back();
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw.options), absl::StatusCode::kInvalidArgument,
                "scales: expected 6 values ([2, 3]), got 5");
  EXPECT_STATUS(UnpackInt4Gptq(good, WeightQuantOptions{4, 8, false}),
                absl::StatusCode::kInvalidArgument,
                "groups: 2, expected 1 for in = 8 and group_size 8");
  gptq = good;
  gptq.scales[0] = -std::numeric_limits<float>::infinity();
  EXPECT_STATUS(UnpackInt4Gptq(gptq, qw.options), absl::StatusCode::kInvalidArgument,
                "scales[0, 0] is -inf");
}

class GptqRoundTrip : public ::testing::TestWithParam<testing::RoundTripCase> {};

TEST_P(GptqRoundTrip, UnpackGivesBackExactlyWhatWasPacked) {
  const auto [rows, cols, group_size, bits, symmetric] = GetParam();
  const WeightQuantOptions options = testing::RoundTripOptions(GetParam());
  auto qw = QuantizeRtn(testing::RoundTripWeights(GetParam()), options);
  ASSERT_OK(qw);
  auto gptq = PackInt4Gptq(*qw);
  ASSERT_OK(gptq);
  EXPECT_EQ(static_cast<int64_t>(gptq->qweight.size()), ((cols + 7) / 8) * rows);
  EXPECT_EQ(static_cast<int64_t>(gptq->qzeros.size()), qw->groups() * ((rows + 7) / 8));
  auto back = UnpackInt4Gptq(*gptq, options);
  ASSERT_OK(back);
  testing::ExpectSameWeight(*back, *qw);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GptqRoundTrip, testing::RoundTripCases(), testing::RoundTripName);

}  // namespace
}  // namespace catq
