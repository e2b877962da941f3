#include "core/tensor/safetensors_writer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/io/env.h"
#include "core/tensor/safetensors_file.h"
#include "core/tensor/safetensors_format.h"
#include "core/tensor/safetensors_header.h"
#include "tests/tensor/safetensors_test_util.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::catq::testing::PatternBytes;
using ::catq::testing::TempDir;
using ::catq::testing::ValueBytes;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> ListDir(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  EXPECT_OK(names);
  return names.ok() ? *names : std::vector<std::string>();
}

// Write: a file at `path` with `specs`, the data appended in `chunk`-byte pieces.
absl::Status Write(const std::string& path, const std::vector<TensorSpec>& specs,
                   absl::string_view data, size_t chunk,
                   std::map<std::string, std::string> metadata = {}) {
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(Env::Default(), path, specs, std::move(metadata));
  if (!writer.ok()) return writer.status();
  while (!data.empty()) {
    const size_t n = std::min(chunk, data.size());
    absl::Status status = (*writer)->Append(data.substr(0, n));
    if (!status.ok()) return status;
    data.remove_prefix(n);
  }
  return (*writer)->Finish();
}

uint64_t TotalBytes(const std::vector<TensorSpec>& specs) {
  uint64_t total = 0;
  for (const TensorSpec& spec : specs) total += spec.NumBytes();
  return total;
}

TEST(SafetensorsWriter, EveryDTypeRoundTripsBitExact) {
  TempDir dir;
  const std::string path = dir.Join("all.safetensors");
  // By decreasing element size, so every tensor is aligned for As<T>().
  const std::vector<TensorSpec> specs = {
      {"f64", DType::kF64, {3, 2}}, {"i64", DType::kI64, {5}},   {"f32", DType::kF32, {2, 3, 4}},
      {"i32", DType::kI32, {7}},    {"f16", DType::kF16, {9}},   {"bf16", DType::kBF16, {3, 3}},
      {"i8", DType::kI8, {13}},     {"u8", DType::kU8, {1, 17}},
  };
  std::vector<std::string> data;
  std::string all;
  for (size_t i = 0; i < specs.size(); ++i) {
    data.push_back(PatternBytes(specs[i].NumBytes(), static_cast<uint32_t>(i)));
    all += data.back();
  }
  // Odd chunks cross every tensor boundary at a different point.
  ASSERT_OK(Write(path, specs, all, 7));

  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_OK(file);
  ASSERT_EQ(file->tensors().size(), specs.size());
  EXPECT_EQ(file->file_size(), file->data_offset() + all.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].name);
    absl::StatusOr<TensorView> view = file->Get(specs[i].name);
    ASSERT_OK(view);
    EXPECT_EQ(view->dtype(), specs[i].dtype);
    EXPECT_EQ(view->shape(), specs[i].shape);
    EXPECT_EQ(view->bytes(), data[i]);
  }
  // Typed zero-copy access sees the same values.
  absl::StatusOr<absl::Span<const int64_t>> i64 = file->Get("i64")->As<int64_t>();
  ASSERT_OK(i64);
  EXPECT_EQ(ValueBytes(std::vector<int64_t>(i64->begin(), i64->end())), data[1]);
  absl::StatusOr<absl::Span<const double>> f64 = file->Get("f64")->As<double>();
  ASSERT_OK(f64);
  EXPECT_EQ(f64->size(), 6u);
  absl::StatusOr<absl::Span<const int8_t>> i8 = file->Get("i8")->As<int8_t>();
  ASSERT_OK(i8);
  EXPECT_EQ((*i8)[0], static_cast<int8_t>(data[6][0]));
}

TEST(SafetensorsWriter, DataStartsEightAlignedForEveryHeaderLength) {
  TempDir dir;
  // Names of 1..16 bytes give 16 consecutive unpadded header lengths.
  for (int length = 1; length <= 16; ++length) {
    SCOPED_TRACE(length);
    const std::string path = dir.Join(absl::StrCat(length, ".safetensors"));
    const std::vector<TensorSpec> specs = {{std::string(length, 'w'), DType::kF32, {3}}};
    ASSERT_OK(Write(path, specs, PatternBytes(12, length), 12));
    absl::StatusOr<std::string> bytes = Env::Default()->ReadFile(path);
    ASSERT_OK(bytes);
    absl::StatusOr<ParsedSafetensors> parsed = ParseSafetensorsFile(*bytes);
    ASSERT_OK(parsed);
    EXPECT_EQ(parsed->data_offset % 8, 0u);
    // The padding is spaces after the JSON.
    const std::string header = bytes->substr(8, parsed->data_offset - 8);
    EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  }
}

TEST(SafetensorsWriter, MetadataRoundTrips) {
  TempDir dir;
  const std::string path = dir.Join("meta.safetensors");
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"empty", ""}, {"quote\"key", "line\nbreak"}, {"\xC3\xA9", "\xE2\x82\xAC"}};
  ASSERT_OK(Write(path, {{"w", DType::kU8, {2}}}, "ab", 1, metadata));
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_OK(file);
  EXPECT_EQ(file->metadata(), metadata);
}

TEST(SafetensorsWriter, MetadataThatIsNotUtf8FailsBeforeAnyFileExists) {
  TempDir dir;
  const std::string path = dir.Join("bad.safetensors");
  EXPECT_STATUS(
      SafetensorsWriter::Create(Env::Default(), path, {{"w", DType::kU8, {1}}}, {{"k", "\xFF"}}),
      absl::StatusCode::kInvalidArgument, "__metadata__ \"k\": key or value");
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(SafetensorsWriter, ZeroElementTensorsAndNoTensors) {
  TempDir dir;
  const std::string path = dir.Join("zero.safetensors");
  const std::vector<TensorSpec> specs = {{"empty", DType::kF32, {0, 4}},
                                         {"scalar", DType::kF64, {}},
                                         {"also_empty", DType::kBF16, {3, 0}},
                                         {"v", DType::kI32, {2}}};
  const std::string data = PatternBytes(16, 9);
  ASSERT_OK(Write(path, specs, data, 16));
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_OK(file);
  EXPECT_EQ(file->Get("empty")->NumElements(), 0);
  EXPECT_THAT(file->Get("empty")->bytes(), IsEmpty());
  EXPECT_EQ(file->Get("scalar")->NumElements(), 1);
  EXPECT_EQ(file->Get("scalar")->bytes(), data.substr(0, 8));
  EXPECT_THAT(file->Get("also_empty")->bytes(), IsEmpty());
  EXPECT_EQ(file->Get("v")->bytes(), data.substr(8));
  absl::StatusOr<std::vector<float>> values = file->Get("empty")->ToFloat();
  ASSERT_OK(values);
  EXPECT_THAT(*values, IsEmpty());

  const std::string none = dir.Join("none.safetensors");
  ASSERT_OK(Write(none, {}, "", 1));
  absl::StatusOr<SafetensorsFile> empty = SafetensorsFile::Open(none);
  ASSERT_OK(empty);
  EXPECT_THAT(empty->tensors(), IsEmpty());
  EXPECT_EQ(empty->file_size(), empty->data_offset());
}

TEST(SafetensorsWriter, FileAppearsOnlyAfterFinish) {
  TempDir dir;
  const std::string path = dir.Join("model.safetensors");
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(Env::Default(), path, {{"w", DType::kF32, {4}}});
  ASSERT_OK(writer);
  EXPECT_THAT(ListDir(dir.path()), ElementsAre("model.safetensors.tmp"));
  ASSERT_OK((*writer)->Append(PatternBytes(16, 1)));
  EXPECT_FALSE(Env::Default()->FileExists(path));
  EXPECT_EQ((*writer)->bytes_written(), 16u);
  ASSERT_OK((*writer)->Finish());
  EXPECT_THAT(ListDir(dir.path()), ElementsAre("model.safetensors"));
  EXPECT_OK(SafetensorsFile::Open(path));

  EXPECT_STATUS((*writer)->Finish(), absl::StatusCode::kFailedPrecondition, "Finish called twice");
  EXPECT_STATUS((*writer)->Append("x"), absl::StatusCode::kFailedPrecondition,
                "Append after Finish");
  writer->reset();  // Destroying a finished writer keeps the file.
  EXPECT_THAT(ListDir(dir.path()), ElementsAre("model.safetensors"));
}

TEST(SafetensorsWriter, AppendPastTheDeclaredSizeFailsNamingTheTensor) {
  TempDir dir;
  const std::string path = dir.Join("over.safetensors");
  const std::vector<TensorSpec> specs = {{"a", DType::kF32, {2}}, {"b", DType::kU8, {3}}};
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(Env::Default(), path, specs);
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Append(PatternBytes(9, 1)));
  const absl::Status status = (*writer)->Append("xyz");
  EXPECT_STATUS(status, absl::StatusCode::kInvalidArgument,
                "Append of 3 bytes exceeds the declared data by 1 bytes");
  EXPECT_STATUS(status, absl::StatusCode::kInvalidArgument, "past the end of tensor \"b\"");
  // The error sticks, and nothing is left behind.
  EXPECT_EQ((*writer)->Append(""), status);
  EXPECT_EQ((*writer)->Finish(), status);
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(SafetensorsWriter, AppendToAWriterWithNoDataFails) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(Env::Default(), dir.Join("e.safetensors"), {});
  ASSERT_OK(writer);
  EXPECT_STATUS((*writer)->Append("x"), absl::StatusCode::kInvalidArgument,
                "exceeds the declared data by 1 bytes of a file with no tensors");
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(SafetensorsWriter, FinishBeforeAllBytesFailsNamingTheShortTensor) {
  TempDir dir;
  const std::string path = dir.Join("short.safetensors");
  const std::vector<TensorSpec> specs = {
      {"a", DType::kF32, {2}}, {"b", DType::kF32, {2}}, {"c", DType::kU8, {1}}};
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(Env::Default(), path, specs);
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Append(PatternBytes(11, 1)));
  EXPECT_STATUS((*writer)->Finish(), absl::StatusCode::kFailedPrecondition,
                "tensor \"b\" is short: 3 of 8 bytes written (11 of 17 data bytes in all)");
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(SafetensorsWriter, DestroyedWithoutFinishLeavesNothing) {
  TempDir dir;
  {
    absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer = SafetensorsWriter::Create(
        Env::Default(), dir.Join("x.safetensors"), {{"w", DType::kU8, {4}}});
    ASSERT_OK(writer);
    ASSERT_OK((*writer)->Append("ab"));
  }
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(SafetensorsWriter, InvalidSpecsAreRejectedNamingTheTensor) {
  TempDir dir;
  const std::string path = dir.Join("x.safetensors");
  Env* env = Env::Default();
  EXPECT_STATUS(SafetensorsWriter::Create(env, path, {{"", DType::kU8, {1}}}),
                absl::StatusCode::kInvalidArgument, "tensor 0: name is empty");
  EXPECT_STATUS(
      SafetensorsWriter::Create(env, path, {{"a", DType::kU8, {1}}, {"a", DType::kU8, {1}}}),
      absl::StatusCode::kInvalidArgument, "duplicate tensor name \"a\"");
  EXPECT_STATUS(SafetensorsWriter::Create(env, path, {{"__metadata__", DType::kU8, {1}}}),
                absl::StatusCode::kInvalidArgument, "name \"__metadata__\" is reserved");
  EXPECT_STATUS(SafetensorsWriter::Create(env, path, {{"a\xFF", DType::kU8, {1}}}),
                absl::StatusCode::kInvalidArgument, "tensor 0: name is not valid UTF-8");
  EXPECT_STATUS(SafetensorsWriter::Create(env, path, {{"neg", DType::kU8, {2, -1}}}),
                absl::StatusCode::kInvalidArgument, "tensor \"neg\": shape [2, -1]");
  constexpr int64_t kBig = std::numeric_limits<int64_t>::max();
  EXPECT_STATUS(SafetensorsWriter::Create(env, path, {{"huge", DType::kF64, {kBig}}}),
                absl::StatusCode::kInvalidArgument, "tensor \"huge\"");
  EXPECT_STATUS(
      SafetensorsWriter::Create(
          env, path,
          {{"x", DType::kU8, {kBig}}, {"y", DType::kU8, {kBig}}, {"z", DType::kU8, {kBig}}}),
      absl::StatusCode::kInvalidArgument, "tensor \"z\": total data size overflows");
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(SerializeSafetensorsHeader, RejectsNamesThatWouldNotReadBack) {
  SafetensorsHeader header;
  header.tensors.push_back({"__metadata__", DType::kU8, {1}, 0, 1});
  EXPECT_STATUS(SerializeSafetensorsHeader(header), absl::StatusCode::kInvalidArgument,
                "tensor \"__metadata__\": name is a duplicate or reserved");
  header.tensors[0].name = "w";
  header.tensors.push_back({"w", DType::kU8, {1}, 1, 2});
  EXPECT_STATUS(SerializeSafetensorsHeader(header), absl::StatusCode::kInvalidArgument,
                "tensor \"w\": name is a duplicate or reserved");
  header.tensors[1].name = "\xC3";
  EXPECT_STATUS(SerializeSafetensorsHeader(header), absl::StatusCode::kInvalidArgument,
                "name is not valid UTF-8");
}

TEST(SerializeSafetensorsHeader, MetadataFirstThenTensorsInOrderPadded) {
  SafetensorsHeader header;
  header.metadata = {{"format", "pt"}};
  header.tensors.push_back({"b", DType::kU8, {1}, 0, 1});
  header.tensors.push_back({"a", DType::kF16, {}, 1, 3});
  absl::StatusOr<std::string> json = SerializeSafetensorsHeader(header);
  ASSERT_OK(json);
  EXPECT_EQ(json->size() % 8, 0u);
  EXPECT_EQ(absl::StripTrailingAsciiWhitespace(*json),
            R"({"__metadata__":{"format":"pt"},"b":{"dtype":"U8","shape":[1],)"
            R"("data_offsets":[0,1]},"a":{"dtype":"F16","shape":[],"data_offsets":[1,3]}})");
}

// Fails the Nth WritableFile::Append, or the rename.
class FaultyEnv : public EnvWrapper {
 public:
  explicit FaultyEnv(Env* target) : EnvWrapper(target) {}

  int fail_append_at = -1;  // 0-based index of the Append that fails.
  bool fail_rename = false;

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    absl::StatusOr<std::unique_ptr<WritableFile>> file = target()->NewWritableFile(path);
    if (!file.ok()) return file;
    return std::unique_ptr<WritableFile>(new FaultyFile(this, *std::move(file)));
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    if (fail_rename) return absl::InternalError(absl::StrCat("rename ", to, ": injected"));
    return target()->RenameFile(from, to);
  }

 private:
  class FaultyFile : public WritableFile {
   public:
    FaultyFile(FaultyEnv* env, std::unique_ptr<WritableFile> file)
        : env_(env), file_(std::move(file)) {}
    absl::Status Append(absl::string_view data) override {
      if (env_->appends_++ == env_->fail_append_at) {
        return absl::ResourceExhaustedError("append: injected full disk");
      }
      return file_->Append(data);
    }
    absl::Status Sync() override { return file_->Sync(); }
    absl::Status Close() override { return file_->Close(); }

   private:
    FaultyEnv* env_;
    std::unique_ptr<WritableFile> file_;
  };

  int appends_ = 0;
};

TEST(SafetensorsWriter, WriteErrorsRemoveTheTempFile) {
  TempDir dir;
  FaultyEnv env(Env::Default());
  env.fail_append_at = 0;  // The first real write (the buffer is 1 MiB).
  const std::vector<TensorSpec> specs = {{"w", DType::kU8, {3 << 20}}};
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(&env, dir.Join("w.safetensors"), specs);
  ASSERT_OK(writer);
  const std::string data = PatternBytes(TotalBytes(specs), 3);
  EXPECT_STATUS((*writer)->Append(data), absl::StatusCode::kResourceExhausted, "full disk");
  EXPECT_STATUS((*writer)->Finish(), absl::StatusCode::kResourceExhausted, "full disk");
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(SafetensorsWriter, RenameErrorLeavesNoFile) {
  TempDir dir;
  FaultyEnv env(Env::Default());
  env.fail_rename = true;
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(&env, dir.Join("w.safetensors"), {{"w", DType::kU8, {2}}});
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Append("ab"));
  EXPECT_STATUS((*writer)->Finish(), absl::StatusCode::kInternal, "injected");
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

}  // namespace
}  // namespace catq
