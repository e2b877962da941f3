#include "core/model/text_documents.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(TextDocuments, SplitsOnTheMarkerWhenPresent) {
  // Newlines inside a document stay; surrounding white space goes; empty
  // documents (here the one after the final marker) are dropped.
  EXPECT_THAT(SplitTextDocuments("\n first story\nline two\n<|endoftext|>\r\n\tsecond \n"
                                 "<|endoftext|> <|endoftext|>\n"),
              ElementsAre("first story\nline two", "second"));
  EXPECT_THAT(SplitTextDocuments("no newline split<|endoftext|>here\nthere"),
              ElementsAre("no newline split", "here\nthere"));
}

TEST(TextDocuments, OneDocumentPerNonEmptyLineOtherwise) {
  EXPECT_THAT(SplitTextDocuments("one\r\n\n  two  \n\t\n three"),
              ElementsAre("one", "two", "three"));
  EXPECT_THAT(SplitTextDocuments(""), IsEmpty());
  EXPECT_THAT(SplitTextDocuments(" \n\r\n\t"), IsEmpty());
}

TEST(TextDocuments, StripsOnlySpacesTabsCrLf) {
  EXPECT_EQ(StripDocument(" \t\r\nword \t\r\n"), "word");
  EXPECT_EQ(StripDocument("\fword\v"), "\fword\v");
  EXPECT_EQ(StripDocument("\xC2\xA0word"), "\xC2\xA0word");  // U+00A0 stays.
  EXPECT_EQ(StripDocument(""), "");
}

TEST(TextDocuments, ReadsFiles) {
  testing::TempDir dir;
  const std::string path = dir.Join("text.txt");
  ASSERT_OK(WriteFileAtomically(Env::Default(), path, "a\nb\n"));
  absl::StatusOr<std::vector<std::string>> docs = ReadTextDocuments(Env::Default(), path);
  ASSERT_OK(docs);
  EXPECT_THAT(*docs, ElementsAre("a", "b"));
  EXPECT_STATUS(ReadTextDocuments(Env::Default(), dir.Join("missing.txt")),
                absl::StatusCode::kNotFound, "missing.txt");
}

TEST(TextDocuments, TinyStoriesSampleHasFiveStories) {
  CATQ_REQUIRE_SHARED();
  absl::StatusOr<std::vector<std::string>> docs =
      ReadTextDocuments(Env::Default(), testing::SharedPath("data/tinystories_sample.txt"));
  ASSERT_OK(docs);
  ASSERT_EQ(docs->size(), 5u);
  EXPECT_EQ(docs->front().substr(0, 21), "Once upon a time ther");
  for (const std::string& doc : *docs) {
    EXPECT_EQ(StripDocument(doc), doc);
    EXPECT_EQ(doc.find("<|endoftext|>"), std::string::npos);
  }
}

TEST(TextDocuments, TokenizesWithBosAndNoEos) {
  CATQ_REQUIRE_SHARED();
  absl::StatusOr<Llama2cTokenizer> tok = Llama2cTokenizer::Load(
      Env::Default(), testing::SharedPath("models/stories260K/tok512.bin"), 512);
  ASSERT_OK(tok);
  const std::vector<std::vector<int32_t>> ids = TokenizeDocuments(*tok, {"a", "Once upon a time"});
  EXPECT_THAT(ids, ElementsAre(ElementsAre(1, 261), ElementsAre(1, 403, 407, 261, 378)));
}

}  // namespace
}  // namespace catq
