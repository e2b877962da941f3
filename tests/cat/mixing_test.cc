// Tests of the mixing matrix H = H_(2^a) (x) Q_q (core/cat/mixing_matrix.h)
// and of the Hadamard constructions behind it.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <unsupported/Eigen/KroneckerProduct>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cat/hadamard_construction.h"
#include "core/cat/mixing_matrix.h"
#include "core/math/eigen_types.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

// Hadamard orders checked: Sylvester, Paley I (12, 20, 24, 44),
// Paley II (28, 36).
const int64_t kHadamardOrders[] = {1, 2, 4, 8, 12, 20, 24, 28, 36, 44, 64, 128};

// Random test data; the values only have to be generic, not portable.
RowMatrixXd RandomRows(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal;
  RowMatrixXd x(rows, cols);
  for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = normal(gen);
  return x;
}

double MaxAbs(const Eigen::MatrixXd& m) { return m.size() == 0 ? 0.0 : m.cwiseAbs().maxCoeff(); }

double OrthogonalityError(const Eigen::MatrixXd& m) {
  const Eigen::MatrixXd identity = Eigen::MatrixXd::Identity(m.rows(), m.cols());
  return std::max(MaxAbs(m * m.transpose() - identity), MaxAbs(m.transpose() * m - identity));
}

// The normalized Sylvester transform by its definition, H(i, j) =
// (-1)^popcount(i & j) / sqrt(n), one output at a time: O(n^2), independent
// of the butterflies.
std::vector<double> NaiveWalshHadamard(const std::vector<double>& v) {
  const int64_t n = static_cast<int64_t>(v.size());
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      sum += (std::popcount(static_cast<uint64_t>(i & j)) % 2 == 0) ? v[j] : -v[j];
    }
    out[i] = sum / std::sqrt(static_cast<double>(n));
  }
  return out;
}

MixingMatrix CreateOrDie(int64_t d, const MixingOptions& options = {}) {
  absl::StatusOr<MixingMatrix> h = MixingMatrix::Create(d, options);
  EXPECT_OK(h);
  return *std::move(h);
}

// H built independently of MixingMatrix: Eigen's Kronecker product of the
// normalized Sylvester matrix and rot_q().
Eigen::MatrixXd KroneckerReference(const MixingMatrix& h) {
  const Eigen::MatrixXd sylvester =
      SylvesterSignMatrix(h.pow2()) / std::sqrt(static_cast<double>(h.pow2()));
  return Eigen::kroneckerProduct(sylvester, h.rot_q()).eval();
}

// ---------------------------------------------------------------------------
// Hadamard constructions.

TEST(HadamardMatrixTest, ConstructedOrdersAreOrthogonal) {
  for (const int64_t n : kHadamardOrders) {
    SCOPED_TRACE(n);
    absl::StatusOr<Eigen::MatrixXd> h = HadamardMatrix(n);
    ASSERT_OK(h);
    ASSERT_EQ(h->rows(), n);
    ASSERT_EQ(h->cols(), n);
    EXPECT_LT(OrthogonalityError(*h), 1e-12);
  }
}

TEST(HadamardMatrixTest, SignMatrixEntriesArePlusMinusOne) {
  for (const int64_t n : kHadamardOrders) {
    SCOPED_TRACE(n);
    absl::StatusOr<Eigen::MatrixXd> signs = HadamardSignMatrix(n);
    ASSERT_OK(signs);
    EXPECT_TRUE((signs->array().abs() == 1.0).all());
    // Integer-valued, so S S^T = n I holds exactly.
    EXPECT_EQ(*signs * signs->transpose(), n * Eigen::MatrixXd::Identity(n, n));
    absl::StatusOr<Eigen::MatrixXd> normalized = HadamardMatrix(n);
    ASSERT_OK(normalized);
    EXPECT_LT(MaxAbs(*normalized * std::sqrt(static_cast<double>(n)) - *signs), 1e-12);
  }
}

TEST(HadamardMatrixTest, SylvesterOrderingIsTheWalshOne) {
  const Eigen::MatrixXd s = SylvesterSignMatrix(8);
  for (int64_t i = 0; i < 8; ++i) {
    for (int64_t j = 0; j < 8; ++j) {
      EXPECT_EQ(s(i, j), std::popcount(static_cast<uint64_t>(i & j)) % 2 == 0 ? 1.0 : -1.0);
    }
  }
}

TEST(HadamardMatrixTest, UnconstructedOrdersAreNotFound) {
  for (const int64_t n : {3, 5, 7, 9, 15, 43}) {
    EXPECT_STATUS(HadamardMatrix(n), absl::StatusCode::kNotFound, absl::StrCat("order ", n));
    EXPECT_STATUS(HadamardMatrix(n), absl::StatusCode::kNotFound, "odd orders");
  }
  // Even, but no Hadamard matrix (6, 10: not multiples of 4) or none built
  // here (92 exists but needs Williamson's construction).
  for (const int64_t n : {6, 10, 92, 172}) {
    EXPECT_STATUS(HadamardMatrix(n), absl::StatusCode::kNotFound, absl::StrCat("order ", n));
  }
  EXPECT_STATUS(HadamardMatrix(0), absl::StatusCode::kInvalidArgument, "order 0");
  EXPECT_STATUS(HadamardMatrix(kMaxHadamardOrder * 2), absl::StatusCode::kInvalidArgument,
                "outside");
}

TEST(HadamardMatrixTest, IsConstructedOrderAgreesWithTheBuilder) {
  for (int64_t n = 1; n <= 300; ++n) {
    EXPECT_EQ(IsConstructedHadamardOrder(n), HadamardSignMatrix(n).ok()) << n;
  }
}

TEST(HadamardMatrixTest, SylvesterTimesPaleyOrders) {
  // 2^j * m with m = 12 (Paley I), 28 (Paley II), 44 (Paley I).
  for (const int64_t n : {48, 96, 56, 112, 88}) {
    SCOPED_TRACE(n);
    absl::StatusOr<Eigen::MatrixXd> h = HadamardMatrix(n);
    ASSERT_OK(h);
    EXPECT_LT(OrthogonalityError(*h), 1e-12);
  }
}

// ---------------------------------------------------------------------------
// Fast Walsh-Hadamard transform.

TEST(FastWalshHadamardTest, DoubleEqualsDenseSylvesterProduct) {
  for (int64_t n = 1; n <= 256; n *= 2) {
    SCOPED_TRACE(n);
    const RowMatrixXd x = RandomRows(1, n, static_cast<uint32_t>(n));
    absl::StatusOr<Eigen::MatrixXd> h = HadamardMatrix(n);
    ASSERT_OK(h);
    const Eigen::VectorXd expected = *h * x.row(0).transpose();
    Eigen::VectorXd v = x.row(0).transpose();
    FastWalshHadamard(v.data(), n);
    EXPECT_LT(MaxAbs(v - expected), 1e-12);
  }
}

// Long enough that the stages run block by block and then across blocks
// (a block holds 2048 doubles or 4096 floats).
TEST(FastWalshHadamardTest, LongTransformsEqualTheDefinition) {
  for (const int64_t n : {1024, 4096, 8192}) {
    SCOPED_TRACE(n);
    const RowMatrixXd x = RandomRows(1, n, 7);
    const std::vector<double> input(x.data(), x.data() + n);
    const std::vector<double> expected = NaiveWalshHadamard(input);
    std::vector<double> v = input;
    FastWalshHadamard(v.data(), n);
    std::vector<float> f(input.begin(), input.end());
    FastWalshHadamard(f.data(), n);
    double error = 0;
    double error_f = 0;
    for (int64_t i = 0; i < n; ++i) {
      error = std::max(error, std::abs(v[i] - expected[i]));
      error_f = std::max(error_f, std::abs(static_cast<double>(f[i]) - expected[i]));
    }
    EXPECT_LT(error, 1e-12);
    EXPECT_LT(error_f, 1e-5);
  }
}

TEST(FastWalshHadamardTest, FloatEqualsDenseSylvesterProduct) {
  for (int64_t n = 1; n <= 256; n *= 2) {
    SCOPED_TRACE(n);
    const RowMatrixXd x = RandomRows(1, n, static_cast<uint32_t>(n) + 100);
    absl::StatusOr<Eigen::MatrixXd> h = HadamardMatrix(n);
    ASSERT_OK(h);
    const Eigen::VectorXd expected = *h * x.row(0).transpose();
    Eigen::VectorXf v = x.row(0).transpose().cast<float>();
    FastWalshHadamard(v.data(), n);
    EXPECT_LT(MaxAbs(v.cast<double>() - expected), 1e-5);
  }
}

TEST(FastWalshHadamardTest, StridedTransformTouchesOnlyItsElements) {
  constexpr int64_t kN = 64;
  constexpr int64_t kStride = 3;
  const RowMatrixXd x = RandomRows(1, kN * kStride, 11);
  std::vector<double> v(x.data(), x.data() + x.size());
  std::vector<float> f(v.begin(), v.end());
  FastWalshHadamard(v.data() + 1, kN, kStride);
  FastWalshHadamard(f.data() + 1, kN, kStride);
  std::vector<double> picked(kN);
  for (int64_t i = 0; i < kN; ++i) picked[i] = x(0, 1 + i * kStride);
  const std::vector<double> expected = NaiveWalshHadamard(picked);
  for (int64_t k = 0; k < x.size(); ++k) {
    if (k % kStride == 1) {
      EXPECT_NEAR(v[k], expected[k / kStride], 1e-12) << k;
      EXPECT_NEAR(f[k], expected[k / kStride], 1e-5) << k;
    } else {
      EXPECT_EQ(v[k], x(0, k)) << k;
      EXPECT_EQ(f[k], static_cast<float>(x(0, k))) << k;
    }
  }
}

TEST(FastWalshHadamardTest, IsItsOwnInverse) {
  const RowMatrixXd x = RandomRows(1, 512, 5);
  Eigen::VectorXd v = x.row(0).transpose();
  FastWalshHadamard(v.data(), 512);
  FastWalshHadamard(v.data(), 512);
  EXPECT_LT(MaxAbs(v - x.row(0).transpose()), 1e-12);
}

// ---------------------------------------------------------------------------
// MixingMatrix: choice of q.

struct Decomposition {
  int64_t d;
  int64_t pow2;
  int64_t q;
  bool q_is_hadamard;
};

TEST(MixingMatrixTest, ChoosesPowerOfTwoAndQ) {
  const Decomposition kTable[] = {
      {1, 1, 1, false},        {7, 1, 7, false},        {4096, 4096, 1, false}, {172, 4, 43, false},
      {11008, 256, 43, false},  // No Hadamard order 172 here.
      {12, 1, 12, true},       {24, 2, 12, true},       {20, 1, 20, true},      {28, 1, 28, true},
      {36, 1, 36, true},       {44, 1, 44, true},       {6, 2, 3, false},       {3, 1, 3, false},
      {5120, 256, 20, true},   {13824, 128, 108, true}, {14336, 512, 28, true},
  };
  for (const Decomposition& row : kTable) {
    SCOPED_TRACE(row.d);
    const MixingMatrix h = CreateOrDie(row.d);
    EXPECT_EQ(h.dim(), row.d);
    EXPECT_EQ(h.pow2(), row.pow2);
    EXPECT_EQ(h.q(), row.q);
    EXPECT_EQ(h.q_is_hadamard(), row.q_is_hadamard);
    EXPECT_EQ(h.rot_q().rows(), row.q);
    EXPECT_EQ(h.rot_q().cols(), row.q);
  }
}

TEST(MixingMatrixTest, HadamardQCanBeTurnedOffOrWidened) {
  MixingOptions random_q;
  random_q.prefer_hadamard_q = false;
  const MixingMatrix h12 = CreateOrDie(12, random_q);
  EXPECT_EQ(h12.pow2(), 4);
  EXPECT_EQ(h12.q(), 3);
  EXPECT_FALSE(h12.q_is_hadamard());

  // 736 = 32 * 23: orders 92 and 184 are not built, 368 = 367 + 1 is (Paley I),
  // at 16 times the odd part.
  EXPECT_EQ(CreateOrDie(736).q(), 23);
  MixingOptions wide;
  wide.max_hadamard_q_ratio = 8;
  EXPECT_EQ(CreateOrDie(736, wide).q(), 23);
  wide.max_hadamard_q_ratio = 16;
  const MixingMatrix h736 = CreateOrDie(736, wide);
  EXPECT_EQ(h736.pow2(), 2);
  EXPECT_EQ(h736.q(), 368);
  EXPECT_TRUE(h736.q_is_hadamard());
  EXPECT_LT(OrthogonalityError(h736.rot_q()), 1e-12);

  // With every order allowed, the smallest one still wins: 768 = 64 * 12,
  // though 24, 48, ..., 768 are all constructed too.
  MixingOptions any;
  any.max_hadamard_q_ratio = 1024;
  const MixingMatrix h768 = CreateOrDie(768, any);
  EXPECT_EQ(h768.pow2(), 64);
  EXPECT_EQ(h768.q(), 12);
}

TEST(MixingMatrixTest, RejectsBadArguments) {
  EXPECT_STATUS(MixingMatrix::Create(0, {}), absl::StatusCode::kInvalidArgument, "d = 0");
  EXPECT_STATUS(MixingMatrix::Create(-4, {}), absl::StatusCode::kInvalidArgument, "d = -4");
  MixingOptions bad_ratio;
  bad_ratio.max_hadamard_q_ratio = 0;
  EXPECT_STATUS(MixingMatrix::Create(12, bad_ratio), absl::StatusCode::kInvalidArgument,
                "max_hadamard_q_ratio");
  // 2 * 8193: the odd part 8193 = 3 * 2731 is above kMaxQ.
  EXPECT_STATUS(MixingMatrix::Create(2 * 8193, {}), absl::StatusCode::kInvalidArgument, "q = 8193");
}

// ---------------------------------------------------------------------------
// MixingMatrix: the matrix and its application.

const int64_t kDenseDims[] = {1, 7, 12, 24, 64, 172, 256};

TEST(MixingMatrixTest, DenseIsOrthogonalAndTheKroneckerProduct) {
  for (const int64_t d : kDenseDims) {
    SCOPED_TRACE(d);
    const MixingMatrix h = CreateOrDie(d);
    const Eigen::MatrixXd dense = h.Dense();
    ASSERT_EQ(dense.rows(), d);
    EXPECT_LT(OrthogonalityError(dense), 1e-12);
    EXPECT_LT(MaxAbs(dense - KroneckerReference(h)), 1e-15);
    EXPECT_LT(OrthogonalityError(h.rot_q()), 1e-12);
  }
}

TEST(MixingMatrixTest, ApplyToRowsEqualsDenseProduct) {
  for (const int64_t d : kDenseDims) {
    SCOPED_TRACE(d);
    const MixingMatrix h = CreateOrDie(d);
    const Eigen::MatrixXd dense = KroneckerReference(h);
    const RowMatrixXd x = RandomRows(37, d, static_cast<uint32_t>(d));
    // Row form of v <- H v: X <- X H^T; of v <- H^T v: X <- X H.
    const RowMatrixXd expected = x * dense.transpose();
    const RowMatrixXd expected_t = x * dense;

    RowMatrixXd y = x;
    h.ApplyToRows(y);
    EXPECT_LT(MaxAbs(y - expected), 1e-12);
    RowMatrixXd yt = x;
    h.ApplyTransposeToRows(yt);
    EXPECT_LT(MaxAbs(yt - expected_t), 1e-12);

    RowMatrixXf f = x.cast<float>();
    h.ApplyToRows(f);
    EXPECT_LT(MaxAbs(f.cast<double>() - expected), 1e-5);
    RowMatrixXf ft = x.cast<float>();
    h.ApplyTransposeToRows(ft);
    EXPECT_LT(MaxAbs(ft.cast<double>() - expected_t), 1e-5);
  }
}

TEST(MixingMatrixTest, ApplyToRowsOfAStridedViewLeavesTheRestAlone) {
  const MixingMatrix h = CreateOrDie(24);
  const RowMatrixXd wide = RandomRows(5, 24 + 7, 3);
  RowMatrixXd y = wide;
  h.ApplyToRows(y.middleCols(3, 24));
  const RowMatrixXd expected = wide.middleCols(3, 24) * h.Dense().transpose();
  EXPECT_LT(MaxAbs(y.middleCols(3, 24) - expected), 1e-12);
  EXPECT_EQ(y.leftCols(3), wide.leftCols(3));
  EXPECT_EQ(y.rightCols(4), wide.rightCols(4));

  RowMatrixXf yf = wide.cast<float>();
  h.ApplyToRows(yf.middleCols(3, 24));
  EXPECT_LT(MaxAbs(yf.middleCols(3, 24).cast<double>() - expected), 1e-5);
  EXPECT_EQ(yf.leftCols(3), wide.leftCols(3).cast<float>());
  EXPECT_EQ(yf.rightCols(4), wide.rightCols(4).cast<float>());
}

TEST(MixingMatrixTest, TransposeInvertsApply) {
  for (const int64_t d : {7, 12, 24, 172, 256, 4096, 11008}) {
    SCOPED_TRACE(d);
    const MixingMatrix h = CreateOrDie(d);
    const RowMatrixXd x = RandomRows(4, d, static_cast<uint32_t>(d) + 1);
    RowMatrixXd y = x;
    h.ApplyToRows(y);
    for (int64_t i = 0; i < x.rows(); ++i) {
      EXPECT_NEAR(y.row(i).norm(), x.row(i).norm(), 1e-12 * x.row(i).norm());
    }
    h.ApplyTransposeToRows(y);
    EXPECT_LT(MaxAbs(y - x), 1e-12);
    // H^T first, then H.
    h.ApplyTransposeToRows(y);
    h.ApplyToRows(y);
    EXPECT_LT(MaxAbs(y - x), 1e-12);

    RowMatrixXf f = x.cast<float>();
    h.ApplyToRows(f);
    h.ApplyTransposeToRows(f);
    EXPECT_LT(MaxAbs(f.cast<double>() - x), 1e-5);
  }
}

// Too large for Dense(): d = 4096 is the pure FWHT, checked against the
// definition of the Sylvester matrix.
TEST(MixingMatrixTest, ApplyAt4096IsTheSylvesterTransform) {
  const MixingMatrix h = CreateOrDie(4096);
  const RowMatrixXd x = RandomRows(1, 4096, 17);
  RowMatrixXd y = x;
  h.ApplyToRows(y);
  const std::vector<double> expected =
      NaiveWalshHadamard(std::vector<double>(x.data(), x.data() + x.size()));
  double error = 0;
  for (int64_t i = 0; i < 4096; ++i) error = std::max(error, std::abs(y(0, i) - expected[i]));
  EXPECT_LT(error, 1e-12);
}

// d = 11008 = 256 * 43: H v = vec(H_256 V Q_43^T), with H_256 as a dense
// matrix here.
TEST(MixingMatrixTest, ApplyAt11008IsTheFactoredProduct) {
  const MixingMatrix h = CreateOrDie(11008);
  ASSERT_EQ(h.pow2(), 256);
  absl::StatusOr<Eigen::MatrixXd> h256 = HadamardMatrix(256);
  ASSERT_OK(h256);
  const RowMatrixXd x = RandomRows(3, 11008, 23);
  RowMatrixXd y = x;
  h.ApplyToRows(y);
  RowMatrixXd yt = x;
  h.ApplyTransposeToRows(yt);
  for (int64_t i = 0; i < x.rows(); ++i) {
    const Eigen::Map<const RowMatrixXd> v(x.row(i).data(), 256, 43);
    const RowMatrixXd expected = *h256 * v * h.rot_q().transpose();
    const RowMatrixXd expected_t = *h256 * v * h.rot_q();
    EXPECT_LT(MaxAbs(Eigen::Map<const RowMatrixXd>(y.row(i).data(), 256, 43) - expected), 1e-12);
    EXPECT_LT(MaxAbs(Eigen::Map<const RowMatrixXd>(yt.row(i).data(), 256, 43) - expected_t), 1e-12);
  }
}

// ---------------------------------------------------------------------------
// MixingMatrix::FromStored: the matrix rebuilt from an output's rot_q.

// Applying the rebuilt matrix is applying the original: the same Q_q in the
// same kernels. Rounded to float, as the output stores it, rot_q rebuilds a
// matrix whose float rows are bit for bit the original's (those already run
// on Q_q rounded to float).
TEST(MixingMatrixFromStoredTest, AppliesAsTheOriginal) {
  for (const int64_t d : {64, 172, 4096}) {
    SCOPED_TRACE(d);
    const MixingMatrix original = CreateOrDie(d);
    absl::StatusOr<MixingMatrix> exact = MixingMatrix::FromStored(d, original.rot_q());
    ASSERT_OK(exact);
    const Eigen::MatrixXd stored_q = original.rot_q().cast<float>().cast<double>();
    absl::StatusOr<MixingMatrix> stored = MixingMatrix::FromStored(d, stored_q);
    ASSERT_OK(stored);
    EXPECT_EQ(exact->pow2(), original.pow2());
    EXPECT_EQ(exact->q(), original.q());
    EXPECT_EQ(exact->q_is_hadamard(), original.q_is_hadamard());

    const RowMatrixXd x = RandomRows(5, d, static_cast<uint32_t>(d) + 7);
    RowMatrixXd want = x, got = x;
    original.ApplyToRows(want);
    exact->ApplyToRows(got);
    EXPECT_EQ(got, want);
    original.ApplyTransposeToRows(want);
    exact->ApplyTransposeToRows(got);
    EXPECT_EQ(got, want);

    RowMatrixXf want_f = x.cast<float>(), got_f = x.cast<float>();
    original.ApplyToRows(want_f);
    stored->ApplyToRows(got_f);
    EXPECT_EQ(got_f, want_f);
    RowMatrixXd want_d = x, got_stored = x;
    original.ApplyToRows(want_d);
    stored->ApplyToRows(got_stored);
    EXPECT_LT(MaxAbs(got_stored - want_d), 1e-5);
  }
}

// A Hadamard Q_q is recognized as one; q = 1 may be stored or left out.
TEST(MixingMatrixFromStoredTest, RecognizesHadamardQAndMissingQ) {
  const MixingMatrix h24 = CreateOrDie(24);
  ASSERT_TRUE(h24.q_is_hadamard());
  absl::StatusOr<MixingMatrix> rebuilt =
      MixingMatrix::FromStored(24, h24.rot_q().cast<float>().cast<double>());
  ASSERT_OK(rebuilt);
  EXPECT_TRUE(rebuilt->q_is_hadamard());
  EXPECT_EQ(rebuilt->q(), 12);

  absl::StatusOr<MixingMatrix> fwht = MixingMatrix::FromStored(4096, std::nullopt);
  ASSERT_OK(fwht);
  EXPECT_EQ(fwht->q(), 1);
  EXPECT_EQ(fwht->pow2(), 4096);
  const RowMatrixXd x = RandomRows(2, 4096, 5);
  RowMatrixXd want = x, got = x;
  CreateOrDie(4096).ApplyToRows(want);
  fwht->ApplyToRows(got);
  EXPECT_EQ(got, want);
}

TEST(MixingMatrixFromStoredTest, RejectsWhatIsNotAStoredFactor) {
  using absl::StatusCode::kInvalidArgument;
  const Eigen::MatrixXd q43 = CreateOrDie(172).rot_q();
  EXPECT_STATUS(MixingMatrix::FromStored(172, std::nullopt), kInvalidArgument,
                "not a power of two: rot_q is required");
  EXPECT_STATUS(MixingMatrix::FromStored(0, std::nullopt), kInvalidArgument, "d = 0");
  // d / q = 3 is not a power of two; 43 does not divide 100.
  EXPECT_STATUS(MixingMatrix::FromStored(129, q43), kInvalidArgument, "power of two (d = 129)");
  EXPECT_STATUS(MixingMatrix::FromStored(100, q43), kInvalidArgument, "power of two (d = 100)");
  EXPECT_STATUS(MixingMatrix::FromStored(172, Eigen::MatrixXd::Identity(43, 42)), kInvalidArgument,
                "43x42, expected a square matrix");

  Eigen::MatrixXd scaled = q43;
  scaled.col(5) *= 1.01;
  EXPECT_STATUS(MixingMatrix::FromStored(172, scaled), kInvalidArgument, "not orthogonal");
  Eigen::MatrixXd transposed_block = q43;
  transposed_block(0, 1) = q43(1, 0);
  transposed_block(1, 0) = q43(0, 1);
  EXPECT_STATUS(MixingMatrix::FromStored(172, transposed_block), kInvalidArgument,
                "not orthogonal");
  Eigen::MatrixXd nan = q43;
  nan(2, 3) = std::nan("");
  EXPECT_STATUS(MixingMatrix::FromStored(172, nan), kInvalidArgument, "rot_q[2, 3] is not finite");
  EXPECT_STATUS(MixingMatrix::FromStored(64, Eigen::MatrixXd::Constant(1, 1, -1.0)),
                kInvalidArgument, "q = 1 needs [1]");
}

// ---------------------------------------------------------------------------
// MixingMatrix: the random Q_q.

TEST(MixingMatrixTest, SameSeedSameQDifferentSeedDifferentQ) {
  MixingOptions a;
  a.seed = 1234;
  MixingOptions b;
  b.seed = 1235;
  const MixingMatrix h1 = CreateOrDie(172, a);
  const MixingMatrix h2 = CreateOrDie(172, a);
  const MixingMatrix h3 = CreateOrDie(172, b);
  ASSERT_FALSE(h1.q_is_hadamard());
  EXPECT_EQ(h1.rot_q(), h2.rot_q());
  EXPECT_GT(MaxAbs(h1.rot_q() - h3.rot_q()), 0.1);
  // Q_q depends on (seed, q) only: d = 86 = 2 * 43 gets the same Q_43.
  EXPECT_EQ(CreateOrDie(86, a).rot_q(), h1.rot_q());
  // ... and different orders draw from different streams.
  EXPECT_NE(CreateOrDie(3, a).rot_q()(0, 0), h1.rot_q()(0, 0));
}

// The generator and Box-Muller are fixed in the source, so Q_3 of seed 0 is
// the same on every platform (up to the last bits of libm's log, sin, cos).
TEST(MixingMatrixTest, RandomQIsPortable) {
  const MixingMatrix h = CreateOrDie(3);
  const Eigen::Matrix3d expected{
      {-0.57123634668183509, -0.27221781997427896, 0.77432970672578572},
      {-0.80854849290882103, 0.024331641675797877, -0.58792627584437385},
      {0.14120329615297456, -0.96192797531926033, -0.23400042618278244},
  };
  EXPECT_LT(MaxAbs(h.rot_q() - expected), 1e-12) << h.rot_q();
}

// Without the sign fix on R's diagonal, Householder QR gives a Q whose
// (0, 0) entry has a fixed sign for every seed; a Haar Q has either sign with
// probability 1/2 (and E[Q(0, 0)^2] = 1/q).
TEST(MixingMatrixTest, RandomQLooksHaar) {
  constexpr int kSeeds = 400;
  int positive = 0;
  double sum_sq = 0;
  for (int seed = 0; seed < kSeeds; ++seed) {
    MixingOptions options;
    options.seed = static_cast<uint64_t>(seed);
    const MixingMatrix h = CreateOrDie(3, options);
    const double q00 = h.rot_q()(0, 0);
    positive += q00 > 0 ? 1 : 0;
    sum_sq += q00 * q00;
  }
  // Binomial(400, 1/2) has standard deviation 10.
  EXPECT_GT(positive, 150);
  EXPECT_LT(positive, 250);
  EXPECT_NEAR(sum_sq / kSeeds, 1.0 / 3.0, 0.05);
}

}  // namespace
}  // namespace catq
