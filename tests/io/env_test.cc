#include "core/io/env.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/io/staged_directory.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

TEST(PosixEnv, WriteFileAtomicallyReplacesContentAndLeavesNoTemp) {
  testing::TempDir dir;
  Env* env = Env::Default();
  const std::string path = dir.Join("a.json");
  ASSERT_OK(WriteFileAtomically(env, path, "first"));
  ASSERT_OK(WriteFileAtomically(env, path, "second"));
  absl::StatusOr<std::string> content = env->ReadFile(path);
  ASSERT_OK(content);
  EXPECT_EQ(*content, "second");
  EXPECT_FALSE(env->FileExists(path + ".tmp"));
}

TEST(PosixEnv, MapFileSeesBytesAndMissingFileIsNotFound) {
  testing::TempDir dir;
  Env* env = Env::Default();
  ASSERT_OK(WriteFileAtomically(env, dir.Join("x"), "hello"));
  auto mapped = env->MapFile(dir.Join("x"));
  ASSERT_OK(mapped);
  EXPECT_EQ((*mapped)->bytes(), "hello");
  EXPECT_STATUS(env->MapFile(dir.Join("missing")), absl::StatusCode::kNotFound, "missing");
}

// This process's resident file-backed memory, from /proc/self/status.
int64_t ResidentFileKiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("RssFile:", 0) == 0) return std::stoll(line.substr(8));
  }
  return -1;
}

uint64_t SumBytes(absl::string_view bytes) {
  uint64_t sum = 0;
  for (unsigned char c : bytes) sum = sum * 31 + c;
  return sum;
}

TEST(PosixEnv, ReleaseDropsResidentPagesAndKeepsTheBytes) {
  testing::TempDir dir;
  Env* env = Env::Default();
  std::string data(size_t{32} << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 7919) >> 5);
  ASSERT_OK(WriteFileAtomically(env, dir.Join("big"), data));
  auto mapped = env->MapFile(dir.Join("big"));
  ASSERT_OK(mapped);
  const absl::string_view bytes = (*mapped)->bytes();
  const uint64_t expected = SumBytes(data);
  ASSERT_EQ(SumBytes(bytes), expected);  // every page touched
  const int64_t touched = ResidentFileKiB();
  (*mapped)->Release(bytes.substr(1000, bytes.size() - 2000));  // unaligned ends
  const int64_t released = ResidentFileKiB();
  EXPECT_GT(touched - released, 24 * 1024) << "touched " << touched << " KiB, after " << released;
  EXPECT_EQ(SumBytes(bytes), expected);  // faulted back in, unchanged
  EXPECT_GT(ResidentFileKiB() - released, 24 * 1024);
  (*mapped)->Release(absl::string_view());  // empty: nothing to do
  EXPECT_EQ(SumBytes(bytes), expected);
}

// A write that fails half way leaves the old file in place and no temp file.
class FailingAppendEnv : public EnvWrapper {
 public:
  using EnvWrapper::EnvWrapper;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    struct Full : WritableFile {
      absl::Status Append(absl::string_view) override {
        return absl::ResourceExhaustedError("write: No space left on device");
      }
      absl::Status Sync() override { return absl::OkStatus(); }
      absl::Status Close() override { return absl::OkStatus(); }
    };
    auto real =
        target()->NewWritableFile(path);  // Creates the temp file, as a real full disk would.
    if (!real.ok()) return real.status();
    return std::unique_ptr<WritableFile>(new Full());
  }
};

TEST(PosixEnv, FailedAtomicWriteKeepsOldFile) {
  testing::TempDir dir;
  const std::string path = dir.Join("config.json");
  ASSERT_OK(WriteFileAtomically(Env::Default(), path, "old"));
  FailingAppendEnv full(Env::Default());
  EXPECT_STATUS(WriteFileAtomically(&full, path, "new"), absl::StatusCode::kResourceExhausted,
                "No space");
  EXPECT_EQ(*Env::Default()->ReadFile(path), "old");
  EXPECT_FALSE(Env::Default()->FileExists(path + ".tmp"));
}

TEST(PosixEnv, ListDirIsSorted) {
  testing::TempDir dir;
  Env* env = Env::Default();
  for (const char* name : {"b", "a", "c"}) ASSERT_OK(WriteFileAtomically(env, dir.Join(name), ""));
  auto names = env->ListDir(dir.path());
  ASSERT_OK(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(PosixEnv, IsDirectoryDoesNotFollowSymbolicLinks) {
  testing::TempDir dir;
  Env* env = Env::Default();
  ASSERT_OK(env->CreateDirs(dir.Join("sub")));
  ASSERT_OK(WriteFileAtomically(env, dir.Join("file"), "x"));
  std::filesystem::create_directory_symlink(dir.Join("sub"), dir.Join("link"));
  EXPECT_TRUE(env->IsDirectory(dir.Join("sub")));
  EXPECT_FALSE(env->IsDirectory(dir.Join("file")));
  EXPECT_FALSE(env->IsDirectory(dir.Join("link")));
  EXPECT_FALSE(env->IsDirectory(dir.Join("absent")));
}

// An output with its gptq/ export: listed with relative paths in one sorted
// order, removed whole; a symbolic link inside is removed, its target kept.
TEST(StagedDirectory, ListsAndRemovesSubdirectories) {
  testing::TempDir dir;
  Env* env = Env::Default();
  const std::string out = dir.Join("out");
  ASSERT_OK(env->CreateDirs(out + "/gptq/deeper"));
  ASSERT_OK(env->CreateDirs(dir.Join("kept")));
  ASSERT_OK(WriteFileAtomically(env, dir.Join("kept/file"), "keep"));
  for (const char* name : {"config.json", "gptq.json", "gptq/config.json", "gptq/deeper/x"}) {
    ASSERT_OK(WriteFileAtomically(env, out + "/" + name, name));
  }
  std::filesystem::create_directory_symlink(dir.Join("kept"), out + "/gptq/link");
  auto files = ListFilesRecursively(env, out);
  ASSERT_OK(files);
  EXPECT_EQ(*files, (std::vector<std::string>{"config.json", "gptq.json", "gptq/config.json",
                                              "gptq/deeper/x", "gptq/link"}));
  ASSERT_OK(RemoveDirectoryTree(env, out));
  EXPECT_FALSE(env->FileExists(out));
  EXPECT_EQ(testing::ReadTestFile(dir.Join("kept/file")), "keep");
  EXPECT_OK(RemoveDirectoryTree(env, out));  // Absent: OK.
}

// A staged output whose publication replaces an old one holding a
// subdirectory, and an abandoned one with a subdirectory, leave nothing behind.
TEST(StagedDirectory, ReplacesAndDiscardsDirectoriesWithSubdirectories) {
  testing::TempDir dir;
  Env* env = Env::Default();
  const std::string out = dir.Join("out");
  ASSERT_OK(env->CreateDirs(out + "/gptq"));
  ASSERT_OK(WriteFileAtomically(env, out + "/gptq/old", "old"));
  {
    auto staged = StagedDirectory::Create(env, out, /*replace=*/true);
    ASSERT_OK(staged);
    ASSERT_OK(env->CreateDirs((*staged)->path() + "/gptq"));
    ASSERT_OK(WriteFileAtomically(env, (*staged)->path() + "/gptq/new", "new"));
    ASSERT_OK((*staged)->Publish());
  }
  auto files = ListFilesRecursively(env, out);
  ASSERT_OK(files);
  EXPECT_EQ(*files, (std::vector<std::string>{"gptq/new"}));
  {
    auto staged = StagedDirectory::Create(env, dir.Join("abandoned"), /*replace=*/false);
    ASSERT_OK(staged);
    ASSERT_OK(env->CreateDirs((*staged)->path() + "/gptq"));
    ASSERT_OK(WriteFileAtomically(env, (*staged)->path() + "/gptq/x", "x"));
  }
  EXPECT_FALSE(env->FileExists(dir.Join("abandoned.partial")));
  EXPECT_FALSE(env->FileExists(dir.Join("abandoned")));
}

}  // namespace
}  // namespace catq
