// Fuzz target for precomputed statistics files (a calibration of kind
// statistics, `catq quantize --calib-stats`): the input is written to a file
// in a tmpfs and read with ReadSiteStatistics, the same call the server and
// the workers make. An accepted file gives sites with a dimension, tokens,
// a block size dividing into the dimension's blocks, and symmetric second
// moments.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/cat/site_statistics.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

constexpr char kName[] = "site_statistics_fuzzer";

// One file per process, in memory when /dev/shm exists.
const std::string& InputPath() {
  static const std::string* path = new std::string(absl::StrCat(
      access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", "/catq_stats_fuzz_", getpid()));
  return *path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using catq::fuzzing::CheckRejection;
  using catq::fuzzing::Violation;
  std::FILE* file = std::fopen(InputPath().c_str(), "wb");
  if (file == nullptr) Violation(kName, "cannot write " + InputPath());
  if (size > 0 && std::fwrite(data, 1, size, file) != size) Violation(kName, "short write");
  std::fclose(file);
  auto sites = catq::ReadSiteStatistics(InputPath());
  if (!sites.ok()) {
    CheckRejection(kName, sites.status());
    return 0;
  }
  for (const auto& [key, stats] : *sites) {
    if (key.empty() || stats.dim() <= 0 || stats.tokens() <= 0 || stats.block_size() <= 0 ||
        stats.block_size() > stats.dim()) {
      Violation(kName, absl::StrCat("accepted site '", key, "' dim ", stats.dim(), " tokens ",
                                    stats.tokens(), " block ", stats.block_size()));
    }
    auto block = stats.SecondMomentBlock(0);
    if (!block.ok()) Violation(kName, "an accepted site has no block 0");
    if (!block->isApprox(block->transpose()) && !block->isZero()) {
      Violation(kName, absl::StrCat("site '", key, "': block 0 is not symmetric"));
    }
  }
  return 0;
}
