// The fast RTN paths (QuantizeRtn, QuantizeRtnPackInt4, the packers) held to
// the reference, QuantizeRtnReference, bit for bit on every kernel set this
// CPU can run: levels, scales (as bit patterns), zero points, packed words
// and error messages. Shapes cover widths that are not multiples of 8 or 32,
// groups that do not divide the width, bits 2..8 and both grids; values cover
// exact .5 ties, quotients whose rounding depends on IEEE division, all-zero
// groups, denormals, scales that underflow, huge values and NaN/Inf.
#include "core/quant/internal/rtn_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/quant/compressed_tensors_pack.h"
#include "core/quant/rtn.h"
#include "core/quant/rtn_packed_int4.h"
#include "core/tensor/half.h"
#include "tests/quant/quant_test_util.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

using quant_internal::RtnKernels;

std::vector<const RtnKernels*> KernelSets() {
  std::vector<const RtnKernels*> sets = {&quant_internal::PortableRtnKernels()};
  if (const RtnKernels* avx2 = quant_internal::Avx2RtnKernels(); avx2 != nullptr) {
    sets.push_back(avx2);
  } else {
    std::printf("note: this CPU has no AVX2; only the portable kernels are tested\n");
  }
  return sets;
}

WeightQuantOptions Options(int bits, int group_size, bool symmetric) {
  WeightQuantOptions options;
  options.bits = bits;
  options.group_size = group_size;
  options.symmetric = symmetric;
  return options;
}

std::string Describe(const WeightQuantOptions& o, int64_t rows, int64_t cols) {
  return absl::StrCat(rows, "x", cols, " bits ", o.bits, " group ", o.group_size,
                      o.symmetric ? " sym" : " asym");
}

float RoundToHalf(float v) { return HalfToFloat(FloatToHalf(v)); }
float RoundUpToHalf(float v) {  // As the output writer rounds float16 scales.
  uint16_t h = FloatToHalf(v);
  if (HalfToFloat(h) < v) ++h;
  return HalfToFloat(h);
}
float RoundToBFloat16(float v) { return BFloat16ToFloat(FloatToBFloat16(v)); }

std::vector<uint32_t> Bits(const std::vector<float>& v) {
  std::vector<uint32_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) bits[i] = std::bit_cast<uint32_t>(v[i]);
  return bits;
}

void ExpectSameBits(const QuantizedWeight& fast, const QuantizedWeight& ref) {
  testing::ExpectSameWeight(fast, ref);
  EXPECT_EQ(Bits(fast.scales), Bits(ref.scales));
}

// The layout of compressed_tensors_pack.h written out directly, independent
// of the pack kernels: element k of row r in word [r, k / 8] at bits 4 (k % 8).
CompressedTensorsInt4 PlainPack(const QuantizedWeight& qw) {
  CompressedTensorsInt4 p;
  p.rows = qw.rows;
  p.cols = qw.cols;
  p.groups = qw.groups();
  const int64_t wpr = (qw.cols + 7) / 8;
  std::vector<uint32_t> words(qw.rows * wpr, 0x88888888u);
  for (int64_t r = 0; r < qw.rows; ++r) {
    for (int64_t k = 0; k < qw.cols; ++k) {
      uint32_t& word = words[r * wpr + k / 8];
      const int shift = static_cast<int>(4 * (k % 8));
      word =
          (word & ~(0xFu << shift)) | (static_cast<uint32_t>(qw.q[r * qw.cols + k] + 8) << shift);
    }
  }
  for (uint32_t w : words) p.weight_packed.push_back(std::bit_cast<int32_t>(w));
  if (!qw.options.symmetric) {
    std::vector<uint32_t> zp(((qw.rows + 7) / 8) * p.groups, 0x88888888u);
    for (int64_t r = 0; r < qw.rows; ++r) {
      for (int64_t g = 0; g < p.groups; ++g) {
        uint32_t& word = zp[(r / 8) * p.groups + g];
        const int shift = static_cast<int>(4 * (r % 8));
        word = (word & ~(0xFu << shift)) |
               (static_cast<uint32_t>(qw.zeros[r * p.groups + g] + 8) << shift);
      }
    }
    for (uint32_t w : zp) p.weight_zero_point.push_back(std::bit_cast<int32_t>(w));
  }
  return p;
}

// Values exactly on .5 steps: each group holds its grid's extremes, so that
// the scale is exactly 1 (symmetric: amax = 2^(b-1)-1; asymmetric: range
// 2^b - 1 from a minimum of -k - 0.5) and x / scale = x is a tie for every
// half-integer. Rounding ties away from zero, up or toward zero changes them.
RowMatrixXf TieWeights(int64_t rows, int64_t cols, const WeightQuantOptions& o, uint32_t seed) {
  std::mt19937 gen(seed);
  RowMatrixXf w(rows, cols);
  const int64_t groups = NumGroups(cols, o.group_size);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const ColumnRange span = GroupColumns(g, cols, o.group_size);
      float lo;
      float hi;
      if (o.symmetric) {
        hi = static_cast<float>((1 << (o.bits - 1)) - 1);
        lo = -hi;
      } else {
        const int span_levels = (1 << o.bits) - 1;
        std::uniform_int_distribution<int> k(0, span_levels - 1);
        lo = -static_cast<float>(k(gen)) - 0.5f;
        hi = lo + static_cast<float>(span_levels);
      }
      std::uniform_int_distribution<int> halves(static_cast<int>(2 * lo), static_cast<int>(2 * hi));
      for (int64_t c = span.begin; c < span.end; ++c) w(r, c) = 0.5f * halves(gen);
      w(r, span.begin) = (o.symmetric && (gen() & 1)) ? lo : hi;
      if (!o.symmetric && span.end - span.begin > 1) w(r, span.end - 1) = lo;
    }
  }
  return w;
}

// Groups of every awkward kind, chosen per group: normal values at scales
// from 1e-3 to 1e3, all zeros (+0 and -0), denormals only, values so small
// the scale underflows to 0, huge values of both signs, one sign only, and a
// lone outlier. `huge` bounds the huge values: 3e38 by default, smaller where
// the scales are rounded to float16 (whose largest value is 65504).
RowMatrixXf AwkwardWeights(int64_t rows, int64_t cols, int group_size, uint32_t seed,
                           float huge = 3.0e38f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, 8);
  std::uniform_real_distribution<float> exponent(-3.0f, 3.0f);
  RowMatrixXf w(rows, cols);
  const int64_t groups = NumGroups(cols, group_size);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const ColumnRange span = GroupColumns(g, cols, group_size);
      const int k = kind(gen);
      const float unit = std::pow(10.0f, exponent(gen));
      for (int64_t c = span.begin; c < span.end; ++c) {
        float v = normal(gen);
        switch (k) {
          case 0:
            v *= unit;
            break;
          case 1:
            v = (gen() & 1) ? 0.0f : -0.0f;
            break;
          case 2:
            v *= 1e-39f;  // denormal
            break;
          case 3:
            v = (gen() & 1) ? 1.4e-45f : -1.4e-45f;  // the smallest denormal: scale 0
            break;
          case 4:
            v = (gen() & 1) ? huge : -huge * std::fabs(normal(gen)) / 4.0f;
            break;
          case 5:
            v = std::fabs(v) * unit;
            break;
          case 6:
            v = -std::fabs(v) * unit;
            break;
          case 7:
            v *= unit;
            if (c == span.begin + (span.end - span.begin) / 2) v *= 1e4f;
            break;
          default:
            v = (gen() % 3 == 0) ? 0.0f : v * unit;
            break;
        }
        w(r, c) = v;
      }
    }
  }
  return w;
}

// Values whose level differs between q = round(x / s) (IEEE division, the
// definition) and q = round(x * (1 / s)) on the 4-bit symmetric grid: row i
// starts with amax_i (so s = fl(amax_i / 7)), then the values a few ulps
// around the midpoints (k + 0.5) s where the two disagree, repeated to fill
// the row.
RowMatrixXf DivisionSensitiveWeights() {
  const float amaxes[] = {1.0f, 0.3f, 0.7f, 1.1f, 2.9f, 5.3f, 13.7f, 0.01f};
  std::vector<std::vector<float>> rows;
  size_t longest = 1 + 32 + 8 + 3;  // The 32- and 8-wide bodies and a tail run.
  for (float amax : amaxes) {
    const float scale = amax / 7.0f;
    const float reciprocal = 1.0f / scale;
    std::vector<float> found;
    for (int k = -7; k <= 6; ++k) {
      float x = (static_cast<float>(k) + 0.5f) * scale;
      for (int i = 0; i < 8; ++i) x = std::nextafter(x, -2.0f * amax);
      for (int i = 0; i < 16; ++i, x = std::nextafter(x, 2.0f * amax)) {
        if (std::fabs(x) > amax) continue;
        if (std::nearbyint(x / scale) != std::nearbyint(x * reciprocal)) found.push_back(x);
      }
    }
    if (found.empty()) continue;
    found.insert(found.begin(), amax);
    longest = std::max(longest, found.size());
    rows.push_back(std::move(found));
  }
  RowMatrixXf w(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(longest));
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < longest; ++c) {
      // Past its own values a row repeats them (never its amax: index >= 1).
      const size_t from = c < rows[r].size() ? c : 1 + (c - 1) % (rows[r].size() - 1);
      w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = rows[r][from];
    }
  }
  return w;
}

std::vector<uint16_t> ToBf16(const RowMatrixXf& w) {
  std::vector<uint16_t> out(static_cast<size_t>(w.size()));
  for (Eigen::Index i = 0; i < w.size(); ++i) {
    out[static_cast<size_t>(i)] = static_cast<uint16_t>(std::bit_cast<uint32_t>(w.data()[i]) >> 16);
  }
  return out;
}

RowMatrixXf FromBf16(const std::vector<uint16_t>& bits, int64_t rows, int64_t cols) {
  RowMatrixXf w(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    w.data()[i] = std::bit_cast<float>(static_cast<uint32_t>(bits[static_cast<size_t>(i)]) << 16);
  }
  return w;
}

// QuantizeRtn on `kernels` equals the reference, every field and bit.
void ExpectQuantizeMatches(const RtnKernels& kernels, const Eigen::Ref<const RowMatrixXf>& w,
                           const WeightQuantOptions& options, ScaleRounding round_scale) {
  absl::StatusOr<QuantizedWeight> ref = QuantizeRtnReference(w, options, round_scale);
  absl::StatusOr<QuantizedWeight> fast =
      quant_internal::QuantizeRtnWithKernels(kernels, w, options, round_scale);
  ASSERT_EQ(fast.status(), ref.status());
  if (ref.ok()) ExpectSameBits(*fast, *ref);
}

// QuantizeRtnPackInt4 (f32 and bf16) on `kernels` equals the reference
// quantizer followed by the layout written out plainly. The bf16 path runs
// when every value of `w` is a bfloat16.
void ExpectPackedMatches(const RtnKernels& kernels, const RowMatrixXf& w,
                         const WeightQuantOptions& options, ScaleRounding round_scale) {
  absl::StatusOr<QuantizedWeight> ref = QuantizeRtnReference(w, options, round_scale);
  absl::StatusOr<RtnPackedInt4> fast =
      quant_internal::QuantizeRtnPackInt4WithKernels(kernels, w, options, round_scale);
  const std::vector<uint16_t> bf16 = ToBf16(w);
  const bool is_bf16 = FromBf16(bf16, w.rows(), w.cols()) == w;
  absl::StatusOr<RtnPackedInt4> fast_bf16 =
      is_bf16 ? quant_internal::QuantizeRtnPackInt4FromBf16WithKernels(
                    kernels, bf16, w.rows(), w.cols(), options, round_scale)
              : fast;
  ASSERT_EQ(fast.status(), ref.status());
  ASSERT_EQ(fast_bf16.status(), ref.status());
  if (!ref.ok()) return;
  const CompressedTensorsInt4 expected = PlainPack(*ref);
  for (const RtnPackedInt4* got : {&*fast, &*fast_bf16}) {
    EXPECT_EQ(got->packed.rows, expected.rows);
    EXPECT_EQ(got->packed.cols, expected.cols);
    EXPECT_EQ(got->packed.groups, expected.groups);
    EXPECT_EQ(got->packed.weight_packed, expected.weight_packed);
    EXPECT_EQ(got->packed.weight_zero_point, expected.weight_zero_point);
    EXPECT_EQ(Bits(got->scales), Bits(ref->scales));
  }
}

// Rounds every value to bfloat16, so that the f32 and bf16 inputs agree.
RowMatrixXf ExactlyBf16(const RowMatrixXf& w) { return FromBf16(ToBf16(w), w.rows(), w.cols()); }

constexpr int64_t kWidths[] = {1, 5, 8, 13, 31, 32, 33, 63, 64, 100, 129, 257, 300};
constexpr int kGroupSizes[] = {kPerChannelGroupSize, 1, 3, 8, 13, 32, 64, 100, 128, 1000};
const ScaleRounding kRoundings[] = {nullptr, RoundToHalf, RoundUpToHalf, RoundToBFloat16};

TEST(RtnKernels, QuantizeMatchesReferenceOnAwkwardValues) {
  for (const RtnKernels* kernels : KernelSets()) {
    uint32_t seed = 1;
    for (int64_t cols : kWidths) {
      for (int group_size : kGroupSizes) {
        for (int bits = 2; bits <= 8; ++bits) {
          for (bool symmetric : {true, false}) {
            const WeightQuantOptions options = Options(bits, group_size, symmetric);
            ++seed;
            for (ScaleRounding rounding : kRoundings) {
              const RowMatrixXf w =
                  AwkwardWeights(3, cols, group_size, seed, rounding == nullptr ? 3.0e38f : 3.0e4f);
              SCOPED_TRACE(absl::StrCat(kernels->name, " ", Describe(options, 3, cols),
                                        rounding == nullptr ? " f32 scales" : " rounded scales"));
              ExpectQuantizeMatches(*kernels, w, options, rounding);
              if (::testing::Test::HasFailure()) return;
            }
          }
        }
      }
    }
  }
}

TEST(RtnKernels, QuantizeMatchesReferenceOnNormalValues) {
  for (const RtnKernels* kernels : KernelSets()) {
    for (int64_t cols : {172, 4096 + 13}) {
      for (int group_size : {kPerChannelGroupSize, 128, 64, 48}) {
        for (int bits : {2, 3, 4, 8}) {
          for (bool symmetric : {true, false}) {
            const WeightQuantOptions options = Options(bits, group_size, symmetric);
            SCOPED_TRACE(absl::StrCat(kernels->name, " ", Describe(options, 9, cols)));
            const RowMatrixXf w =
                testing::RandomWeights(9, cols, static_cast<uint32_t>(cols + bits));
            ExpectQuantizeMatches(*kernels, w, options, nullptr);
            ExpectQuantizeMatches(*kernels, w, options, RoundUpToHalf);
          }
        }
      }
    }
  }
}

// Exact .5 steps: the reference rounds half to even; a kernel that rounded
// half away from zero, up, or by truncation would fail here.
TEST(RtnKernels, TiesRoundHalfToEvenAsTheReference) {
  for (const RtnKernels* kernels : KernelSets()) {
    for (int64_t cols : {8, 37, 128, 200}) {
      for (int group_size : {kPerChannelGroupSize, 8, 32, 64}) {
        for (int bits = 2; bits <= 8; ++bits) {
          for (bool symmetric : {true, false}) {
            const WeightQuantOptions options = Options(bits, group_size, symmetric);
            SCOPED_TRACE(absl::StrCat(kernels->name, " ", Describe(options, 4, cols)));
            const RowMatrixXf w = TieWeights(4, cols, options, static_cast<uint32_t>(cols * bits));
            absl::StatusOr<QuantizedWeight> ref = QuantizeRtnReference(w, options);
            ASSERT_OK(ref);
            for (float s : ref->scales) ASSERT_EQ(s, 1.0f);  // So x / s = x: ties stay ties.
            ExpectQuantizeMatches(*kernels, w, options, nullptr);
          }
        }
      }
    }
    // Known answers, 16 columns so the vector body runs: ties to even.
    RowMatrixXf w(1, 16);
    w << 7.0f, 3.5f, 2.5f, 1.5f, 0.5f, -0.5f, -1.5f, -2.5f, -3.5f, 4.5f, 5.5f, -4.5f, -5.5f, 6.5f,
        -6.5f, 0.0f;
    auto qw = quant_internal::QuantizeRtnWithKernels(*kernels, w, Options(4, -1, true), nullptr);
    ASSERT_OK(qw);
    EXPECT_EQ(qw->q, (std::vector<int8_t>{7, 4, 2, 2, 0, 0, -2, -2, -4, 4, 6, -4, -6, 6, -6, 0}))
        << kernels->name;
  }
}

// Levels that depend on the quotient being the correctly rounded x / s: a
// kernel that multiplied by a reciprocal would fail here.
TEST(RtnKernels, LevelsUseIeeeDivisionAsTheReference) {
  const RowMatrixXf w = DivisionSensitiveWeights();
  ASSERT_GE(w.rows(), 4) << "too few scales with division-sensitive values";
  absl::StatusOr<QuantizedWeight> ref = QuantizeRtnReference(w, Options(4, -1, true));
  ASSERT_OK(ref);
  // The reference is what the definition says: the level of fl(x / s).
  for (Eigen::Index r = 0; r < w.rows(); ++r) {
    ASSERT_EQ(ref->scales[r], w(r, 0) / 7.0f);
    for (Eigen::Index c = 1; c < w.cols(); ++c) {
      EXPECT_EQ(ref->q[r * w.cols() + c],
                static_cast<int8_t>(std::nearbyint(w(r, c) / ref->scales[r])));
    }
  }
  for (const RtnKernels* kernels : KernelSets()) {
    SCOPED_TRACE(kernels->name);
    ExpectQuantizeMatches(*kernels, w, Options(4, -1, true), nullptr);
    ExpectPackedMatches(*kernels, w, Options(4, -1, true), nullptr);
  }
}

TEST(RtnKernels, NonContiguousRowsMatchReference) {
  const RowMatrixXf big = testing::RandomWeights(20, 300, 3);
  const Eigen::Ref<const RowMatrixXf> block = big.block(3, 7, 11, 171);  // outer stride 300
  ASSERT_EQ(block.outerStride(), 300);
  for (const RtnKernels* kernels : KernelSets()) {
    SCOPED_TRACE(kernels->name);
    ExpectQuantizeMatches(*kernels, block, Options(4, 64, false), nullptr);
    ExpectQuantizeMatches(*kernels, block, Options(3, -1, true), RoundUpToHalf);
    absl::StatusOr<RtnPackedInt4> packed = quant_internal::QuantizeRtnPackInt4WithKernels(
        *kernels, block, Options(4, 64, false), nullptr);
    absl::StatusOr<QuantizedWeight> ref = QuantizeRtnReference(block, Options(4, 64, false));
    ASSERT_OK(packed);
    ASSERT_OK(ref);
    EXPECT_EQ(packed->packed.weight_packed, PlainPack(*ref).weight_packed);
  }
}

TEST(RtnKernels, PackedMatchesReferenceForEveryInt4Grid) {
  for (const RtnKernels* kernels : KernelSets()) {
    uint32_t seed = 100;
    for (int64_t rows : {1, 7, 9, 16}) {
      for (int64_t cols : kWidths) {
        for (int group_size : kGroupSizes) {
          for (int bits = 2; bits <= 4; ++bits) {
            for (bool symmetric : {true, false}) {
              const WeightQuantOptions options = Options(bits, group_size, symmetric);
              ++seed;
              for (ScaleRounding rounding :
                   {ScaleRounding{nullptr}, ScaleRounding{RoundUpToHalf}}) {
                const RowMatrixXf w = ExactlyBf16(AwkwardWeights(
                    rows, cols, group_size, seed, rounding == nullptr ? 3.0e38f : 3.0e4f));
                SCOPED_TRACE(absl::StrCat(kernels->name, " ", Describe(options, rows, cols)));
                ExpectPackedMatches(*kernels, w, options, rounding);
                if (::testing::Test::HasFailure()) return;
              }
            }
          }
        }
      }
    }
    // Ties and normal values through the fused path as well.
    for (bool symmetric : {true, false}) {
      const WeightQuantOptions options = Options(4, 128, symmetric);
      ExpectPackedMatches(*kernels, TieWeights(5, 300, options, 9), options, nullptr);
      ExpectPackedMatches(*kernels, ExactlyBf16(testing::RandomWeights(5, 4096, 2)), options,
                          RoundUpToHalf);
    }
  }
}

TEST(RtnKernels, PublicEntryPointsMatchReference) {
  const RowMatrixXf w = ExactlyBf16(testing::RandomWeights(13, 300, 21));
  for (bool symmetric : {true, false}) {
    const WeightQuantOptions options = Options(4, 128, symmetric);
    absl::StatusOr<QuantizedWeight> ref = QuantizeRtnReference(w, options, RoundUpToHalf);
    absl::StatusOr<QuantizedWeight> fast = QuantizeRtn(w, options, RoundUpToHalf);
    ASSERT_OK(ref);
    ASSERT_OK(fast);
    ExpectSameBits(*fast, *ref);
    absl::StatusOr<CompressedTensorsInt4> packed = PackInt4CompressedTensors(*fast);
    ASSERT_OK(packed);
    const CompressedTensorsInt4 expected = PlainPack(*ref);
    EXPECT_EQ(packed->weight_packed, expected.weight_packed);
    EXPECT_EQ(packed->weight_zero_point, expected.weight_zero_point);
    absl::StatusOr<RtnPackedInt4> fused = QuantizeRtnPackInt4(w, options, RoundUpToHalf);
    ASSERT_OK(fused);
    EXPECT_EQ(fused->packed.weight_packed, expected.weight_packed);
    EXPECT_EQ(fused->packed.weight_zero_point, expected.weight_zero_point);
    EXPECT_EQ(Bits(fused->scales), Bits(ref->scales));
    absl::StatusOr<RtnPackedInt4> fused_bf16 =
        QuantizeRtnPackInt4FromBf16(ToBf16(w), w.rows(), w.cols(), options, RoundUpToHalf);
    ASSERT_OK(fused_bf16);
    EXPECT_EQ(fused_bf16->packed.weight_packed, expected.weight_packed);
    EXPECT_EQ(Bits(fused_bf16->scales), Bits(ref->scales));
  }
}

// NaN and Inf anywhere (vector body, group tails, later groups, several in
// one matrix): the error names the first in row-major order, as the
// reference does, for f32 and bf16 input.
TEST(RtnKernels, NonFiniteErrorsNameTheSameElementAsReference) {
  const float values[] = {
      std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
      std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  std::mt19937 gen(5);
  for (const RtnKernels* kernels : KernelSets()) {
    for (int trial = 0; trial < 200; ++trial) {
      const int64_t rows = 1 + trial % 5;
      const int64_t cols = kWidths[trial % std::size(kWidths)];
      const int group_size = kGroupSizes[trial % std::size(kGroupSizes)];
      const WeightQuantOptions options = Options(2 + trial % 3, group_size, trial % 2 == 0);
      RowMatrixXf w = ExactlyBf16(testing::RandomWeights(rows, cols, static_cast<uint32_t>(trial)));
      std::uniform_int_distribution<int64_t> at(0, rows * cols - 1);
      const int bad = 1 + trial % 3;
      for (int i = 0; i < bad; ++i) w.data()[at(gen)] = values[(trial + i) % 4];
      SCOPED_TRACE(absl::StrCat(kernels->name, " ", Describe(options, rows, cols)));
      const absl::Status expected = QuantizeRtnReference(w, options).status();
      ASSERT_EQ(expected.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(quant_internal::QuantizeRtnWithKernels(*kernels, w, options, nullptr).status(),
                expected);
      EXPECT_EQ(
          quant_internal::QuantizeRtnPackInt4WithKernels(*kernels, w, options, nullptr).status(),
          expected);
      EXPECT_EQ(quant_internal::QuantizeRtnPackInt4FromBf16WithKernels(*kernels, ToBf16(w), rows,
                                                                       cols, options, nullptr)
                    .status(),
                expected);
    }
  }
}

TEST(RtnKernels, ScaleOverflowErrorsNameTheSameGroupAsReference) {
  RowMatrixXf w = RowMatrixXf::Constant(3, 40, 1.0f);
  w(1, 37) = 1e6f;  // row 1, group 4 of 8 columns: its scale overflows float16
  w(2, 3) = -1e9f;
  for (const RtnKernels* kernels : KernelSets()) {
    for (bool symmetric : {true, false}) {
      const WeightQuantOptions options = Options(4, 8, symmetric);
      const absl::Status expected = QuantizeRtnReference(w, options, RoundToHalf).status();
      EXPECT_STATUS(QuantizeRtnReference(w, options, RoundToHalf),
                    absl::StatusCode::kInvalidArgument, "weight row 1 group 4: scale inf");
      EXPECT_EQ(quant_internal::QuantizeRtnWithKernels(*kernels, w, options, RoundToHalf).status(),
                expected);
      EXPECT_EQ(quant_internal::QuantizeRtnPackInt4WithKernels(*kernels, w, options, RoundToHalf)
                    .status(),
                expected);
    }
  }
}

TEST(RtnKernels, PackedRejectsWhatThePackerRejects) {
  const RowMatrixXf w = testing::RandomWeights(2, 16, 1);
  EXPECT_STATUS(QuantizeRtnPackInt4(w, Options(5, -1, true)), absl::StatusCode::kInvalidArgument,
                "options.bits: 5 does not fit int4 packing (at most 4)");
  EXPECT_STATUS(QuantizeRtnPackInt4(w, Options(1, -1, true)), absl::StatusCode::kInvalidArgument,
                "options: bits: 1 is outside [2, 8]");
  EXPECT_STATUS(QuantizeRtnPackInt4(RowMatrixXf(0, 3), Options(4, -1, true)),
                absl::StatusCode::kInvalidArgument, "weight: shape [0, 3] is empty");
  const std::vector<uint16_t> bf16(31, 0);
  EXPECT_STATUS(QuantizeRtnPackInt4FromBf16(bf16, 2, 16, Options(4, -1, true)),
                absl::StatusCode::kInvalidArgument, "weight: expected 32 values ([2, 16]), got 31");
}

TEST(RtnKernels, PackRowMatchesPortableForEveryWidth) {
  std::mt19937 gen(8);
  std::uniform_int_distribution<int> level(-8, 7);
  for (const RtnKernels* kernels : KernelSets()) {
    for (int64_t cols = 1; cols <= 200; ++cols) {
      std::vector<int8_t> q(static_cast<size_t>(cols));
      for (int8_t& v : q) v = static_cast<int8_t>(level(gen));
      const int64_t words = (cols + 7) / 8;
      // One guard word past the end: a kernel must not write it.
      std::vector<uint32_t> got(static_cast<size_t>(words + 1), 0xDEADBEEFu);
      std::vector<uint32_t> want(static_cast<size_t>(words + 1), 0xDEADBEEFu);
      kernels->pack_int4(q.data(), cols, got.data());
      quant_internal::PortableRtnKernels().pack_int4(q.data(), cols, want.data());
      ASSERT_EQ(got, want) << kernels->name << " cols " << cols;
      EXPECT_EQ(got.back(), 0xDEADBEEFu);
    }
  }
}

TEST(RtnKernels, LevelsWithinFindsAnyOutlier) {
  for (const RtnKernels* kernels : KernelSets()) {
    for (int64_t n : {1, 31, 32, 33, 100}) {
      std::vector<int8_t> levels(static_cast<size_t>(n), 3);
      EXPECT_TRUE(kernels->levels_within(levels.data(), n, -8, 7));
      for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
        for (int8_t bad : {int8_t{-9}, int8_t{8}, int8_t{-128}, int8_t{127}}) {
          std::vector<int8_t> v = levels;
          v[static_cast<size_t>(at)] = bad;
          EXPECT_FALSE(kernels->levels_within(v.data(), n, -8, 7))
              << kernels->name << " n " << n << " at " << at << " = " << int{bad};
        }
      }
    }
  }
}

TEST(RtnKernels, FastestIsAvx2WhereTheCpuHasIt) {
  const RtnKernels* avx2 = quant_internal::Avx2RtnKernels();
  EXPECT_EQ(&quant_internal::FastestRtnKernels(),
            avx2 != nullptr ? avx2 : &quant_internal::PortableRtnKernels());
}

}  // namespace
}  // namespace catq
