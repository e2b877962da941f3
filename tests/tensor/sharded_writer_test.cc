#include "core/tensor/sharded_writer.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/io/env.h"
#include "core/tensor/safetensors_dir.h"
#include "core/tensor/safetensors_index.h"
#include "core/tensor/safetensors_names.h"
#include "tests/tensor/safetensors_test_util.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

using ::catq::testing::PatternBytes;
using ::catq::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> ListDir(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  EXPECT_OK(names);
  return names.ok() ? *names : std::vector<std::string>();
}

// Six F32 tensors of 16 bytes: "t0" .. "t5".
std::vector<TensorSpec> SixTensors() {
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 6; ++i) specs.push_back({absl::StrCat("t", i), DType::kF32, {2, 2}});
  return specs;
}

// The data of `specs`, tensor i filled from seed i.
std::vector<std::string> DataFor(const std::vector<TensorSpec>& specs) {
  std::vector<std::string> data;
  for (size_t i = 0; i < specs.size(); ++i) {
    data.push_back(PatternBytes(specs[i].NumBytes(), static_cast<uint32_t>(100 + i)));
  }
  return data;
}

// WriteModel: writes `specs` to `dir` with `options`, in 5-byte appends.
absl::Status WriteModel(const std::string& dir, const std::vector<TensorSpec>& specs,
                        ShardedSafetensorsWriter::Options options) {
  absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> writer =
      ShardedSafetensorsWriter::Create(Env::Default(), dir, specs, std::move(options));
  if (!writer.ok()) return writer.status();
  std::string all;
  for (const std::string& data : DataFor(specs)) all += data;
  for (size_t i = 0; i < all.size(); i += 5) {
    absl::Status status = (*writer)->Append(absl::string_view(all).substr(i, 5));
    if (!status.ok()) return status;
  }
  return (*writer)->Finish();
}

void ExpectModelReadsBack(const std::string& path, const std::vector<TensorSpec>& specs) {
  absl::StatusOr<SafetensorsDir> model = SafetensorsDir::Open(path);
  ASSERT_OK(model);
  const std::vector<std::string> data = DataFor(specs);
  EXPECT_EQ(model->TensorNames().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].name);
    absl::StatusOr<TensorView> view = model->Get(specs[i].name);
    ASSERT_OK(view);
    EXPECT_EQ(view->dtype(), specs[i].dtype);
    EXPECT_EQ(view->shape(), specs[i].shape);
    EXPECT_EQ(view->bytes(), data[i]);
  }
}

TEST(PlanShards, GreedyInOrderWithOversizedTensorsAlone) {
  std::vector<TensorSpec> specs = {{"a", DType::kU8, {10}},
                                   {"b", DType::kU8, {20}},
                                   {"c", DType::kU8, {50}},  // Larger than the limit.
                                   {"d", DType::kU8, {5}},
                                   {"e", DType::kU8, {35}}};
  using Plan = std::vector<std::vector<size_t>>;
  EXPECT_EQ(PlanShards(specs, 40), (Plan{{0, 1}, {2}, {3, 4}}));
  EXPECT_EQ(PlanShards(specs, 30), (Plan{{0, 1}, {2}, {3}, {4}}));
  EXPECT_EQ(PlanShards(specs, 1000), (Plan{{0, 1, 2, 3, 4}}));
  EXPECT_EQ(PlanShards({}, 10), Plan{});
  // Zero-byte tensors join the current shard.
  EXPECT_EQ(PlanShards({{"z", DType::kU8, {0}}, {"y", DType::kU8, {4}}}, 4), (Plan{{0, 1}}));
}

TEST(ShardedWriter, ShardsByMaxSizeWithIndex) {
  TempDir dir;
  const std::vector<TensorSpec> specs = SixTensors();
  ShardedSafetensorsWriter::Options options;
  options.max_shard_bytes = 40;  // Two 16-byte tensors per shard.
  options.metadata = {{"format", "pt"}};
  ASSERT_OK(WriteModel(dir.path(), specs, options));
  EXPECT_THAT(ListDir(dir.path()),
              ElementsAre("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                          "model-00003-of-00003.safetensors", "model.safetensors.index.json"));

  absl::StatusOr<std::string> text = Env::Default()->ReadFile(dir.Join(kSafetensorsIndexFileName));
  ASSERT_OK(text);
  absl::StatusOr<SafetensorsIndex> index = ParseSafetensorsIndex(*text);
  ASSERT_OK(index);
  EXPECT_EQ(index->total_size, 96u);
  const std::map<std::string, std::string> expected = {
      {"t0", "model-00001-of-00003.safetensors"}, {"t1", "model-00001-of-00003.safetensors"},
      {"t2", "model-00002-of-00003.safetensors"}, {"t3", "model-00002-of-00003.safetensors"},
      {"t4", "model-00003-of-00003.safetensors"}, {"t5", "model-00003-of-00003.safetensors"}};
  EXPECT_EQ(index->weight_map, expected);

  ExpectModelReadsBack(dir.path(), specs);
  ExpectModelReadsBack(dir.Join(kSafetensorsIndexFileName), specs);
  absl::StatusOr<SafetensorsDir> model = SafetensorsDir::Open(dir.path());
  ASSERT_OK(model);
  ASSERT_EQ(model->files().size(), 3u);
  for (const SafetensorsFile& file : model->files()) {
    EXPECT_EQ(file.metadata(), options.metadata);
    EXPECT_EQ(file.data_offset() % 8, 0u);
  }
  EXPECT_STATUS(model->Get("t6"), absl::StatusCode::kNotFound, "no tensor \"t6\"");
  EXPECT_STATUS(model->Info("t6"), absl::StatusCode::kNotFound, "no tensor \"t6\"");
  absl::StatusOr<const TensorInfo*> info = model->Info("t3");
  ASSERT_OK(info);
  EXPECT_EQ((*info)->data_begin, 16u);
}

TEST(ShardedWriter, SingleFileModeWritesNoIndex) {
  TempDir dir;
  const std::vector<TensorSpec> specs = SixTensors();
  ShardedSafetensorsWriter::Options options;
  options.single_file_name = kSafetensorsSingleFileName;
  ASSERT_OK(WriteModel(dir.path(), specs, options));
  EXPECT_THAT(ListDir(dir.path()), ElementsAre("model.safetensors"));
  ExpectModelReadsBack(dir.path(), specs);
  ExpectModelReadsBack(dir.Join(kSafetensorsSingleFileName), specs);
}

TEST(ShardedWriter, SingleFileNameIsIgnoredWhenTheModelNeedsShards) {
  TempDir dir;
  const std::vector<TensorSpec> specs = SixTensors();
  ShardedSafetensorsWriter::Options options;
  options.single_file_name = kSafetensorsSingleFileName;
  options.max_shard_bytes = 64;
  ASSERT_OK(WriteModel(dir.path(), specs, options));
  EXPECT_THAT(ListDir(dir.path()),
              ElementsAre("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                          "model.safetensors.index.json"));
  ExpectModelReadsBack(dir.path(), specs);
}

TEST(ShardedWriter, NoTensorsGivesOneEmptyShard) {
  TempDir dir;
  ASSERT_OK(WriteModel(dir.path(), {}, {}));
  EXPECT_THAT(ListDir(dir.path()),
              ElementsAre("model-00001-of-00001.safetensors", "model.safetensors.index.json"));
  absl::StatusOr<SafetensorsDir> model = SafetensorsDir::Open(dir.path());
  ASSERT_OK(model);
  EXPECT_THAT(model->TensorNames(), IsEmpty());
}

TEST(ShardedWriter, FinishWithDataMissingRemovesPublishedShards) {
  TempDir dir;
  ShardedSafetensorsWriter::Options options;
  options.max_shard_bytes = 40;
  absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> writer =
      ShardedSafetensorsWriter::Create(Env::Default(), dir.path(), SixTensors(), options);
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Append(PatternBytes(70, 1)));  // Two shards and 6 bytes of "t4".
  EXPECT_EQ(ListDir(dir.path()).size(), 3u);          // Two shards and a temp file.
  EXPECT_STATUS((*writer)->Finish(), absl::StatusCode::kFailedPrecondition,
                "tensor \"t4\" is short: 6 of 16 bytes written");
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(ShardedWriter, AppendPastTheEndFailsAndRemovesEverything) {
  TempDir dir;
  ShardedSafetensorsWriter::Options options;
  options.max_shard_bytes = 40;
  absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> writer =
      ShardedSafetensorsWriter::Create(Env::Default(), dir.path(), SixTensors(), options);
  ASSERT_OK(writer);
  ASSERT_OK((*writer)->Append(PatternBytes(90, 1)));
  const absl::Status status = (*writer)->Append(PatternBytes(10, 2));
  EXPECT_STATUS(status, absl::StatusCode::kInvalidArgument,
                "Append of 10 bytes exceeds the declared data by 4 bytes");
  EXPECT_EQ((*writer)->Finish(), status);
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(ShardedWriter, DestroyedWithoutFinishRemovesPublishedShards) {
  TempDir dir;
  {
    ShardedSafetensorsWriter::Options options;
    options.max_shard_bytes = 16;
    absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> writer =
        ShardedSafetensorsWriter::Create(Env::Default(), dir.path(), SixTensors(), options);
    ASSERT_OK(writer);
    ASSERT_OK((*writer)->Append(PatternBytes(50, 1)));
    EXPECT_EQ((*writer)->file_names().size(), 6u);
  }
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

TEST(ShardedWriter, BadOptionsAreRejected) {
  TempDir dir;
  ShardedSafetensorsWriter::Options options;
  options.max_shard_bytes = 0;
  EXPECT_STATUS(ShardedSafetensorsWriter::Create(Env::Default(), dir.path(), SixTensors(), options),
                absl::StatusCode::kInvalidArgument, "max_shard_bytes must be positive");
  options.max_shard_bytes = 100;
  options.single_file_name = "../escape.safetensors";
  EXPECT_STATUS(ShardedSafetensorsWriter::Create(Env::Default(), dir.path(), SixTensors(), options),
                absl::StatusCode::kInvalidArgument, "single_file_name: shard name");
  EXPECT_THAT(ListDir(dir.path()), IsEmpty());
}

// A three-shard model whose index the tests then rewrite.
class IndexedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ShardedSafetensorsWriter::Options options;
    options.max_shard_bytes = 40;
    ASSERT_OK(WriteModel(dir_.path(), SixTensors(), options));
    absl::StatusOr<std::string> text =
        Env::Default()->ReadFile(dir_.Join(kSafetensorsIndexFileName));
    ASSERT_OK(text);
    absl::StatusOr<SafetensorsIndex> index = ParseSafetensorsIndex(*text);
    ASSERT_OK(index);
    weight_map_ = index->weight_map;
  }

  void RewriteIndex(const std::map<std::string, std::string>& weight_map) {
    ASSERT_OK(WriteSafetensorsIndex(Env::Default(), dir_.path(), 96, weight_map));
  }

  void RewriteIndexText(absl::string_view text) {
    ASSERT_OK(WriteFileAtomically(Env::Default(), index_path(), text));
  }

  std::string index_path() const { return dir_.Join(kSafetensorsIndexFileName); }

  TempDir dir_;
  std::map<std::string, std::string> weight_map_;
};

TEST_F(IndexedModelTest, IndexNamingAMissingShardIsNotFound) {
  std::map<std::string, std::string> weight_map = weight_map_;
  weight_map["t5"] = "model-00009-of-00009.safetensors";
  RewriteIndex(weight_map);
  EXPECT_STATUS(SafetensorsDir::Open(dir_.path()), absl::StatusCode::kNotFound,
                "model-00009-of-00009.safetensors");
}

TEST_F(IndexedModelTest, TensorNotInItsShardIsAnError) {
  std::map<std::string, std::string> weight_map = weight_map_;
  weight_map["t0"] = "model-00002-of-00003.safetensors";
  RewriteIndex(weight_map);
  EXPECT_STATUS(SafetensorsDir::Open(dir_.path()), absl::StatusCode::kInvalidArgument,
                absl::StrCat(index_path(), ": weight_map puts tensor \"t0\" in ",
                             "\"model-00002-of-00003.safetensors\", which does not hold it"));
}

TEST_F(IndexedModelTest, TensorUnknownToAllShardsIsAnError) {
  std::map<std::string, std::string> weight_map = weight_map_;
  weight_map["ghost"] = "model-00001-of-00003.safetensors";
  RewriteIndex(weight_map);
  EXPECT_STATUS(SafetensorsDir::Open(dir_.path()), absl::StatusCode::kInvalidArgument,
                "weight_map puts tensor \"ghost\" in \"model-00001-of-00003.safetensors\"");
}

TEST_F(IndexedModelTest, ShardTensorMissingFromTheIndexIsAnError) {
  std::map<std::string, std::string> weight_map = weight_map_;
  weight_map.erase("t3");
  RewriteIndex(weight_map);
  EXPECT_STATUS(SafetensorsDir::Open(dir_.path()), absl::StatusCode::kInvalidArgument,
                "shard \"model-00002-of-00003.safetensors\" holds tensor \"t3\", which the "
                "weight_map does not list");
}

TEST_F(IndexedModelTest, TensorInTwoShardsIsAnError) {
  // A fourth shard that holds "t0" again, and "extra", which the index puts there.
  ASSERT_OK(
      WriteModel(dir_.Join("sub"), {{"t0", DType::kF32, {2, 2}}, {"extra", DType::kU8, {1}}}, {}));
  ASSERT_OK(Env::Default()->RenameFile(dir_.Join("sub/model-00001-of-00001.safetensors"),
                                       dir_.Join("other.safetensors")));
  std::map<std::string, std::string> weight_map = weight_map_;
  weight_map["extra"] = "other.safetensors";
  RewriteIndex(weight_map);
  EXPECT_STATUS(SafetensorsDir::Open(dir_.path()), absl::StatusCode::kInvalidArgument,
                "tensor \"t0\" is in two shards, \"model-00001-of-00003.safetensors\" and "
                "\"other.safetensors\"");
}

TEST_F(IndexedModelTest, ShardNameLeavingTheDirectoryIsRejected) {
  RewriteIndexText(R"({"weight_map": {"t0": "../model-00001-of-00003.safetensors"}})");
  EXPECT_STATUS(SafetensorsDir::Open(dir_.path()), absl::StatusCode::kInvalidArgument,
                "weight_map \"t0\": shard name \"../model-00001-of-00003.safetensors\" is not a "
                "plain file name");
}

TEST_F(IndexedModelTest, MalformedIndexIsRejectedNamingTheIndex) {
  const struct {
    std::string text;
    const char* fragment;
  } kCases[] = {
      {"", "index: not valid JSON"},
      {"[]", "index: must be a JSON object"},
      {R"({"metadata": {}})", "\"weight_map\" must be present and an object"},
      {R"({"weight_map": {"t0": 1}})", "weight_map \"t0\": shard must be a string"},
      {R"({"weight_map": {}, "metadata": {"total_size": -1}})",
       "metadata.total_size must be a non-negative integer"},
      {R"({"weight_map": {}, "metadata": 3})", "\"metadata\" must be an object"},
      {R"({"weight_map": {"a": "x", "a": "y"}})", "duplicate key \"a\""},
      // The JSON parser would stop at the NUL and miss the rest.
      {std::string("{\"weight_map\": {}}\0{}", 21), "index: not valid JSON: NUL byte at byte 18"},
      {"{\"weight_map\": {\"\xFF\": \"x\"}}", "not valid UTF-8 at byte 17"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.text);
    RewriteIndexText(c.text);
    absl::StatusOr<SafetensorsDir> model = SafetensorsDir::Open(dir_.path());
    EXPECT_STATUS(model, absl::StatusCode::kInvalidArgument, c.fragment);
    EXPECT_STATUS(model, absl::StatusCode::kInvalidArgument, index_path());
  }
}

TEST(SafetensorsDir, DirectoryWithNoModelIsNotFound) {
  TempDir dir;
  EXPECT_STATUS(SafetensorsDir::Open(dir.path()), absl::StatusCode::kNotFound,
                "no model.safetensors.index.json or model.safetensors");
}

}  // namespace
}  // namespace catq
