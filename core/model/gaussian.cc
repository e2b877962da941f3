#include "core/model/gaussian.h"

#include <cmath>
#include <limits>
#include <numbers>

namespace catq {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t MixSeed(uint64_t seed, uint64_t index) { return SplitMix64(SplitMix64(seed) ^ index); }

double GaussianGenerator::Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

double GaussianGenerator::Normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double u1 = 1.0 - Uniform();  // (0, 1]: log(u1) is finite.
  const double u2 = Uniform();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double angle = 2.0 * std::numbers::pi * u2;
  spare_ = radius * std::sin(angle);
  has_spare_ = true;
  return radius * std::cos(angle);
}

uint64_t GaussianGenerator::Below(uint64_t n) {
  // Reject the top partial copy of [0, n) so every value is equally likely.
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t word;
  do {
    word = engine_();
  } while (word >= limit);
  return word % n;
}

}  // namespace catq
