#include "tests/util/output_comparison.h"

#include <gtest/gtest.h>

#include <vector>

#include "absl/strings/match.h"
#include "core/io/env.h"
#include "tests/util/test_env.h"

namespace catq::testing {
namespace {

std::vector<std::string> Shards(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  EXPECT_TRUE(names.ok()) << names.status();
  std::vector<std::string> shards;
  for (const std::string& name : names.value_or(std::vector<std::string>{})) {
    if (absl::EndsWith(name, ".safetensors")) shards.push_back(name);
  }
  return shards;
}

}  // namespace

void ExpectSameShardsAndConfig(const std::string& expected_dir, const std::string& actual_dir) {
  std::vector<std::string> names = Shards(expected_dir);
  ASSERT_FALSE(names.empty()) << expected_dir << " holds no shard";
  EXPECT_EQ(Shards(actual_dir), names);
  names.push_back("config.json");
  for (const std::string& name : names) {
    EXPECT_TRUE(ReadTestFile(expected_dir + "/" + name) == ReadTestFile(actual_dir + "/" + name))
        << name << " differs between " << expected_dir << " and " << actual_dir;
  }
}

Recipe CatW4A4Recipe() {
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = 16;
  recipe.activation_bits = 4;
  return recipe;
}

}  // namespace catq::testing
