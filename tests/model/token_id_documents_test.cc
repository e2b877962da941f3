#include "core/model/token_id_documents.h"

#include <gtest/gtest.h>

#include "tests/util/status_matchers.h"

namespace catq {
namespace {

using ::testing::ElementsAre;

std::string Ids(std::initializer_list<int32_t> ids) {
  std::string bytes;
  for (int32_t id : ids) {
    const auto u = static_cast<uint32_t>(id);
    for (int shift = 0; shift < 32; shift += 8) bytes.push_back(static_cast<char>(u >> shift));
  }
  return bytes;
}

TEST(TokenIdDocuments, SeparatorsSplitDocumentsAndEmptyOnesAreDropped) {
  absl::StatusOr<std::vector<std::vector<int32_t>>> docs =
      ParseTokenIdDocuments(Ids({-1, 1, 300, 7, -1, -1, 1, 2, -1}), 512, "ids");
  ASSERT_OK(docs);
  EXPECT_THAT(*docs, ElementsAre(ElementsAre(1, 300, 7), ElementsAre(1, 2)));
  // No separator at all: one document; ids read little-endian.
  docs = ParseTokenIdDocuments(Ids({0x01020304}), 0, "ids");
  ASSERT_OK(docs);
  EXPECT_THAT(*docs, ElementsAre(ElementsAre(0x01020304)));
}

TEST(TokenIdDocuments, BadFilesNameTheOffset) {
  EXPECT_STATUS(ParseTokenIdDocuments(Ids({1, 2}).substr(0, 7), 512, "calib.ids"),
                absl::StatusCode::kInvalidArgument, "calib.ids: size 7 is not a multiple of 4");
  EXPECT_STATUS(ParseTokenIdDocuments(Ids({1, 2, 512}), 512, "calib.ids"),
                absl::StatusCode::kInvalidArgument, "id 512 at byte offset 8 is outside [0, 512)");
  EXPECT_STATUS(ParseTokenIdDocuments(Ids({1, -2}), 0, "calib.ids"),
                absl::StatusCode::kInvalidArgument, "id -2 at byte offset 4");
  EXPECT_STATUS(ParseTokenIdDocuments(Ids({-1, -1}), 512, "calib.ids"),
                absl::StatusCode::kInvalidArgument, "calib.ids: holds no token id");
  EXPECT_STATUS(ParseTokenIdDocuments("", 512, "calib.ids"), absl::StatusCode::kInvalidArgument,
                "holds no token id");
}

}  // namespace
}  // namespace catq
