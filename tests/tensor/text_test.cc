#include "core/tensor/internal/text.h"

#include <gtest/gtest.h>

#include <string>

namespace catq::tensor_internal {
namespace {

constexpr size_t kValid = absl::string_view::npos;

TEST(FindInvalidUtf8, AcceptsWellFormedText) {
  EXPECT_EQ(FindInvalidUtf8(""), kValid);
  EXPECT_EQ(FindInvalidUtf8("model.layers.0.weight"), kValid);
  EXPECT_EQ(FindInvalidUtf8("\xC3\xA9"), kValid);              // é
  EXPECT_EQ(FindInvalidUtf8("\xE2\x82\xAC"), kValid);          // €
  EXPECT_EQ(FindInvalidUtf8("\xF0\x9F\x98\x80"), kValid);      // U+1F600
  EXPECT_EQ(FindInvalidUtf8("\xF4\x8F\xBF\xBF"), kValid);      // U+10FFFF
  EXPECT_EQ(FindInvalidUtf8(std::string("a\0b", 3)), kValid);  // NUL is a character.
}

TEST(FindInvalidUtf8, RejectsEveryIllFormedKind) {
  EXPECT_EQ(FindInvalidUtf8("ab\xFF"), 2u);            // Never valid.
  EXPECT_EQ(FindInvalidUtf8("a\x80"), 1u);             // Lone continuation.
  EXPECT_EQ(FindInvalidUtf8("\xC0\xAF"), 0u);          // Overlong '/'.
  EXPECT_EQ(FindInvalidUtf8("\xC1\xBF"), 0u);          // Overlong.
  EXPECT_EQ(FindInvalidUtf8("\xE0\x80\xAF"), 0u);      // Overlong 3-byte.
  EXPECT_EQ(FindInvalidUtf8("\xF0\x80\x80\xAF"), 0u);  // Overlong 4-byte.
  EXPECT_EQ(FindInvalidUtf8("\xED\xA0\x80"), 0u);      // Surrogate U+D800.
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);  // U+110000.
  EXPECT_EQ(FindInvalidUtf8("\xF5\x80\x80\x80"), 0u);
  EXPECT_EQ(FindInvalidUtf8("x\xE2\x82"), 1u);     // Truncated.
  EXPECT_EQ(FindInvalidUtf8("\xE2\x28\xA1"), 0u);  // Bad continuation.
}

TEST(Quote, EscapesAndTruncatesAtACharacterBoundary) {
  EXPECT_EQ(Quote("a\"b\n"), "\"a\\\"b\\n\"");
  EXPECT_EQ(Quote("\xC3\xA9"), "\"\xC3\xA9\"");
  std::string long_name(199, 'x');
  long_name += "\xE2\x82\xAC";  // Straddles byte 200.
  const std::string quoted = Quote(long_name);
  EXPECT_EQ(quoted, "\"" + std::string(199, 'x') + "...\"");
  EXPECT_EQ(FindInvalidUtf8(quoted), kValid);
}

}  // namespace
}  // namespace catq::tensor_internal
