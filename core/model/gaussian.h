// File: core/model/gaussian.h
//
// A portable, deterministic source of normal and uniform variates for
// synthetic weights. std::normal_distribution differs between standard
// libraries, so catq draws 64-bit words from std::mt19937_64 (whose sequence
// the C++ standard fixes) and turns them into numbers itself: uniforms from
// the top 53 bits, normals by the Box-Muller transform in double precision.
// The same seed gives the same sequence on every platform whose libm rounds
// log, sqrt, sin and cos the same way (glibc on x86-64 and aarch64 does).
//
//   GaussianGenerator gen(MixSeed(seed, tensor_index));
//   float w = static_cast<float>(gen.Normal() * stddev);
//
// Thread-safety: a GaussianGenerator is not thread-safe; use one per thread.
#ifndef CATQ_CORE_MODEL_GAUSSIAN_H_
#define CATQ_CORE_MODEL_GAUSSIAN_H_

#include <cstdint>
#include <random>

namespace catq {

// SplitMix64: one step of Vigna's SplitMix64 finaliser, a bijective mix of a
// 64-bit word.
uint64_t SplitMix64(uint64_t x);

// MixSeed: a seed for stream `index` of a generator seeded with `seed`, so
// that (seed, index) pairs give unrelated streams (seed + index would make
// stream i+1 of seed s equal to stream i of seed s+1).
uint64_t MixSeed(uint64_t seed, uint64_t index);

class GaussianGenerator {
 public:
  explicit GaussianGenerator(uint64_t seed) : engine_(seed) {}

  // NextWord: the next raw 64-bit word of mt19937_64.
  uint64_t NextWord() { return engine_(); }
  // Uniform: uniform in [0, 1), 53 random bits.
  double Uniform();
  // Normal: standard normal N(0, 1). Box-Muller makes two per pair of
  // uniforms; the second is returned by the next call.
  double Normal();
  // Below: uniform integer in [0, n) without modulo bias. REQUIRES: n > 0.
  uint64_t Below(uint64_t n);

 private:
  std::mt19937_64 engine_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace catq

#endif  // CATQ_CORE_MODEL_GAUSSIAN_H_
