// Malformed safetensors files: each case is rejected with InvalidArgument and
// a message that names the offset, or the tensor and field, at fault.

#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/io/env.h"
#include "core/tensor/safetensors_file.h"
#include "core/tensor/safetensors_format.h"
#include "tests/tensor/safetensors_test_util.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::catq::testing::SafetensorsBytes;

// A file with `header` and `data_size` zero bytes of data.
std::string File(absl::string_view header, size_t data_size) {
  return SafetensorsBytes(header, std::string(data_size, '\0'));
}

// A file whose length field says `length`, followed by `rest`.
std::string Framed(uint64_t length, absl::string_view rest) {
  return absl::StrCat(EncodeSafetensorsLength(length), rest);
}

// One tensor entry: "name": {...}.
std::string Entry(absl::string_view name, absl::string_view dtype, absl::string_view shape,
                  absl::string_view offsets) {
  return absl::StrCat("\"", name, "\":{\"dtype\":\"", dtype, "\",\"shape\":", shape,
                      ",\"data_offsets\":", offsets, "}");
}

struct MalformedCase {
  const char* name;
  std::string bytes;
  absl::StatusCode code;
  std::string fragment;
};

// Failure messages show the case name, not the bytes of the struct.
void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

std::vector<MalformedCase> MalformedCases() {
  const std::string w = Entry("w", "F32", "[2]", "[0,8]");
  std::string deep_shape = "[";
  for (int i = 0; i < 65; ++i) absl::StrAppend(&deep_shape, i == 0 ? "1" : ",1");
  deep_shape += "]";
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  return {
      // Framing.
      {"EmptyFile", "", kInvalid, "file is 0 bytes, too short for the 8-byte header length"},
      {"TruncatedLengthPrefix", std::string(5, '\x10'), kInvalid,
       "file is 5 bytes, too short for the 8-byte header length"},
      {"HeaderLengthPastEof", Framed(100, "{}"), kInvalid,
       "header length 100 at offset 0 exceeds file size 10 (the header would end at byte 108)"},
      {"HeaderLengthOverLimit", Framed(100'000'001, "{}"), kInvalid,
       "header length 100000001 at offset 0 exceeds the limit of 100000000 bytes"},
      {"HeaderLengthMaxU64", Framed(UINT64_MAX, "{}"), kInvalid,
       "header length 18446744073709551615 at offset 0 exceeds the limit"},
      {"ZeroHeaderLength", Framed(0, ""), kInvalid, "header is not valid JSON"},
      // JSON and text.
      {"BadJson", File(R"({"w":{"dtype":"F32",)", 0), kInvalid, "header is not valid JSON"},
      {"InvalidUtf8", File("{\"w\xFF\":{}}", 0), kInvalid,
       "header is not valid UTF-8 at header byte 3"},
      {"Utf8Surrogate", File("{\"\xED\xA0\x80\":{}}", 0), kInvalid,
       "header is not valid UTF-8 at header byte 2"},
      {"EscapedLoneSurrogate", File(R"({"\ud800":{}})", 0), kInvalid, "header is not valid JSON"},
      {"TrailingGarbage", File(absl::StrCat("{", w, "}x"), 8), kInvalid,
       "header is not valid JSON"},
      {"TwoObjects", File("{}{}", 0), kInvalid, "header is not valid JSON"},
      // The JSON parser stops at a NUL as if the text ended there, so a NUL
      // would hide whatever follows it.
      {"TrailingNul", File(absl::StrCat("{", w, "}", std::string(1, '\0')), 8), kInvalid,
       "header has a NUL byte at header byte 54"},
      {"GarbageAfterNul", File(absl::StrCat("{}", std::string(1, '\0'), "{\"x\":1}"), 0), kInvalid,
       "header has a NUL byte at header byte 2"},
      {"NulInsideString", File(absl::StrCat("{\"a", std::string(1, '\0'), "\":1}"), 0), kInvalid,
       "header has a NUL byte at header byte 3"},
      {"TopLevelArray", File("[1,2]", 0), kInvalid, "header must be a JSON object, got an array"},
      {"TopLevelString", File(R"("w")", 0), kInvalid,
       "header must be a JSON object, got string \"w\""},
      {"TopLevelNull", File("null", 0), kInvalid, "header must be a JSON object, got null"},
      // Tensor entries.
      {"EntryNotObject", File(R"({"w":5})", 0), kInvalid,
       "tensor \"w\": entry must be an object, got 5"},
      {"EntryArray", File(R"({"w":[0,8]})", 0), kInvalid,
       "tensor \"w\": entry must be an object, got an array"},
      {"UnknownDType", File(absl::StrCat("{", Entry("w", "F8_E4M3", "[2]", "[0,2]"), "}"), 2),
       kInvalid, "tensor \"w\": unknown dtype \"F8_E4M3\""},
      {"LowercaseDType", File(absl::StrCat("{", Entry("w", "f32", "[2]", "[0,8]"), "}"), 8),
       kInvalid, "tensor \"w\": unknown dtype \"f32\""},
      {"DTypeNotString", File(R"({"w":{"dtype":4,"shape":[],"data_offsets":[0,4]}})", 4), kInvalid,
       "tensor \"w\": dtype must be a string, got 4"},
      {"MissingDType", File(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8), kInvalid,
       "tensor \"w\": missing field \"dtype\""},
      {"MissingShape", File(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8), kInvalid,
       "tensor \"w\": missing field \"shape\""},
      {"MissingDataOffsets", File(R"({"w":{"dtype":"F32","shape":[2]}})", 8), kInvalid,
       "tensor \"w\": missing field \"data_offsets\""},
      {"UnknownField",
       File(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"layout":"nchw"}})", 8),
       kInvalid, "tensor \"w\": unknown field \"layout\""},
      {"DuplicateField",
       File(R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8), kInvalid,
       "tensor \"w\": duplicate field \"dtype\""},
      // Shapes.
      {"NegativeShape", File(absl::StrCat("{", Entry("w", "F32", "[-2]", "[0,8]"), "}"), 8),
       kInvalid, "tensor \"w\": shape[0] must be a non-negative integer, got -2"},
      {"StringInShape", File(absl::StrCat("{", Entry("w", "F32", R"([1,"2"])", "[0,8]"), "}"), 8),
       kInvalid, "tensor \"w\": shape[1] must be a non-negative integer, got string \"2\""},
      {"FloatShape", File(absl::StrCat("{", Entry("w", "F32", "[2.0]", "[0,8]"), "}"), 8), kInvalid,
       "tensor \"w\": shape[0] must be a non-negative integer, got 2.0"},
      {"NestedShape", File(absl::StrCat("{", Entry("w", "F32", "[[2]]", "[0,8]"), "}"), 8),
       kInvalid, "tensor \"w\": shape[0] must be a non-negative integer, got an array"},
      {"ShapeNotArray", File(absl::StrCat("{", Entry("w", "F32", "2", "[0,8]"), "}"), 8), kInvalid,
       "tensor \"w\": shape must be an array, got 2"},
      {"ShapeDimPastInt64",
       File(absl::StrCat("{", Entry("w", "U8", "[9223372036854775808]", "[0,8]"), "}"), 8),
       kInvalid, "tensor \"w\": shape[0] = 9223372036854775808 exceeds int64"},
      {"ShapeDimPastUint64",
       File(absl::StrCat("{", Entry("w", "U8", "[18446744073709551616]", "[0,8]"), "}"), 8),
       kInvalid, "tensor \"w\": shape[0] must be a non-negative integer"},
      {"ShapeProductOverflows",
       File(absl::StrCat("{", Entry("w", "U8", "[4294967296,4294967296,0]", "[0,0]"), "}"), 0),
       kInvalid, "tensor \"w\": shape [4294967296, 4294967296, 0]: element count overflows int64"},
      {"ShapeBytesOverflow",
       File(absl::StrCat("{", Entry("w", "F64", "[9223372036854775807]", "[0,8]"), "}"), 8),
       kInvalid, "tensor \"w\": shape [9223372036854775807] of F64: byte count overflows"},
      {"RankOverLimit", File(absl::StrCat("{", Entry("w", "U8", deep_shape, "[0,1]"), "}"), 1),
       kInvalid, "tensor \"w\": shape has more than 64 dimensions"},
      {"ShapeSizeMismatch", File(absl::StrCat("{", Entry("w", "F32", "[3]", "[0,8]"), "}"), 8),
       kInvalid, "tensor \"w\": shape [3] of F32 needs 12 bytes, data_offsets span 8"},
      {"ShapeSizeMismatchDType", File(absl::StrCat("{", Entry("w", "F16", "[2]", "[0,8]"), "}"), 8),
       kInvalid, "tensor \"w\": shape [2] of F16 needs 4 bytes, data_offsets span 8"},
      // Data offsets.
      {"OffsetsOneEntry", File(absl::StrCat("{", Entry("w", "F32", "[2]", "[8]"), "}"), 8),
       kInvalid, "tensor \"w\": data_offsets must have 2 entries, got 1"},
      {"OffsetsEmpty", File(absl::StrCat("{", Entry("w", "F32", "[2]", "[]"), "}"), 8), kInvalid,
       "tensor \"w\": data_offsets must have 2 entries, got 0"},
      {"OffsetsThreeEntries", File(absl::StrCat("{", Entry("w", "F32", "[2]", "[0,8,8]"), "}"), 8),
       kInvalid, "tensor \"w\": data_offsets must have 2 entries, got more"},
      {"OffsetsNotArray", File(absl::StrCat("{", Entry("w", "F32", "[2]", R"("0-8")"), "}"), 8),
       kInvalid, "tensor \"w\": data_offsets must be an array, got string \"0-8\""},
      {"NegativeOffset", File(absl::StrCat("{", Entry("w", "F32", "[2]", "[-1,7]"), "}"), 8),
       kInvalid, "tensor \"w\": data_offsets[0] must be a non-negative integer, got -1"},
      {"FloatOffset", File(absl::StrCat("{", Entry("w", "F32", "[2]", "[0,8.0]"), "}"), 8),
       kInvalid, "tensor \"w\": data_offsets[1] must be a non-negative integer, got 8.0"},
      {"BeginAfterEnd", File(absl::StrCat("{", Entry("w", "F32", "[2]", "[8,0]"), "}"), 8),
       kInvalid, "tensor \"w\": data_offsets [8, 0] have begin > end"},
      {"OffsetsPastBuffer", File(absl::StrCat("{", Entry("w", "F32", "[4]", "[0,16]"), "}"), 8),
       kInvalid, "tensor \"w\": data_offsets [0, 16] end past the data buffer of 8 bytes"},
      {"OffsetsPastBufferHuge",
       File(absl::StrCat("{", Entry("w", "U8", "[8]", "[0,18446744073709551615]"), "}"), 8),
       kInvalid, "tensor \"w\": data_offsets [0, 18446744073709551615] end past the data buffer"},
      {"OverlappingOffsets",
       File(absl::StrCat("{", Entry("a", "F32", "[2]", "[0,8]"), ",",
                         Entry("b", "F32", "[2]", "[4,12]"), "}"),
            12),
       kInvalid, "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\" at [0, 8]"},
      {"SameOffsets",
       File(absl::StrCat("{", Entry("a", "F32", "[2]", "[0,8]"), ",",
                         Entry("b", "F32", "[2]", "[0,8]"), "}"),
            8),
       kInvalid, "tensor \"b\": data_offsets [0, 8] overlap tensor \"a\" at [0, 8]"},
      {"HoleBetweenTensors",
       File(absl::StrCat("{", Entry("a", "F32", "[2]", "[0,8]"), ",",
                         Entry("b", "F32", "[1]", "[12,16]"), "}"),
            16),
       kInvalid,
       "tensor \"b\": data_offsets [12, 16] leave a hole: bytes [8, 12) of the data buffer"},
      {"HoleAtStart", File(absl::StrCat("{", Entry("w", "F32", "[1]", "[4,8]"), "}"), 8), kInvalid,
       "tensor \"w\": data_offsets [4, 8] leave a hole: bytes [0, 4)"},
      {"BytesAfterLastTensor", File(absl::StrCat("{", w, "}"), 12), kInvalid,
       "data buffer has 4 bytes after the last tensor \"w\" ends at 8 that belong to no tensor"},
      {"DataWithNoTensors", File("{}", 3), kInvalid,
       "data buffer has 3 bytes after a header with no tensors"},
      {"DuplicateTensorName",
       File(absl::StrCat("{", Entry("w", "F32", "[1]", "[0,4]"), ",",
                         Entry("w", "F32", "[1]", "[4,8]"), "}"),
            8),
       kInvalid, "duplicate tensor name \"w\""},
      // __metadata__.
      {"MetadataNotObject", File(R"({"__metadata__":"pt"})", 0), kInvalid,
       "__metadata__ must be an object, got string \"pt\""},
      {"MetadataNonStringValue", File(R"({"__metadata__":{"format":"pt","step":1}})", 0), kInvalid,
       "__metadata__ \"step\": value must be a string, got 1"},
      {"MetadataNestedObject", File(R"({"__metadata__":{"x":{}}})", 0), kInvalid,
       "__metadata__ \"x\": value must be a string, got an object"},
      {"MetadataNullValue", File(R"({"__metadata__":{"x":null}})", 0), kInvalid,
       "__metadata__ \"x\": value must be a string, got null"},
      {"MetadataDuplicateKey", File(R"({"__metadata__":{"k":"a","k":"b"}})", 0), kInvalid,
       "__metadata__: duplicate key \"k\""},
      {"MetadataTwice", File(R"({"__metadata__":{},"__metadata__":{}})", 0), kInvalid,
       "duplicate key \"__metadata__\""},
      // Names are quoted and escaped in messages.
      {"EscapedNameInMessage", File(R"({"a\"b\n":7})", 0), kInvalid,
       R"(tensor "a\"b\n": entry must be an object, got 7)"},
  };
}

class MalformedTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedTest, ParseRejectsWithCodeAndMessage) {
  const MalformedCase& c = GetParam();
  EXPECT_STATUS(ParseSafetensorsFile(c.bytes), c.code, c.fragment);
}

INSTANTIATE_TEST_SUITE_P(Safetensors, MalformedTest, ::testing::ValuesIn(MalformedCases()),
                         [](const ::testing::TestParamInfo<MalformedCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(MalformedFile, OpenPrefixesThePath) {
  catq::testing::TempDir dir;
  const std::string path = dir.Join("bad.safetensors");
  const std::string bytes = File(absl::StrCat("{", Entry("w", "F32", "[3]", "[0,8]"), "}"), 8);
  ASSERT_OK(WriteFileAtomically(Env::Default(), path, bytes));
  EXPECT_STATUS(SafetensorsFile::Open(path), absl::StatusCode::kInvalidArgument,
                absl::StrCat(path, ": tensor \"w\": shape [3] of F32 needs 12 bytes"));
}

TEST(MalformedFile, OpenOfMissingFileIsNotFound) {
  catq::testing::TempDir dir;
  EXPECT_STATUS(SafetensorsFile::Open(dir.Join("absent.safetensors")), absl::StatusCode::kNotFound,
                "absent.safetensors");
}

TEST(MalformedFile, OpenOfEmptyFileNamesTheSize) {
  catq::testing::TempDir dir;
  const std::string path = dir.Join("empty.safetensors");
  ASSERT_OK(WriteFileAtomically(Env::Default(), path, ""));
  EXPECT_STATUS(SafetensorsFile::Open(path), absl::StatusCode::kInvalidArgument,
                absl::StrCat(path, ": file is 0 bytes"));
}

TEST(MalformedFile, HugeNameIsCutInTheMessage) {
  const std::string name(100'000, 'n');
  absl::StatusOr<ParsedSafetensors> parsed =
      ParseSafetensorsFile(File(absl::StrCat("{\"", name, "\":1}"), 0));
  ASSERT_FALSE(parsed.ok());
  EXPECT_LT(parsed.status().message().size(), 400u);
  EXPECT_STATUS(parsed, absl::StatusCode::kInvalidArgument, "...\": entry must be an object");
}

// Things the format allows, next to the cases above, so that the checks are
// not stricter than the format.
TEST(WellFormedEdgeCases, AreAccepted) {
  const std::vector<std::string> accepted = {
      File("{}", 0),
      File("  {}  \n\t", 0),  // JSON whitespace around the object.
      File(R"({"__metadata__":{}})", 0),
      File(R"({"__metadata__":{"format":"pt"}})", 0),
      // Out of order in the JSON; the parser sorts by offset.
      File(absl::StrCat("{", Entry("b", "F32", "[1]", "[4,8]"), ",",
                        Entry("a", "F32", "[1]", "[0,4]"), "}"),
           8),
      // Zero-element tensors, including two at the same offset.
      File(absl::StrCat("{", Entry("z", "F32", "[0,5]", "[0,0]"), ",",
                        Entry("y", "F16", "[3,0]", "[0,0]"), "}"),
           0),
      // A scalar, and "-0" as a dimension-free zero offset.
      File(R"({"s":{"dtype":"F64","shape":[],"data_offsets":[-0,8]}})", 8),
      // A non-ASCII, escaped name.
      File(absl::StrCat("{", Entry("\\u00e9\xE2\x82\xAC", "U8", "[1]", "[0,1]"), "}"), 1),
  };
  for (const std::string& bytes : accepted) {
    SCOPED_TRACE(absl::CEscape(bytes));
    EXPECT_OK(ParseSafetensorsFile(bytes));
  }
}

TEST(WellFormedEdgeCases, OutOfOrderEntriesComeBackSortedByOffset) {
  absl::StatusOr<ParsedSafetensors> parsed =
      ParseSafetensorsFile(File(absl::StrCat("{", Entry("b", "F32", "[1]", "[4,8]"), ",",
                                             Entry("a", "F32", "[1]", "[0,4]"), "}"),
                                8));
  ASSERT_OK(parsed);
  ASSERT_EQ(parsed->header.tensors.size(), 2u);
  EXPECT_EQ(parsed->header.tensors[0].name, "a");
  EXPECT_EQ(parsed->header.tensors[1].name, "b");
}

}  // namespace
}  // namespace catq
