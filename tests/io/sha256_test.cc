#include "core/io/sha256.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// FIPS 180-2 test vectors.
constexpr char kEmptySha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbcSha[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), kEmptySha);
  EXPECT_EQ(Sha256Hex("abc"), kAbcSha);
}

TEST(Sha256, HasherOverPiecesEqualsOneShot) {
  Sha256Hasher hasher;
  hasher.Update("a");
  hasher.Update("");
  hasher.Update("bc");
  EXPECT_EQ(hasher.Finish(), kAbcSha);
}

TEST(Sha256, OfFile) {
  testing::TempDir dir;
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("abc"), "abc"));
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("empty"), ""));
  EXPECT_EQ(*Sha256OfFile(Env::Default(), dir.Join("abc")), kAbcSha);
  EXPECT_EQ(*Sha256OfFile(Env::Default(), dir.Join("empty")), kEmptySha);
  EXPECT_STATUS(Sha256OfFile(Env::Default(), dir.Join("missing")), absl::StatusCode::kNotFound,
                "missing");
}

TEST(Sha256, IsSha256Hex) {
  EXPECT_TRUE(IsSha256Hex(kAbcSha));
  EXPECT_FALSE(IsSha256Hex(""));
  EXPECT_FALSE(IsSha256Hex(std::string(kAbcSha).substr(1)));
  EXPECT_FALSE(IsSha256Hex(absl::StrCat(kAbcSha, "0")));
  EXPECT_FALSE(IsSha256Hex(std::string(64, 'A')));
  EXPECT_FALSE(IsSha256Hex(std::string(64, 'g')));
  EXPECT_FALSE(IsSha256Hex("../../../../etc/passwd"));
}

}  // namespace
}  // namespace catq
