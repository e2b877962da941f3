#include "core/model/llama2c_format.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tests/model/llama2c_fixture.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

using testing::AppendRaw;
using testing::Llama2cDims;
using testing::MakeLlama2cCheckpoint;
using testing::MakeLlama2cHeader;
using testing::MakeLlama2cTokenizer;

constexpr Llama2cDims kStories260K = {64, 172, 5, 8, 4, 512, 512};

TEST(Llama2cFormat, Stories260KLayout) {
  absl::StatusOr<Llama2cHeader> h = ParseLlama2cHeader(MakeLlama2cHeader(kStories260K), "s.bin");
  ASSERT_OK(h);
  EXPECT_EQ(h->dim, 64);
  EXPECT_EQ(h->kv_dim(), 32);
  EXPECT_EQ(h->head_dim(), 8);
  EXPECT_TRUE(h->shared_classifier);
  const Llama2cLayout l = ComputeLlama2cLayout(*h);
  EXPECT_EQ(l.token_embedding.offset, 28u);
  EXPECT_EQ(l.rms_att.offset, 28u + 4 * 512 * 64);
  EXPECT_EQ(l.wq.offset, 132380u);  // 28 + 4 * (512 * 64 + 5 * 64)
  EXPECT_EQ(l.wq.LayerOffset(1), 132380u + 4 * 64 * 64);
  EXPECT_EQ(l.wk.offset, l.wq.end());
  EXPECT_EQ(l.wk.LayerBytes(), 4u * 32 * 64);
  EXPECT_EQ(l.w2.floats_per_layer, 64u * 172);
  EXPECT_EQ(l.wcls.floats_per_layer, 0u);
  EXPECT_EQ(l.total_bytes, 1056540u);  // The size of the real file.
  EXPECT_OK(CheckLlama2cFileSize(l, 1056540, "s.bin"));
}

TEST(Llama2cFormat, NegativeVocabMeansAClassifierAtTheEnd) {
  Llama2cDims dims = kStories260K;
  dims[5] = -512;
  absl::StatusOr<Llama2cHeader> h = ParseLlama2cHeader(MakeLlama2cHeader(dims), "s.bin");
  ASSERT_OK(h);
  EXPECT_EQ(h->vocab_size, 512);
  EXPECT_FALSE(h->shared_classifier);
  const Llama2cLayout l = ComputeLlama2cLayout(*h);
  EXPECT_EQ(l.wcls.offset, l.freq_cis_imag.end());
  EXPECT_EQ(l.total_bytes, 1056540u + 4 * 512 * 64);
}

TEST(Llama2cFormat, BadHeaderValuesNameFieldAndOffset) {
  struct Case {
    Llama2cDims dims;
    const char* fragment;
  };
  const Case cases[] = {
      {{0, 172, 5, 8, 4, 512, 512}, "header field dim (offset 0) is 0, must be positive"},
      {{64, -1, 5, 8, 4, 512, 512}, "header field hidden_dim (offset 4) is -1"},
      {{64, 172, 0, 8, 4, 512, 512}, "header field n_layers (offset 8) is 0"},
      {{64, 172, 5, 0, 4, 512, 512}, "header field n_heads (offset 12) is 0"},
      {{64, 172, 5, 8, -4, 512, 512}, "header field n_kv_heads (offset 16) is -4"},
      {{64, 172, 5, 8, 4, 0, 512}, "header field vocab_size (offset 20) is 0, must not be zero"},
      {{64, 172, 5, 8, 4, 512, 0}, "header field seq_len (offset 24) is 0"},
      {{64, 172, 5, 8, 4, 512, 1 << 30},
       "header field seq_len (offset 24) is 1073741824, larger than"},
      {{64, 172, 5, 7, 1, 512, 512},
       "header field n_heads (offset 12) is 7, which does not divide dim 64"},
      {{64, 172, 5, 8, 3, 512, 512},
       "header field n_kv_heads (offset 16) is 3, which does not divide n_heads"},
      {{48, 172, 5, 16, 4, 512, 512},
       "header field n_heads (offset 12) is 16, giving an odd head size 3"},
  };
  for (const Case& c : cases) {
    EXPECT_STATUS(ParseLlama2cHeader(MakeLlama2cHeader(c.dims), "m.bin"),
                  absl::StatusCode::kInvalidArgument, std::string("m.bin: ") + c.fragment);
  }
}

TEST(Llama2cFormat, ShortFileAndVersionedExportAreRefused) {
  EXPECT_STATUS(ParseLlama2cHeader("abc", "m.bin"), absl::StatusCode::kDataLoss,
                "m.bin: needs at least 28 bytes for the llama2.c header, file has 3");
  std::string versioned = MakeLlama2cHeader(kStories260K);
  const uint32_t magic = kLlama2cVersionedMagic;
  std::memcpy(versioned.data(), &magic, 4);
  EXPECT_STATUS(ParseLlama2cHeader(versioned, "m.bin"), absl::StatusCode::kInvalidArgument,
                "0x616b3432");
}

TEST(Llama2cFormat, FileSizeMustMatchExactly) {
  absl::StatusOr<Llama2cHeader> h = ParseLlama2cHeader(MakeLlama2cHeader(kStories260K), "x");
  ASSERT_OK(h);
  const Llama2cLayout l = ComputeLlama2cLayout(*h);
  EXPECT_STATUS(CheckLlama2cFileSize(l, 1000, "stories260K.bin"), absl::StatusCode::kDataLoss,
                "stories260K.bin: needs 1056540 bytes for the header's shapes, file has 1000");
  EXPECT_STATUS(CheckLlama2cFileSize(l, 1056544, "stories260K.bin"), absl::StatusCode::kDataLoss,
                "has 1056544 bytes, 4 more than the 1056540");
}

TEST(Llama2cFormat, FixtureCheckpointHasTheLayoutSize) {
  const Llama2cDims dims = {8, 12, 2, 2, 1, -16, 8};
  const std::string bin = MakeLlama2cCheckpoint(dims);
  absl::StatusOr<Llama2cHeader> h = ParseLlama2cHeader(bin, "f.bin");
  ASSERT_OK(h);
  EXPECT_OK(CheckLlama2cFileSize(ComputeLlama2cLayout(*h), bin.size(), "f.bin"));
}

TEST(Llama2cFormat, TokenizerIsWalkedToTheEnd) {
  const std::string tok = MakeLlama2cTokenizer(16);
  EXPECT_OK(ValidateLlama2cTokenizer(tok, 16, "tok.bin"));
  // Every truncation is caught, with the token and offset.
  for (size_t size = 0; size < tok.size(); ++size) {
    const absl::Status s = ValidateLlama2cTokenizer(tok.substr(0, size), 16, "tok.bin");
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << size << ": " << s;
  }
  // Token 0 is "t0": score at 4, length at 8, text at 12..14; token 1 starts at 14.
  EXPECT_STATUS(
      ValidateLlama2cTokenizer(tok.substr(0, 13), 16, "tok.bin"), absl::StatusCode::kDataLoss,
      "tok.bin: token 0 at offset 4: needs 2 bytes of text at offset 12, file ends at 13");
  EXPECT_STATUS(ValidateLlama2cTokenizer(tok.substr(0, 17), 16, "tok.bin"),
                absl::StatusCode::kDataLoss, "token 1 at offset 14: needs 8 bytes");
  EXPECT_STATUS(ValidateLlama2cTokenizer(tok, 15, "tok.bin"), absl::StatusCode::kDataLoss,
                "bytes after the last of 15 tokens");
  EXPECT_STATUS(ValidateLlama2cTokenizer(tok, 17, "tok.bin"), absl::StatusCode::kDataLoss,
                "token 16 at offset");
}

TEST(Llama2cFormat, TokenizerBadValuesAreRefused) {
  std::string tok;
  AppendRaw(tok, int32_t{0});
  EXPECT_STATUS(ValidateLlama2cTokenizer(tok, 1, "tok.bin"), absl::StatusCode::kInvalidArgument,
                "max_token_length (offset 0) is 0");
  tok.clear();
  AppendRaw(tok, int32_t{2});
  AppendRaw(tok, 0.0f);
  AppendRaw(tok, int32_t{3});
  tok += "abc";
  EXPECT_STATUS(ValidateLlama2cTokenizer(tok, 1, "tok.bin"), absl::StatusCode::kInvalidArgument,
                "token 0 at offset 4: length 3 is outside [1, max_token_length 2]");
  tok.clear();
  AppendRaw(tok, int32_t{2});
  AppendRaw(tok, std::nanf(""));
  AppendRaw(tok, int32_t{1});
  tok += "a";
  EXPECT_STATUS(ValidateLlama2cTokenizer(tok, 1, "tok.bin"), absl::StatusCode::kInvalidArgument,
                "score is nan");
}

}  // namespace
}  // namespace catq
