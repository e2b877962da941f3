#include "core/cat/hadamard_construction.h"

#include <bit>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace catq {
namespace {

enum class Paley { kNone, kI, kII };

bool IsPrime(int64_t n) {
  if (n < 2) return false;
  for (int64_t f = 2; f * f <= n; ++f) {
    if (n % f == 0) return false;
  }
  return true;
}

// Which Paley construction gives order m directly, if any. Type I is tried
// first: its matrix is built with no doubling.
Paley PaleyTypeFor(int64_t m) {
  if (m % 4 == 0 && IsPrime(m - 1) && (m - 1) % 4 == 3) return Paley::kI;
  if (m % 4 == 0 && IsPrime(m / 2 - 1) && (m / 2 - 1) % 4 == 1) return Paley::kII;
  return Paley::kNone;
}

// Writes n = 2^j * m with m of a Paley order (largest m first), or returns
// false. Orders that are powers of two are Sylvester's and never reach here.
bool SplitPaley(int64_t n, int64_t* sylvester, int64_t* m, Paley* type) {
  int64_t pow2 = 1;
  for (int64_t rest = n; rest % 4 == 0; rest /= 2, pow2 *= 2) {
    if (const Paley t = PaleyTypeFor(rest); t != Paley::kNone) {
      *sylvester = pow2;
      *m = rest;
      *type = t;
      return true;
    }
  }
  return false;
}

// The quadratic character of GF(p): 0 at 0, +1 on squares, -1 elsewhere.
Eigen::VectorXi QuadraticCharacter(int64_t p) {
  Eigen::VectorXi chi = Eigen::VectorXi::Constant(p, -1);
  chi(0) = 0;
  for (int64_t x = 1; x < p; ++x) chi((x * x) % p) = 1;
  return chi;
}

// The conference matrix of order p + 1 built on the Jacobsthal matrix
// Q(i, j) = chi(j - i): zero diagonal, C C^T = p I. `skew` picks the sign of
// the first column: -1 gives the skew-symmetric C for p = 3 mod 4 (where Q
// is antisymmetric), +1 the symmetric one for p = 1 mod 4.
Eigen::MatrixXd ConferenceMatrix(int64_t p, bool skew) {
  const Eigen::VectorXi chi = QuadraticCharacter(p);
  Eigen::MatrixXd c(p + 1, p + 1);
  c(0, 0) = 0;
  for (int64_t i = 1; i <= p; ++i) {
    c(0, i) = 1;
    c(i, 0) = skew ? -1 : 1;
    for (int64_t j = 1; j <= p; ++j) c(i, j) = chi(((j - i) % p + p) % p);
  }
  return c;
}

// Paley I: H = I + C with C skew-symmetric, so H H^T = I - C^2 = I + C C^T
// = (p + 1) I.
Eigen::MatrixXd PaleyI(int64_t m) {
  Eigen::MatrixXd c = ConferenceMatrix(m - 1, /*skew=*/true);
  c.diagonal().array() += 1.0;
  return c;
}

// Paley II: C symmetric of order m / 2; every 0 of C becomes [1 -1; -1 -1],
// every +-1 becomes +-[1 1; 1 -1]. The two blocks are orthogonal to each
// other, which makes the result Hadamard.
Eigen::MatrixXd PaleyII(int64_t m) {
  const int64_t half = m / 2;
  const Eigen::MatrixXd c = ConferenceMatrix(half - 1, /*skew=*/false);
  Eigen::MatrixXd h(m, m);
  for (int64_t i = 0; i < half; ++i) {
    for (int64_t j = 0; j < half; ++j) {
      const double s = c(i, j);
      if (s == 0) {
        h.block<2, 2>(2 * i, 2 * j) << 1, -1, -1, -1;
      } else {
        h.block<2, 2>(2 * i, 2 * j) << s, s, s, -s;
      }
    }
  }
  return h;
}

}  // namespace

bool IsPowerOfTwo(int64_t n) { return n > 0 && std::has_single_bit(static_cast<uint64_t>(n)); }

bool IsConstructedHadamardOrder(int64_t n) {
  if (n < 1 || n > kMaxHadamardOrder) return false;
  if (IsPowerOfTwo(n)) return true;
  int64_t sylvester = 0;
  int64_t m = 0;
  Paley type = Paley::kNone;
  return SplitPaley(n, &sylvester, &m, &type);
}

Eigen::MatrixXd SylvesterSignMatrix(int64_t n) {
  Eigen::MatrixXd h(n, n);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < n; ++i) {
      h(i, j) = (std::popcount(static_cast<uint64_t>(i & j)) % 2 == 0) ? 1.0 : -1.0;
    }
  }
  return h;
}

absl::StatusOr<Eigen::MatrixXd> HadamardSignMatrix(int64_t n) {
  if (n < 1 || n > kMaxHadamardOrder) {
    return absl::InvalidArgumentError(
        absl::StrCat("Hadamard order ", n, " is outside [1, ", kMaxHadamardOrder, "]"));
  }
  if (IsPowerOfTwo(n)) return SylvesterSignMatrix(n);
  int64_t sylvester = 0;
  int64_t m = 0;
  Paley type = Paley::kNone;
  if (!SplitPaley(n, &sylvester, &m, &type)) {
    return absl::NotFoundError(
        absl::StrCat("no Hadamard matrix of order ", n,
                     " is constructed (Sylvester 2^k, Paley I p+1, Paley II 2(p+1) for a prime p, "
                     "times 2^j)",
                     n % 2 == 1 ? "; odd orders above 1 have none" : ""));
  }
  const Eigen::MatrixXd paley = type == Paley::kI ? PaleyI(m) : PaleyII(m);
  if (sylvester == 1) return paley;
  // Sylvester (x) Paley: block (a, b) of size m is S(a, b) * Paley.
  const Eigen::MatrixXd s = SylvesterSignMatrix(sylvester);
  Eigen::MatrixXd h(n, n);
  for (int64_t b = 0; b < sylvester; ++b) {
    for (int64_t a = 0; a < sylvester; ++a) h.block(a * m, b * m, m, m) = s(a, b) * paley;
  }
  return h;
}

}  // namespace catq
