#include "core/io/env.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace catq
