// DiskReserve: the file holds its full size (allocated, not sparse) until
// released, and comes back on Ensure.
#include "server/disk_reserve.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/util/test_env.h"

namespace catq::server {
namespace {

TEST(DiskReserve, EnsureAllocatesReleaseFreesAndEnsureRestores) {
  testing::TempDir dir;
  const std::string path = dir.Join("catq.db.reserve");
  DiskReserve reserve(path, 256 << 10);
  EXPECT_FALSE(reserve.Release());  // nothing to free yet
  ASSERT_TRUE(reserve.Ensure());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 256 << 10);
  EXPECT_GE(static_cast<int64_t>(st.st_blocks) * 512, 256 << 10);  // allocated, not sparse
  EXPECT_TRUE(reserve.Ensure());                                   // already there
  EXPECT_TRUE(reserve.Release());
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(reserve.Ensure());
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
}

}  // namespace
}  // namespace catq::server
