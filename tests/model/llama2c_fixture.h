// File: tests/model/llama2c_fixture.h
//
// Builds small llama2.c checkpoints and tokenizers in memory for tests, so
// that error paths and the unshared-classifier layout can be tested without
// the real stories260K file.
//
//   std::string bin = MakeLlama2cCheckpoint({8, 12, 2, 2, 1, -16, 8});
//   std::string tok = MakeLlama2cTokenizer(16);
//
// Thread-safety: pure functions.
#ifndef CATQ_TESTS_MODEL_LLAMA2C_FIXTURE_H_
#define CATQ_TESTS_MODEL_LLAMA2C_FIXTURE_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace catq::testing {

template <typename T>
void AppendRaw(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

// The 7 header int32 in file order: dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size (negative: unshared classifier), seq_len.
using Llama2cDims = std::array<int32_t, 7>;

inline std::string MakeLlama2cHeader(const Llama2cDims& dims) {
  std::string out;
  for (int32_t v : dims) AppendRaw(out, v);
  return out;
}

// MakeLlama2cCheckpoint: the header, then float k (k = 0, 1, 2, ... over the
// whole file, times 1e-3) for every tensor the header implies.
inline std::string MakeLlama2cCheckpoint(const Llama2cDims& d) {
  const int64_t dim = d[0], hidden = d[1], layers = d[2], heads = d[3], kv_heads = d[4];
  const int64_t vocab = d[5] < 0 ? -int64_t{d[5]} : d[5], seq_len = d[6];
  const int64_t head = dim / heads, kv_dim = kv_heads * head;
  int64_t floats = vocab * dim +
                   layers * (2 * dim + 2 * dim * dim + 2 * kv_dim * dim + 3 * hidden * dim) + dim +
                   seq_len * head;
  if (d[5] < 0) floats += vocab * dim;
  std::string out = MakeLlama2cHeader(d);
  for (int64_t k = 0; k < floats; ++k) AppendRaw(out, static_cast<float>(k) * 1e-3f);
  return out;
}

// MakeLlama2cTokenizer: max_token_length 4, token i = "t<i>" cut to 4 bytes
// (at least 2 bytes), score -i.
inline std::string MakeLlama2cTokenizer(int64_t vocab) {
  std::string out;
  AppendRaw(out, int32_t{4});
  for (int64_t i = 0; i < vocab; ++i) {
    const std::string text = absl::StrCat("t", i).substr(0, 4);
    AppendRaw(out, static_cast<float>(-i));
    AppendRaw(out, static_cast<int32_t>(text.size()));
    out += text;
  }
  return out;
}

}  // namespace catq::testing

#endif  // CATQ_TESTS_MODEL_LLAMA2C_FIXTURE_H_
