#include "core/model/sentencepiece_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/model/protobuf_wire_reader.h"
#include "core/model/sentencepiece_tokenizer.h"
#include "core/model/text_documents.h"
#include "tests/model/sentencepiece_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using testing::AppendBytesField;
using testing::AppendFloatField;
using testing::AppendTag;
using testing::AppendVarint;
using testing::AppendVarintField;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Not;
using testing::SerializeSentencePieceModel;
using testing::SpPiece;
using testing::SpSpecs;
using testing::SpVocabulary;

constexpr char kFile[] = "tokenizer.model";
constexpr int64_t kStoriesVocab = 512;

// A small valid vocabulary: the 259 special and byte pieces, then these.
std::vector<SpPiece> SmallVocabulary() {
  return SpVocabulary({{"\xE2\x96\x81", -1.0f},
                       {"a", -2.0f},
                       {"b", -3.0f},
                       {"\xE2\x96\x81"
                        "a",
                        -4.0f},
                       {"ab", -5.0f}});
}

absl::StatusOr<Llama2cTokenizer> Tokenizer(const std::string& bytes) {
  return ParseSentencePieceTokenizer(bytes, static_cast<int64_t>(SmallVocabulary().size()), kFile);
}

TEST(SentencePieceModel, EncodesTinyStoriesExactlyAsTok512) {
  CATQ_REQUIRE_SHARED();
  const std::string tok512 =
      testing::ReadTestFile(testing::SharedPath("models/stories260K/tok512.bin"));
  absl::StatusOr<Llama2cTokenizer> llama2c =
      Llama2cTokenizer::Parse(tok512, kStoriesVocab, "tok512.bin");
  ASSERT_OK(llama2c);
  absl::StatusOr<Llama2cTokenizer> sentencepiece = ParseSentencePieceTokenizer(
      testing::SentencePieceModelFromLlama2c(tok512, kStoriesVocab), kStoriesVocab, kFile);
  ASSERT_OK(sentencepiece);
  absl::StatusOr<std::vector<std::string>> documents =
      ReadTextDocuments(Env::Default(), testing::SharedPath("data/tinystories_sample.txt"));
  ASSERT_OK(documents);
  ASSERT_FALSE(documents->empty());
  std::vector<std::string> texts = *documents;
  texts.push_back("caf\xC3\xA9 \xE2\x98\x95  two  spaces\ttab\nline");
  texts.push_back("");
  size_t tokens = 0;
  for (const std::string& text : texts) {
    const std::vector<int32_t> expected = llama2c->Encode(text, /*add_bos=*/true);
    EXPECT_EQ(sentencepiece->Encode(text, /*add_bos=*/true), expected) << text;
    tokens += expected.size();
  }
  EXPECT_GT(tokens, 1000u);
}

TEST(SentencePieceModel, ReadsFieldsAndOffsets) {
  SpSpecs specs;
  specs.pad_id = -1;
  const std::vector<SpPiece> pieces = SmallVocabulary();
  const std::string bytes = SerializeSentencePieceModel(pieces, specs);
  absl::StatusOr<SentencePieceModel> model = ParseSentencePieceModel(bytes, kFile);
  ASSERT_OK(model);
  ASSERT_EQ(model->pieces.size(), pieces.size());
  EXPECT_EQ(model->pieces[0].piece, "<unk>");
  EXPECT_EQ(model->pieces[0].type, SentencePieceType::kUnknown);
  EXPECT_EQ(model->pieces[0].offset, 0u);
  EXPECT_EQ(model->pieces[4].piece, "<0x01>");
  EXPECT_EQ(model->pieces[4].type, SentencePieceType::kByte);
  EXPECT_EQ(model->pieces[260].piece, "a");
  EXPECT_EQ(model->pieces[260].score, -2.0f);
  EXPECT_EQ(model->pieces[260].type, SentencePieceType::kNormal);
  const SentencePieceTrainerSpec& trainer = model->trainer_spec;
  EXPECT_EQ(trainer.model_type.value, SentencePieceModelType::kBpe);
  EXPECT_TRUE(trainer.byte_fallback.value);
  EXPECT_EQ(trainer.pad_id.value, -1);  // Ten varint bytes, truncated to 32 bits.
  EXPECT_EQ(trainer.bos_id.value, 1);
  // The trainer spec is the first field after the pieces; model_type its
  // first field, after the spec's tag and one-byte length.
  EXPECT_GT(model->trainer_spec_offset, 0);
  EXPECT_EQ(trainer.model_type.offset, model->trainer_spec_offset + 2);
  EXPECT_EQ(model->normalizer_spec.name.value, "identity");
  EXPECT_FALSE(model->normalizer_spec.remove_extra_whitespaces.value);
}

TEST(SentencePieceModel, AbsentFieldsTakeProto2Defaults) {
  std::string bytes;
  std::string piece;
  AppendBytesField(piece, 1, "x");  // No score, no type.
  AppendBytesField(bytes, 1, piece);
  absl::StatusOr<SentencePieceModel> model = ParseSentencePieceModel(bytes, kFile);
  ASSERT_OK(model);
  EXPECT_EQ(model->pieces[0].score, 0.0f);
  EXPECT_EQ(model->pieces[0].type, SentencePieceType::kNormal);
  EXPECT_EQ(model->trainer_spec.model_type.value, SentencePieceModelType::kUnigram);
  EXPECT_EQ(model->trainer_spec.model_type.offset, -1);
  EXPECT_FALSE(model->trainer_spec.byte_fallback.value);
  EXPECT_EQ(model->trainer_spec.unk_id.value, 0);
  EXPECT_EQ(model->trainer_spec.bos_id.value, 1);
  EXPECT_EQ(model->trainer_spec.eos_id.value, 2);
  EXPECT_EQ(model->trainer_spec.pad_id.value, -1);
  EXPECT_EQ(model->normalizer_spec.name.value, "");
  EXPECT_TRUE(model->normalizer_spec.add_dummy_prefix.value);
  EXPECT_TRUE(model->normalizer_spec.remove_extra_whitespaces.value);
  EXPECT_TRUE(model->normalizer_spec.escape_whitespaces.value);
  EXPECT_EQ(model->trainer_spec_offset, -1);
}

// Unknown fields of every wire type, at every level, change nothing; a spec
// given twice is merged, its last value of a field winning.
TEST(SentencePieceModel, SkipsUnknownFieldsAndMergesRepeatedSpecs) {
  std::string unknown;
  AppendVarintField(unknown, 99, 12345);
  AppendTag(unknown, 98, 1);
  unknown.append(8, '\x7f');
  AppendBytesField(unknown, 97, "skipped");
  AppendFloatField(unknown, 96, 1.5f);
  AppendTag(unknown, 95, 3);  // A group holding a nested group and a field.
  AppendTag(unknown, 94, 3);
  AppendVarintField(unknown, 1, 7);
  AppendTag(unknown, 94, 4);
  AppendTag(unknown, 95, 4);

  std::string piece;
  AppendBytesField(piece, 1, "x");
  piece += unknown;
  AppendFloatField(piece, 2, -3.0f);
  std::string bytes = unknown;
  AppendBytesField(bytes, 1, piece);
  std::string trainer = unknown;
  AppendVarintField(trainer, 3, 1);  // UNIGRAM, overridden below.
  AppendBytesField(bytes, 2, trainer);
  bytes += unknown;
  std::string trainer_again;
  AppendVarintField(trainer_again, 3, 2);
  AppendVarintField(trainer_again, 35, 1);
  AppendBytesField(bytes, 2, trainer_again);

  absl::StatusOr<SentencePieceModel> model = ParseSentencePieceModel(bytes, kFile);
  ASSERT_OK(model);
  ASSERT_EQ(model->pieces.size(), 1u);
  EXPECT_EQ(model->pieces[0].piece, "x");
  EXPECT_EQ(model->pieces[0].score, -3.0f);
  EXPECT_EQ(model->trainer_spec.model_type.value, SentencePieceModelType::kBpe);
  EXPECT_TRUE(model->trainer_spec.byte_fallback.value);
}

TEST(SentencePieceModel, MalformedWireFormatNamesFieldAndOffset) {
  const std::string good = SerializeSentencePieceModel(SmallVocabulary());
  const std::string at_end = absl::StrCat("byte offset ", good.size());
  const auto invalid = absl::StatusCode::kInvalidArgument;

  EXPECT_STATUS(ParseSentencePieceModel(good + "\x80", kFile), invalid,
                absl::StrCat(at_end, ": truncated varint (tag)"));
  EXPECT_STATUS(ParseSentencePieceModel(good + "\x0a\x64"
                                               "abc",
                                        kFile),
                invalid,
                absl::StrCat("byte offset ", good.size() + 1,
                             ": pieces (field 1): length 100 runs past the end (3 bytes left)"));
  EXPECT_STATUS(ParseSentencePieceModel(good + "\x12", kFile), invalid,
                absl::StrCat("byte offset ", good.size() + 1,
                             ": truncated varint (trainer_spec (field 2) length)"));
  EXPECT_STATUS(ParseSentencePieceModel(good + std::string(10, '\xff') + "\x01", kFile), invalid,
                absl::StrCat(at_end, ": varint longer than 64 bits (tag)"));
  EXPECT_STATUS(ParseSentencePieceModel(good + "\x0f", kFile), invalid,
                absl::StrCat(at_end, ": wire type 7 does not exist"));
  EXPECT_STATUS(ParseSentencePieceModel(good + "\x02", kFile), invalid,
                absl::StrCat(at_end, ": field number 0"));
  EXPECT_STATUS(ParseSentencePieceModel(good + "\x2c", kFile), invalid,
                absl::StrCat(at_end, ": end of group 5 that was never started"));
  EXPECT_STATUS(ParseSentencePieceModel(good + "\x2b\x08\x01", kFile), invalid,
                absl::StrCat(at_end, ": group 5 has no end-group tag"));

  // Inside a nested message the offset is still the file's.
  std::string trainer;
  trainer.push_back('\x18');  // model_type, varint...
  trainer.push_back('\x80');  // ...cut short.
  std::string bad_trainer = good;
  AppendBytesField(bad_trainer, 2, trainer);
  EXPECT_STATUS(ParseSentencePieceModel(bad_trainer, kFile), invalid,
                absl::StrCat("tokenizer.model: trainer_spec at byte offset ", good.size() + 3,
                             ": truncated varint (model_type (field 3))"));
}

TEST(SentencePieceModel, WrongWireTypeOfAKnownField) {
  std::string piece;
  AppendBytesField(piece, 1, "x");
  const size_t score_at = piece.size();
  AppendVarintField(piece, 2, 3);  // A float written as a varint.
  std::string bytes;
  AppendBytesField(bytes, 1, piece);
  EXPECT_STATUS(ParseSentencePieceModel(bytes, kFile), absl::StatusCode::kInvalidArgument,
                absl::StrCat("tokenizer.model: pieces[0].score (field 2) at byte offset ",
                             2 + score_at, ": wire type 0 (varint), expected 5 (32-bit)"));
  std::string trainer_as_varint;
  AppendBytesField(trainer_as_varint, 1, piece.substr(0, score_at));
  const size_t trainer_at = trainer_as_varint.size();
  AppendVarintField(trainer_as_varint, 2, 1);
  EXPECT_STATUS(ParseSentencePieceModel(trainer_as_varint, kFile),
                absl::StatusCode::kInvalidArgument,
                absl::StrCat("tokenizer.model: trainer_spec (field 2) at byte offset ", trainer_at,
                             ": wire type 0 (varint), expected 2 (length-delimited)"));
}

TEST(SentencePieceModel, RefusesUndefinedEnumsEmptyPiecesAndNoPieces) {
  std::string piece;
  AppendBytesField(piece, 1, "x");
  AppendVarintField(piece, 3, 9);
  std::string bytes;
  AppendBytesField(bytes, 1, piece);
  EXPECT_STATUS(ParseSentencePieceModel(bytes, kFile), absl::StatusCode::kInvalidArgument,
                "pieces[0].type at byte offset 5: value 9 is not defined");
  std::string empty_piece;
  AppendBytesField(empty_piece, 1, "");
  EXPECT_STATUS(ParseSentencePieceModel(empty_piece, kFile), absl::StatusCode::kInvalidArgument,
                "pieces[0].piece at byte offset 0: empty or absent");
  std::string no_pieces;
  AppendBytesField(no_pieces, 2, "");
  EXPECT_STATUS(ParseSentencePieceModel(no_pieces, kFile), absl::StatusCode::kInvalidArgument,
                "tokenizer.model: pieces (field 1) at byte offset 0..2: none in the file");
  EXPECT_STATUS(ParseSentencePieceModel("", kFile), absl::StatusCode::kInvalidArgument,
                "pieces (field 1) at byte offset 0..0: none");
}

TEST(SentencePieceTokenizer, RefusesPieceCountOtherThanVocabSize) {
  const std::vector<SpPiece> pieces = SmallVocabulary();
  const std::string bytes = SerializeSentencePieceModel(pieces);
  absl::StatusOr<SentencePieceModel> model = ParseSentencePieceModel(bytes, kFile);
  ASSERT_OK(model);
  EXPECT_STATUS(ParseSentencePieceTokenizer(bytes, 512, kFile), absl::StatusCode::kInvalidArgument,
                absl::StrCat("tokenizer.model: pieces (field 1): ", pieces.size(),
                             " pieces (the last at byte offset ", model->pieces.back().offset,
                             "), but the model's vocab_size is 512"));
  EXPECT_OK(Tokenizer(bytes));
}

TEST(SentencePieceTokenizer, RefusesModelTypeOtherThanBpe) {
  SpSpecs unigram;
  unigram.model_type = 1;
  const std::string bytes = SerializeSentencePieceModel(SmallVocabulary(), unigram);
  absl::StatusOr<SentencePieceModel> model = ParseSentencePieceModel(bytes, kFile);
  ASSERT_OK(model);
  EXPECT_STATUS(Tokenizer(bytes), absl::StatusCode::kInvalidArgument,
                absl::StrCat("tokenizer.model: trainer_spec.model_type at byte offset ",
                             model->trainer_spec.model_type.offset,
                             ": UNIGRAM; catq encodes only BPE models"));
  // Without a trainer spec the proto2 default is UNIGRAM too.
  std::string no_spec;
  for (const SpPiece& piece : SmallVocabulary()) {
    AppendBytesField(no_spec, 1, testing::SerializeSpPiece(piece));
  }
  EXPECT_STATUS(Tokenizer(no_spec), absl::StatusCode::kInvalidArgument,
                "trainer_spec.model_type (absent, so the proto2 default): UNIGRAM");
}

TEST(SentencePieceTokenizer, RefusesWhatItCannotEncodeFaithfully) {
  const auto invalid = absl::StatusCode::kInvalidArgument;
  SpSpecs no_fallback;
  no_fallback.byte_fallback = false;
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(SmallVocabulary(), no_fallback)), invalid,
                "trainer_spec.byte_fallback at byte offset");
  SpSpecs nfkc;
  nfkc.normalizer_name = "nmt_nfkc";
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(SmallVocabulary(), nfkc)), invalid,
                "normalizer_spec.name at byte offset");
  SpSpecs collapse;
  collapse.remove_extra_whitespaces = true;
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(SmallVocabulary(), collapse)), invalid,
                "normalizer_spec.remove_extra_whitespaces at byte offset");
  SpSpecs no_prefix;
  no_prefix.add_dummy_prefix = false;
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(SmallVocabulary(), no_prefix)), invalid,
                "normalizer_spec.add_dummy_prefix at byte offset");

  std::vector<SpPiece> user_defined = SmallVocabulary();
  user_defined.back().type = testing::kSpUserDefined;
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(user_defined)), invalid,
                "pieces[263] (\"ab\") at byte offset");
  std::vector<SpPiece> unused = SmallVocabulary();
  unused.back().type = testing::kSpUnused;
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(unused)), invalid,
                "USER_DEFINED and UNUSED pieces are not supported");
  std::vector<SpPiece> not_byte = SmallVocabulary();
  not_byte[10].type = testing::kSpNormal;
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(not_byte)), invalid,
                "pieces[10] (\"<0x07>\")");
  std::vector<SpPiece> normal_unk = SmallVocabulary();
  normal_unk[0].type = testing::kSpNormal;
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(normal_unk)), invalid,
                "must have type UNKNOWN");
  std::vector<SpPiece> duplicate = SmallVocabulary();
  duplicate.back().piece = "a";
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(duplicate)), invalid,
                "the same text as pieces[260]");
  std::vector<SpPiece> no_space = SmallVocabulary();
  no_space[259].piece = "c";
  EXPECT_STATUS(Tokenizer(SerializeSentencePieceModel(no_space)), invalid, "the dummy prefix");
}

// SentencePiece keeps control, unknown and byte pieces out of its merge
// table: text spelling them is encoded from normal pieces only.
TEST(SentencePieceTokenizer, ControlAndBytePiecesNeverComeOutOfMerges) {
  std::vector<SpPiece> pieces = SpVocabulary({{"\xE2\x96\x81", -1.0f},
                                              {"<", -1.0f},
                                              {"s", -1.0f},
                                              {">", -1.0f},
                                              {"<s", -2.0f},
                                              {"<0x4", -2.0f},
                                              {"0", -1.0f},
                                              {"x", -1.0f},
                                              {"4", -1.0f},
                                              {"1", -1.0f},
                                              {"1>", -2.0f},
                                              {"<0", -3.0f},
                                              {"<0x", -3.0f}});
  absl::StatusOr<Llama2cTokenizer> tokenizer = ParseSentencePieceTokenizer(
      SerializeSentencePieceModel(pieces), static_cast<int64_t>(pieces.size()), kFile);
  ASSERT_OK(tokenizer);
  const std::vector<int32_t> control = tokenizer->Encode("<s>");
  EXPECT_THAT(control, Not(Contains(Llama2cTokenizer::kBos)));
  EXPECT_THAT(control, ElementsAre(259, tokenizer->Find("<s"), tokenizer->Find(">")));
  const std::vector<int32_t> byte = tokenizer->Encode("<0x41>");
  EXPECT_THAT(byte, Not(Contains(0x41 + Llama2cTokenizer::kByteFallbackOffset)));
  EXPECT_THAT(byte, ElementsAre(259, tokenizer->Find("<0x4"), tokenizer->Find("1>")));
}

TEST(SentencePieceTokenizer, NormalizesTextAsSentencePieceDoes) {
  absl::StatusOr<Llama2cTokenizer> tokenizer =
      Tokenizer(SerializeSentencePieceModel(SmallVocabulary()));
  ASSERT_OK(tokenizer);
  const int32_t space = tokenizer->Find(" ");
  const int32_t space_a = tokenizer->Find(" a");
  ASSERT_GE(space, 0);
  ASSERT_GE(space_a, 0);
  // Pieces hold ' ' where the file has U+2581, and U+2581 in text is a space.
  EXPECT_THAT(tokenizer->Encode("a a"), ElementsAre(space_a, space_a));
  EXPECT_THAT(tokenizer->Encode("a\xE2\x96\x81"
                                "a"),
              ElementsAre(space_a, space_a));
  // A byte that starts no valid character is U+FFFD (EF BF BD), by byte
  // fallback here since the vocabulary lacks it.
  const int32_t offset = Llama2cTokenizer::kByteFallbackOffset;
  EXPECT_THAT(tokenizer->Encode("a\xFF"),
              ElementsAre(space_a, 0xEF + offset, 0xBF + offset, 0xBD + offset));
  EXPECT_THAT(tokenizer->Encode("\xC0\x80"),  // Overlong NUL: two bytes, two U+FFFD.
              ElementsAre(space, 0xEF + offset, 0xBF + offset, 0xBD + offset, 0xEF + offset,
                          0xBF + offset, 0xBD + offset));
  EXPECT_THAT(tokenizer->Encode("\xF0\x9F\x98\x80"),  // A valid 4-byte character stays.
              ElementsAre(space, 0xF0 + offset, 0x9F + offset, 0x98 + offset, 0x80 + offset));
}

TEST(SentencePieceTokenizer, DecodesToTheText) {
  absl::StatusOr<Llama2cTokenizer> tokenizer =
      Tokenizer(SerializeSentencePieceModel(SmallVocabulary()));
  ASSERT_OK(tokenizer);
  const std::string text = "ab a b\xE2\x98\x95";
  absl::StatusOr<std::string> decoded = tokenizer->Decode(tokenizer->Encode(text, true));
  ASSERT_OK(decoded);
  EXPECT_EQ(*decoded, text);
}

}  // namespace
}  // namespace catq
