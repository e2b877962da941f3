// QuantizerClient's local pieces, no server needed: the upload manifest, the
// default upload id, the result-path check and how RPC errors read.
#include "client/quantizer_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "client/file_manifest.h"
#include "client/rpc_status.h"
#include "core/io/sha256.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kShaOfAbc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kShaOfEmpty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

void WriteFile(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::vector<std::string> Paths(const Manifest& manifest) {
  std::vector<std::string> paths;
  for (const ManifestFile& file : manifest) paths.push_back(file.entry.path());
  return paths;
}

v1::UploadHeader ModelHeader(const Manifest& manifest, const std::string& name) {
  v1::UploadHeader header;
  header.set_name(name);
  header.set_format(v1::MODEL_FORMAT_HF);
  for (const ManifestFile& file : manifest) *header.add_files() = file.entry;
  return header;
}

TEST(BuildDirectoryManifest, SortedRelativePathsWithSizesAndDigests) {
  testing::TempDir dir;
  WriteFile(dir.Join("model/tokenizer.bin"), "abc");
  WriteFile(dir.Join("model/config.json"), "{}");
  WriteFile(dir.Join("model/sub/b/empty.bin"), "");
  WriteFile(dir.Join("model/sub/a.safetensors"), std::string(5000, 'x'));
  WriteFile(dir.Join("model/.hidden"), "skipped");
  WriteFile(dir.Join("model/.git/objects/x"), "skipped");

  absl::StatusOr<Manifest> manifest = BuildDirectoryManifest(Env::Default(), dir.Join("model"));
  ASSERT_OK(manifest);
  EXPECT_THAT(Paths(*manifest),
              ElementsAre("config.json", "sub/a.safetensors", "sub/b/empty.bin", "tokenizer.bin"));
  EXPECT_EQ((*manifest)[1].entry.size(), 5000u);
  EXPECT_EQ((*manifest)[1].entry.sha256(), Sha256Hex(std::string(5000, 'x')));
  EXPECT_EQ((*manifest)[2].entry.size(), 0u);
  EXPECT_EQ((*manifest)[2].entry.sha256(), kShaOfEmpty);
  EXPECT_EQ((*manifest)[3].entry.size(), 3u);
  EXPECT_EQ((*manifest)[3].entry.sha256(), kShaOfAbc);
  EXPECT_EQ((*manifest)[3].local_path, dir.Join("model/tokenizer.bin"));
  EXPECT_EQ(TotalBytes(*manifest), 5005u);
}

TEST(BuildDirectoryManifest, RejectsEmptyMissingAndNonDirectories) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.Join("empty"));
  EXPECT_STATUS(BuildDirectoryManifest(Env::Default(), dir.Join("empty")),
                absl::StatusCode::kInvalidArgument, "holds no files");
  WriteFile(dir.Join("only_hidden/.git/HEAD"), "ref");
  EXPECT_STATUS(BuildDirectoryManifest(Env::Default(), dir.Join("only_hidden")),
                absl::StatusCode::kInvalidArgument, "holds no files");
  EXPECT_STATUS(BuildDirectoryManifest(Env::Default(), dir.Join("absent")),
                absl::StatusCode::kNotFound, "absent");
  WriteFile(dir.Join("file"), "abc");
  EXPECT_STATUS(BuildDirectoryManifest(Env::Default(), dir.Join("file")),
                absl::StatusCode::kInvalidArgument, "not a directory");
}

TEST(BuildFilesManifest, NamesFilesByBaseNameAndRejectsClashes) {
  testing::TempDir dir;
  WriteFile(dir.Join("ckpt/stories.bin"), "abc");
  WriteFile(dir.Join("tok/tok512.bin"), "");
  absl::StatusOr<Manifest> manifest = BuildFilesManifest(
      Env::Default(), {dir.Join("tok/tok512.bin"), dir.Join("ckpt/stories.bin")});
  ASSERT_OK(manifest);
  EXPECT_THAT(Paths(*manifest), ElementsAre("stories.bin", "tok512.bin"));
  EXPECT_EQ((*manifest)[0].entry.sha256(), kShaOfAbc);
  EXPECT_EQ((*manifest)[0].local_path, dir.Join("ckpt/stories.bin"));

  WriteFile(dir.Join("other/stories.bin"), "abd");
  EXPECT_STATUS(BuildFilesManifest(Env::Default(),
                                   {dir.Join("ckpt/stories.bin"), dir.Join("other/stories.bin")}),
                absl::StatusCode::kInvalidArgument, "also named 'stories.bin'");
  EXPECT_STATUS(BuildFilesManifest(Env::Default(), {dir.Join("absent.bin")}),
                absl::StatusCode::kNotFound, "absent.bin");
  EXPECT_STATUS(BuildFilesManifest(Env::Default(), {dir.Join("ckpt")}),
                absl::StatusCode::kInvalidArgument, "not a regular file");
  EXPECT_STATUS(BuildFilesManifest(Env::Default(), {}), absl::StatusCode::kInvalidArgument,
                "no files");
}

TEST(DefaultUploadId, StableForTheSameContentWhereverItLives) {
  testing::TempDir dir;
  for (const char* copy : {"one", "two"}) {
    WriteFile(dir.Join(std::string(copy) + "/config.json"), "{}");
    WriteFile(dir.Join(std::string(copy) + "/model.safetensors"), "abc");
  }
  absl::StatusOr<Manifest> one = BuildDirectoryManifest(Env::Default(), dir.Join("one"));
  absl::StatusOr<Manifest> two = BuildDirectoryManifest(Env::Default(), dir.Join("two"));
  ASSERT_OK(one);
  ASSERT_OK(two);
  const std::string id = DefaultUploadId(ModelHeader(*one, "llama"));
  EXPECT_EQ(id, DefaultUploadId(ModelHeader(*two, "llama")));
  EXPECT_THAT(id, ::testing::MatchesRegex("model-[0-9a-f]{40}"));

  // The id a user's earlier run derived must not change between releases.
  v1::UploadHeader fixed;
  fixed.set_name("m");
  fixed.set_format(v1::MODEL_FORMAT_HF);
  v1::FileEntry& file = *fixed.add_files();
  file.set_path("a");
  file.set_size(3);
  file.set_sha256(kShaOfAbc);
  EXPECT_EQ(DefaultUploadId(fixed), "model-8de96d998bd521fea8e9bb58ec67587806304e8e");
}

TEST(DefaultUploadId, ChangesWithContentNameFormatAndKind) {
  testing::TempDir dir;
  WriteFile(dir.Join("m/model.safetensors"), "abc");
  absl::StatusOr<Manifest> manifest = BuildDirectoryManifest(Env::Default(), dir.Join("m"));
  ASSERT_OK(manifest);
  const v1::UploadHeader header = ModelHeader(*manifest, "llama");
  const std::string id = DefaultUploadId(header);

  v1::UploadHeader changed = header;
  changed.mutable_files(0)->set_sha256(kShaOfEmpty);
  EXPECT_NE(DefaultUploadId(changed), id);
  changed = header;
  changed.set_name("other");
  EXPECT_NE(DefaultUploadId(changed), id);
  changed = header;
  changed.set_format(v1::MODEL_FORMAT_LLAMA2C);
  EXPECT_NE(DefaultUploadId(changed), id);
  changed = header;
  changed.set_upload_id("ignored");
  EXPECT_EQ(DefaultUploadId(changed), id);
  changed = header;
  changed.set_format(v1::MODEL_FORMAT_UNSPECIFIED);
  changed.set_calibration_kind(v1::CALIBRATION_KIND_TEXT);
  EXPECT_THAT(DefaultUploadId(changed), ::testing::MatchesRegex("calib-[0-9a-f]{40}"));
}

TEST(CheckRelativePath, AcceptsPlainRelativePaths) {
  EXPECT_OK(CheckRelativePath("model-00001-of-00002.safetensors"));
  EXPECT_OK(CheckRelativePath("sub/dir/tokenizer.bin"));
  EXPECT_OK(CheckRelativePath("..hidden_but_not_parent"));
}

TEST(CheckRelativePath, RefusesPathsThatCouldLeaveTheOutputDirectory) {
  EXPECT_STATUS(CheckRelativePath("/etc/passwd"), absl::StatusCode::kInvalidArgument,
                "'/etc/passwd': is absolute");
  for (const char* path : {"..", "../x", "a/../b", "a/..", "./a", "a/./b"}) {
    EXPECT_STATUS(CheckRelativePath(path), absl::StatusCode::kInvalidArgument, "'..'");
  }
  for (const char* path : {"a//b", "a/", ""}) {
    EXPECT_FALSE(CheckRelativePath(path).ok()) << path;
  }
  EXPECT_STATUS(CheckRelativePath("a\\..\\b"), absl::StatusCode::kInvalidArgument, "backslash");
  EXPECT_STATUS(CheckRelativePath(absl::string_view("a\0b", 3)), absl::StatusCode::kInvalidArgument,
                "NUL");
}

TEST(RpcStatus, KeepsTheCodeAndTheServersMessageAfterTheRpcName) {
  EXPECT_OK(RpcStatus("GetJob", grpc::Status::OK));
  const absl::Status status = RpcStatus(
      "SubmitJob",
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "recipe.weight_bits: 9 is outside [2, 8]"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "SubmitJob: INVALID_ARGUMENT: recipe.weight_bits: 9 is outside [2, 8]");
}

TEST(QuantizerClient, ConnectNeedsAServerAndAReadableCaFile) {
  EXPECT_STATUS(QuantizerClient::Connect(ClientOptions{}), absl::StatusCode::kInvalidArgument,
                "server");
  ClientOptions options;
  options.server = "localhost:1";
  options.tls_ca_file = "/nonexistent/ca.pem";
  EXPECT_STATUS(QuantizerClient::Connect(options), absl::StatusCode::kNotFound, "--tls-ca");
}

TEST(QuantizerClient, AnUnreachableServerIsUnavailableNamingTheRpc) {
  ClientOptions options;
  options.server = "127.0.0.1:1";  // Nothing listens on port 1.
  options.token = "secret-token";
  absl::StatusOr<std::unique_ptr<QuantizerClient>> client = QuantizerClient::Connect(options);
  ASSERT_OK(client);
  const absl::Status status = (*client)->GetJob("j-1").status();
  EXPECT_STATUS(status, absl::StatusCode::kUnavailable, "GetJob: UNAVAILABLE: ");
  EXPECT_THAT(std::string(status.message()), ::testing::Not(HasSubstr("secret-token")));

  testing::TempDir dir;
  WriteFile(dir.Join("m/config.json"), "{}");
  EXPECT_STATUS((*client)->UploadModel(dir.Join("m"), "m", v1::MODEL_FORMAT_HF),
                absl::StatusCode::kUnavailable, "GetUpload: UNAVAILABLE");
  EXPECT_STATUS((*client)->Fetch("j-1", dir.Join("out")), absl::StatusCode::kUnavailable,
                "GetJob: UNAVAILABLE");
  EXPECT_FALSE(std::filesystem::exists(dir.Join("out")));
}

}  // namespace
}  // namespace catq::client
