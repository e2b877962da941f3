#include "core/model/llama2c_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/model/text_documents.h"
#include "tests/model/llama2c_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::testing::ElementsAre;

constexpr int64_t kStoriesVocab = 512;

absl::StatusOr<Llama2cTokenizer> LoadTok512() {
  return Llama2cTokenizer::Load(
      Env::Default(), testing::SharedPath("models/stories260K/tok512.bin"), kStoriesVocab);
}

// A tokenizer file: <unk>, <s>, </s>, the 256 byte pieces (score 0), then
// `extra` pieces with their scores.
std::string MakeTokenizerFile(const std::vector<std::pair<std::string, float>>& extra) {
  std::vector<std::pair<std::string, float>> pieces = {
      {"<unk>", 0.0f}, {"\n<s>\n", 0.0f}, {"\n</s>\n", 0.0f}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    pieces.emplace_back(name, 0.0f);
  }
  pieces.insert(pieces.end(), extra.begin(), extra.end());
  std::string out;
  int32_t max_len = 1;
  for (const auto& [text, score] : pieces) {
    max_len = std::max(max_len, static_cast<int32_t>(text.size()));
  }
  testing::AppendRaw(out, max_len);
  for (const auto& [text, score] : pieces) {
    testing::AppendRaw(out, score);
    testing::AppendRaw(out, static_cast<int32_t>(text.size()));
    out += text;
  }
  return out;
}

// llama2.c's merge loop as run.c writes it: rescan every adjacent pair, merge
// the leftmost one with the best score, repeat. Encode must agree with it.
std::vector<int32_t> QuadraticMerge(const Llama2cTokenizer& tok, std::vector<int32_t> ids) {
  while (true) {
    float best_score = -1e10f;
    int best_id = -1;
    size_t best_idx = 0;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const std::string pair = std::string(tok.Piece(ids[i])) + std::string(tok.Piece(ids[i + 1]));
      const int32_t id = tok.Find(pair);
      if (id != -1 && tok.Score(id) > best_score) {
        best_score = tok.Score(id);
        best_id = id;
        best_idx = i;
      }
    }
    if (best_id == -1) return ids;
    ids[best_idx] = best_id;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_idx) + 1);
  }
}

// The pre-merge tokens of llama2.c's encode: BOS, the dummy prefix, then each
// character or its bytes.
std::vector<int32_t> ReferenceEncode(const Llama2cTokenizer& tok, const std::string& text) {
  std::vector<int32_t> ids = {Llama2cTokenizer::kBos};
  if (!text.empty()) ids.push_back(tok.Find(" "));
  for (size_t i = 0; i < text.size();) {
    size_t j = i + 1;
    while (j < text.size() && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80 && j - i < 4) {
      ++j;
    }
    const int32_t id = tok.Find(text.substr(i, j - i));
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (size_t k = i; k < j; ++k) ids.push_back(static_cast<unsigned char>(text[k]) + 3);
    }
    i = j;
  }
  return QuadraticMerge(tok, ids);
}

TEST(Llama2cTokenizer, LoadsTok512) {
  CATQ_REQUIRE_SHARED();
  absl::StatusOr<Llama2cTokenizer> tok = LoadTok512();
  ASSERT_OK(tok);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->Piece(1), "\n<s>\n");
  EXPECT_EQ(tok->Piece(2), "\n</s>\n");
  EXPECT_EQ(tok->Piece(3), "<0x00>");
  EXPECT_EQ(tok->Piece(258), "<0xFF>");
  EXPECT_EQ(tok->Find(" "), 410);
  EXPECT_EQ(tok->Find(" a"), 261);
  EXPECT_EQ(tok->Find("no such piece"), -1);
}

// Encodings read off tok512.bin by hand: the ids of the pieces and which
// concatenations exist.
TEST(Llama2cTokenizer, KnownEncodingsOfTok512) {
  CATQ_REQUIRE_SHARED();
  absl::StatusOr<Llama2cTokenizer> tok = LoadTok512();
  ASSERT_OK(tok);
  // " " (410) + "a" (412) merge into " a" (261).
  EXPECT_THAT(tok->Encode("a"), ElementsAre(261));
  // "A" is 447; there is no piece " A", so the dummy prefix stays alone.
  EXPECT_EQ(tok->Find(" A"), -1);
  EXPECT_THAT(tok->Encode("A"), ElementsAre(410, 447));
  EXPECT_THAT(tok->Encode("Once upon a time"), ElementsAre(403, 407, 261, 378));
  EXPECT_EQ(tok->Piece(403), " Once");
  EXPECT_EQ(tok->Piece(407), " upon");
  EXPECT_EQ(tok->Piece(378), " time");
  EXPECT_THAT(tok->Encode("Lily", /*add_bos=*/true, /*add_eos=*/true), ElementsAre(1, 317, 2));
  // A tab is not in the vocabulary: byte fallback 0x09 + 3.
  EXPECT_THAT(tok->Encode("\t"), ElementsAre(410, 12));
  // A newline is <0x0A> too (the BOS piece "\n<s>\n" is not "\n").
  EXPECT_THAT(tok->Encode("\n"), ElementsAre(410, 13));
  // "é" (2 bytes) is a piece of its own.
  EXPECT_THAT(tok->Encode("\xC3\xA9"), ElementsAre(410, 485));
  EXPECT_TRUE(tok->Encode("").empty());
  EXPECT_THAT(tok->Encode("", /*add_bos=*/true), ElementsAre(1));
}

TEST(Llama2cTokenizer, ByteFallbackForUnknownCharacters) {
  CATQ_REQUIRE_SHARED();
  absl::StatusOr<Llama2cTokenizer> tok = LoadTok512();
  ASSERT_OK(tok);
  // U+1F642 (F0 9F 99 82) is not a piece: four byte tokens.
  const std::string emoji = "\xF0\x9F\x99\x82";
  ASSERT_EQ(tok->Find(emoji), -1);
  EXPECT_THAT(tok->Encode(emoji), ElementsAre(410, 0xF0 + 3, 0x9F + 3, 0x99 + 3, 0x82 + 3));
  // A stray continuation byte and a NUL byte.
  EXPECT_THAT(tok->Encode(std::string("\x80", 1)), ElementsAre(410, 0x80 + 3));
  EXPECT_THAT(tok->Encode(std::string("\0", 1)), ElementsAre(410, 3));
}

TEST(Llama2cTokenizer, DecodeInvertsEncode) {
  CATQ_REQUIRE_SHARED();
  absl::StatusOr<Llama2cTokenizer> tok = LoadTok512();
  ASSERT_OK(tok);
  for (const std::string& text :
       {std::string("Once upon a time, there was a little girl named Lily."), std::string(" x  "),
        std::string("tab\there \xF0\x9F\x99\x82 caf\xC3\xA9\nnew line"), std::string("a")}) {
    absl::StatusOr<std::string> decoded = tok->Decode(tok->Encode(text, true, true));
    ASSERT_OK(decoded);
    EXPECT_EQ(*decoded, text);
    decoded = tok->Decode(tok->Encode(text));
    ASSERT_OK(decoded);
    EXPECT_EQ(*decoded, text);
  }
  EXPECT_STATUS(tok->Decode({1, 512}), absl::StatusCode::kInvalidArgument, "token 1 is 512");
  EXPECT_STATUS(tok->Decode({-1}), absl::StatusCode::kInvalidArgument, "token 0 is -1");
}

TEST(Llama2cTokenizer, MatchesLlama2cMergeLoopOnRealText) {
  CATQ_REQUIRE_SHARED();
  absl::StatusOr<Llama2cTokenizer> tok = LoadTok512();
  ASSERT_OK(tok);
  absl::StatusOr<std::vector<std::string>> docs =
      ReadTextDocuments(Env::Default(), testing::SharedPath("data/tinystories_sample.txt"));
  ASSERT_OK(docs);
  ASSERT_EQ(docs->size(), 5u);
  for (const std::string& doc : *docs) {
    const std::vector<int32_t> ids = tok->Encode(doc, /*add_bos=*/true);
    EXPECT_EQ(ids, ReferenceEncode(*tok, doc));
    absl::StatusOr<std::string> decoded = tok->Decode(ids);
    ASSERT_OK(decoded);
    EXPECT_EQ(*decoded, doc);
  }
  // Random bytes: invalid UTF-8, long continuation runs, NULs.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::string text(rng() % 40, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 256);
    EXPECT_EQ(tok->Encode(text, true), ReferenceEncode(*tok, text)) << "trial " << trial;
  }
}

TEST(Llama2cTokenizer, MergesBestScoreLeftmostFirst) {
  // "aba" -> " " a b a. "ab" and "ba" tie: the leftmost pair merges first.
  absl::StatusOr<Llama2cTokenizer> tied = Llama2cTokenizer::Parse(
      MakeTokenizerFile({{" ", -5}, {"a", -5}, {"b", -5}, {"ab", -1}, {"ba", -1}}), 264, "t");
  ASSERT_OK(tied);
  EXPECT_THAT(tied->Encode("aba"), ElementsAre(259, 262, 260));  // " ", "ab", "a"
  // "ba" scoring higher wins instead.
  absl::StatusOr<Llama2cTokenizer> ba = Llama2cTokenizer::Parse(
      MakeTokenizerFile({{" ", -5}, {"a", -5}, {"b", -5}, {"ab", -2}, {"ba", -1}}), 264, "t");
  ASSERT_OK(ba);
  EXPECT_THAT(ba->Encode("aba"), ElementsAre(259, 260, 263));  // " ", "a", "ba"
  // llama2.c never merges into a piece scoring at or below -1e10.
  absl::StatusOr<Llama2cTokenizer> low = Llama2cTokenizer::Parse(
      MakeTokenizerFile({{" ", -5}, {"a", -5}, {"b", -5}, {"ab", -2e10f}}), 263, "t");
  ASSERT_OK(low);
  EXPECT_THAT(low->Encode("ab"), ElementsAre(259, 260, 261));
}

TEST(Llama2cTokenizer, RefusesUnusableVocabularies) {
  EXPECT_STATUS(Llama2cTokenizer::Parse(testing::MakeLlama2cTokenizer(16), 16, "tok.bin"),
                absl::StatusCode::kInvalidArgument, "tok.bin: vocab_size 16 is below 259");
  EXPECT_STATUS(Llama2cTokenizer::Parse(MakeTokenizerFile({{"a", -1}}), 260, "tok.bin"),
                absl::StatusCode::kInvalidArgument, "no piece \" \"");
  // Structure errors come from ValidateLlama2cTokenizer.
  EXPECT_STATUS(Llama2cTokenizer::Parse(MakeTokenizerFile({{" ", -1}}), 261, "tok.bin"),
                absl::StatusCode::kDataLoss, "tok.bin: token 260");
  EXPECT_STATUS(Llama2cTokenizer::Load(Env::Default(), "/nonexistent/tok.bin", 512),
                absl::StatusCode::kNotFound, "/nonexistent/tok.bin");
}

}  // namespace
}  // namespace catq
