#include "tests/util/test_env.h"

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>

#include "core/io/env.h"

namespace catq::testing {

std::string SharedDir() {
  const char* from_env = std::getenv("CATQ_SHARED_DIR");
  std::filesystem::path dir = from_env != nullptr
                                  ? std::filesystem::path(from_env)
                                  : std::filesystem::path(CATQ_SOURCE_DIR).parent_path() / "shared";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return "";
  return std::filesystem::weakly_canonical(dir, ec).string();
}

std::string SharedPath(const std::string& relative) { return SharedDir() + "/" + relative; }

std::string ReadTestFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = Env::Default()->ReadFile(path);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.value_or("");
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/catq_test_XXXXXX";
  char* made = ::mkdtemp(pattern.data());
  if (made == nullptr) std::abort();  // Tests cannot run without scratch space.
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace catq::testing
