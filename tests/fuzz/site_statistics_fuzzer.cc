// Fuzz target for precomputed statistics files (a calibration of kind
// statistics, `catq quantize --calib-stats`): the input is written to a file
// in a tmpfs and read with ReadSiteStatistics, the same call the server and
// the workers make. An accepted file gives sites with a dimension, tokens,
// a block size within the dimension, and a first Sx block that is finite with
// a non-negative diagonal and obeys Cauchy-Schwarz, as the reader promises
// to check. (The accessors symmetrize, so symmetry itself is not observable
// here; tests/cat covers the reader's refusal of a non-symmetric file.)

#include <unistd.h>

#include <cmath>
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
    auto block = stats.SumBlock(0);
    if (!block.ok()) Violation(kName, "an accepted site has no block 0");
    const Eigen::MatrixXd& sx = *block;
    if (!sx.allFinite() || sx.diagonal().minCoeff() < 0) {
      Violation(kName, absl::StrCat("site '", key,
                                    "': block 0 is not finite or has a negative "
                                    "diagonal entry"));
    }
    for (Eigen::Index i = 0; i < sx.rows(); ++i) {
      for (Eigen::Index j = 0; j < sx.cols(); ++j) {
        if (std::abs(sx(i, j)) > (1 + 1e-5) * std::sqrt(sx(i, i) * sx(j, j))) {
          Violation(kName,
                    absl::StrCat("site '", key, "': Sx[", i, ", ", j, "] breaks Cauchy-Schwarz"));
        }
      }
    }
  }
  return 0;
}
