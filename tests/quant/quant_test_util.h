// File: tests/quant/quant_test_util.h
//
// Helpers shared by the quantizer tests: seeded random weight matrices
// (normal(0, 1), the same for a given seed on every run), an exact
// comparison of two QuantizedWeights, and the shapes the pack/unpack round
// trips run over (in and out not multiples of 8, per channel, groups of 128
// and 64 with a smaller last group, bits 2, 3, 4, both grids).
//
//   RowMatrixXf w = catq::testing::RandomWeights(16, 172, /*seed=*/7);
//   INSTANTIATE_TEST_SUITE_P(Shapes, MyRoundTrip, catq::testing::RoundTripCases(),
//                            catq::testing::RoundTripName);
//
// Thread-safety: pure functions.
#ifndef CATQ_TESTS_QUANT_QUANT_TEST_UTIL_H_
#define CATQ_TESTS_QUANT_QUANT_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "core/math/eigen_types.h"
#include "core/quant/quantized_weight.h"
#include "core/quant/weight_quant_options.h"

namespace catq::testing {

inline RowMatrixXf RandomWeights(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  RowMatrixXf w(rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) w(r, c) = normal(gen);
  }
  return w;
}

// ExpectSameWeight: every field of `a` equals that of `b`, bit for bit.
inline void ExpectSameWeight(const QuantizedWeight& a, const QuantizedWeight& b) {
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.cols, b.cols);
  EXPECT_EQ(a.options.bits, b.options.bits);
  EXPECT_EQ(a.options.group_size, b.options.group_size);
  EXPECT_EQ(a.options.symmetric, b.options.symmetric);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.scales, b.scales);
  EXPECT_EQ(a.zeros, b.zeros);
}

// rows (out), cols (in), group_size, bits, symmetric.
using RoundTripCase = std::tuple<int64_t, int64_t, int, int, bool>;

inline auto RoundTripCases() {
  return ::testing::Combine(::testing::Values<int64_t>(16, 13),
                            ::testing::Values<int64_t>(172, 13, 64),
                            ::testing::Values(kPerChannelGroupSize, 128, 64),
                            ::testing::Values(2, 3, 4), ::testing::Bool());
}

// RoundTripName: e.g. "13x172_g128_b3_asym".
inline std::string RoundTripName(const ::testing::TestParamInfo<RoundTripCase>& info) {
  const int group_size = std::get<2>(info.param);
  return absl::StrCat(std::get<0>(info.param), "x", std::get<1>(info.param), "_g",
                      group_size < 0 ? std::string("ch") : absl::StrCat(group_size), "_b",
                      std::get<3>(info.param), std::get<4>(info.param) ? "_sym" : "_asym");
}

// RoundTripWeights: the RTN quantization of a random matrix of the case's shape.
inline RowMatrixXf RoundTripWeights(const RoundTripCase& c) {
  const auto seed = static_cast<uint32_t>(std::get<0>(c) * 1000 + std::get<1>(c) + std::get<3>(c));
  return RandomWeights(std::get<0>(c), std::get<1>(c), seed);
}

inline WeightQuantOptions RoundTripOptions(const RoundTripCase& c) {
  return WeightQuantOptions{std::get<3>(c), std::get<2>(c), std::get<4>(c)};
}

}  // namespace catq::testing

#endif  // CATQ_TESTS_QUANT_QUANT_TEST_UTIL_H_
