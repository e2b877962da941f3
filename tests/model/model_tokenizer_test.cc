#include "core/model/model_tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "core/io/env.h"
#include "core/model/llama2c_import.h"
#include "tests/model/llama2c_fixture.h"
#include "tests/model/sentencepiece_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// A directory with either tokenizer file or both: two vocabularies that
// encode "a" differently (the llama2.c one has no piece "a").
class ModelTokenizerTest : public ::testing::Test {
 protected:
  static constexpr int64_t kVocab = 264;

  void WriteSentencePiece() {
    const std::string model = testing::SerializeSentencePieceModel(testing::SpVocabulary(
        {{"\xE2\x96\x81", -1.0f}, {"a", -2.0f}, {"b", -3.0f}, {"c", -4.0f}, {"d", -5.0f}}));
    ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join(kSentencePieceModelFileName), model));
  }
  void WriteLlama2c() {
    std::string bin;
    testing::AppendRaw(bin, int32_t{6});
    for (int64_t i = 0; i < kVocab; ++i) {
      std::string text = "<unk>";
      if (i >= 3 && i < 259) text = ByteName(static_cast<int>(i - 3));
      if (i == 259) text = " ";
      if (i > 259) text = std::string(1, static_cast<char>('w' + (i - 260)));
      testing::AppendRaw(bin, -static_cast<float>(i));
      testing::AppendRaw(bin, static_cast<int32_t>(text.size()));
      bin += text;
    }
    ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join(kLlama2cTokenizerFileName), bin));
  }
  static std::string ByteName(int b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    return name;
  }

  testing::TempDir dir_;
};

TEST_F(ModelTokenizerTest, PrefersTokenizerModel) {
  WriteLlama2c();
  WriteSentencePiece();
  absl::StatusOr<Llama2cTokenizer> tokenizer =
      LoadModelTokenizer(Env::Default(), dir_.path(), kVocab);
  ASSERT_OK(tokenizer);
  EXPECT_EQ(tokenizer->Find("a"), 260);
}

TEST_F(ModelTokenizerTest, FallsBackToTokenizerBin) {
  WriteLlama2c();
  absl::StatusOr<Llama2cTokenizer> tokenizer =
      LoadModelTokenizer(Env::Default(), dir_.path(), kVocab);
  ASSERT_OK(tokenizer);
  EXPECT_EQ(tokenizer->Find("a"), -1);
  EXPECT_EQ(tokenizer->Find("w"), 260);
}

TEST_F(ModelTokenizerTest, NotFoundNamesBothFiles) {
  EXPECT_STATUS(LoadModelTokenizer(Env::Default(), dir_.path(), kVocab),
                absl::StatusCode::kNotFound,
                "no tokenizer, neither tokenizer.model (SentencePiece) nor tokenizer.bin");
}

TEST_F(ModelTokenizerTest, ErrorsNameTheFile) {
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir_.Join(kSentencePieceModelFileName), "\x80"));
  EXPECT_STATUS(LoadModelTokenizer(Env::Default(), dir_.path(), kVocab),
                absl::StatusCode::kInvalidArgument,
                dir_.Join("tokenizer.model at byte offset 0: truncated varint (tag)"));
}

TEST(IsModelTokenizerFile, BothNamesAndNothingElse) {
  EXPECT_TRUE(IsModelTokenizerFile("tokenizer.model"));
  EXPECT_TRUE(IsModelTokenizerFile("tokenizer.bin"));
  EXPECT_FALSE(IsModelTokenizerFile("tokenizer.json"));
  EXPECT_FALSE(IsModelTokenizerFile("sub/tokenizer.model"));
}

}  // namespace
}  // namespace catq
