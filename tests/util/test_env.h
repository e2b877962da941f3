// File: tests/util/test_env.h
//
// Where tests find things: a fresh temporary directory per test, and the
// project's shared material (../shared beside the checkout: the stories260K
// model and TinyStories text). Tests that need ../shared skip, saying so, when
// it is absent:
//
//   TEST(Import, Stories260K) {
//     CATQ_REQUIRE_SHARED();
//     std::string model = catq::testing::SharedPath("models/stories260K/stories260K.bin");
//     catq::testing::TempDir out;
//     ...
//   }
#ifndef CATQ_TESTS_UTIL_TEST_ENV_H_
#define CATQ_TESTS_UTIL_TEST_ENV_H_

#include <gtest/gtest.h>

#include <string>

namespace catq::testing {

// SharedDir: $CATQ_SHARED_DIR if set, else <source dir>/../shared. Empty when
// the directory does not exist.
std::string SharedDir();
// SharedPath: SharedDir() + "/" + relative.
std::string SharedPath(const std::string& relative);

// ReadTestFile: the bytes of the file at `path`; a test failure (and "")
// when it cannot be read.
std::string ReadTestFile(const std::string& path);

// A directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Join: path() + "/" + name.
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace catq::testing

#define CATQ_REQUIRE_SHARED()                                                     \
  do {                                                                            \
    if (::catq::testing::SharedDir().empty()) {                                   \
      GTEST_SKIP() << "../shared is absent (set CATQ_SHARED_DIR to point at it)"; \
    }                                                                             \
  } while (false)

#endif  // CATQ_TESTS_UTIL_TEST_ENV_H_
