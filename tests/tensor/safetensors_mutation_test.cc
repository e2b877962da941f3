// Deterministic mutation test of ParseSafetensorsFile: a valid file with
// several tensors and metadata, mutated thousands of times with a fixed seed
// (bit flips, byte changes, insertions, deletions, truncations, numbers
// swapped for edge values, length fields rewritten). Each result must be
// either an InvalidArgument with a message, or a header that satisfies
// CheckParsedInvariants. The fuzzer (tests/fuzz) explores the same property
// without a bound.

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/tensor/safetensors_format.h"
#include "core/tensor/safetensors_header.h"
#include "tests/tensor/safetensors_invariants.h"
#include "tests/tensor/safetensors_test_util.h"
#include "tests/util/status_matchers.h"

namespace catq {
namespace {

using ::catq::testing::CheckParsedInvariants;
using ::catq::testing::PatternBytes;
using ::catq::testing::SafetensorsBytes;

constexpr uint32_t kSeed = 0x5AFE7E45;
constexpr int kIterations = 20000;

// The header and data of a valid file: several dtypes, a scalar, an empty
// tensor, metadata.
struct Seed {
  std::string header;
  std::string data;
};

Seed MakeSeed() {
  SafetensorsHeader header;
  header.metadata = {{"format", "pt"}, {"note", "caf\xC3\xA9"}};
  const struct {
    const char* name;
    DType dtype;
    std::vector<int64_t> shape;
  } kTensors[] = {{"model.embed.weight", DType::kF32, {4, 3}},
                  {"model.norm", DType::kBF16, {5}},
                  {"h", DType::kF16, {2, 2}},
                  {"ids", DType::kI64, {2}},
                  {"step", DType::kI32, {}},
                  {"empty", DType::kF64, {0, 7}},
                  {"q", DType::kI8, {3}},
                  {"mask", DType::kU8, {1, 1, 5}}};
  uint64_t offset = 0;
  for (const auto& t : kTensors) {
    TensorInfo info;
    info.name = t.name;
    info.dtype = t.dtype;
    info.shape = t.shape;
    info.data_begin = offset;
    offset += static_cast<uint64_t>(info.NumElements()) * DTypeSize(t.dtype);
    info.data_end = offset;
    header.tensors.push_back(info);
  }
  absl::StatusOr<std::string> json = SerializeSafetensorsHeader(header);
  EXPECT_OK(json);
  return {json.ok() ? *json : "", PatternBytes(offset, 7)};
}

class Mutator {
 public:
  explicit Mutator(uint32_t seed) : rng_(seed) {}

  size_t Below(size_t n) {
    return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  }
  bool OneIn(size_t n) { return Below(n) == 0; }

  // MutateText: one random edit of `text`.
  void MutateText(std::string& text) {
    static constexpr char kInteresting[] = "{}[]\",:0123456789-.eE \\u_xF";
    const size_t pos = Below(text.size() + 1);
    switch (Below(8)) {
      case 0:  // Flip one bit.
        if (pos < text.size()) text[pos] = static_cast<char>(text[pos] ^ (1 << Below(8)));
        break;
      case 1:  // Replace a byte with a JSON-significant one.
        if (pos < text.size()) text[pos] = kInteresting[Below(sizeof(kInteresting) - 1)];
        break;
      case 2:  // Replace a byte with any byte.
        if (pos < text.size()) text[pos] = static_cast<char>(Below(256));
        break;
      case 3:  // Insert a few bytes.
        text.insert(pos, std::string(1 + Below(3), kInteresting[Below(sizeof(kInteresting) - 1)]));
        break;
      case 4:  // Delete a range.
        if (pos < text.size()) text.erase(pos, 1 + Below(8));
        break;
      case 5: {  // Copy a chunk elsewhere (duplicates keys, entries, brackets).
        if (text.empty()) break;
        const size_t from = Below(text.size());
        const std::string chunk = text.substr(from, 1 + Below(40));
        text.insert(Below(text.size() + 1), chunk);
        break;
      }
      case 6:  // Swap a number for an edge value.
        ReplaceNumber(text);
        break;
      case 7:  // Truncate.
        text.resize(pos);
        break;
    }
  }

  // MutateFile: one random edit of the framed file, length field included.
  void MutateFile(std::string& file) {
    switch (Below(4)) {
      case 0:  // Rewrite the length field.
        if (file.size() >= 8) {
          const uint64_t candidates[] = {0,
                                         1,
                                         file.size() - 8,
                                         file.size() - 7,
                                         file.size(),
                                         kMaxSafetensorsHeaderSize,
                                         kMaxSafetensorsHeaderSize + 1,
                                         UINT64_MAX,
                                         UINT64_MAX - 7,
                                         static_cast<uint64_t>(rng_()) << 32 | rng_()};
          file.replace(0, 8, EncodeSafetensorsLength(candidates[Below(std::size(candidates))]));
        }
        break;
      case 1:  // Flip a bit of the length field.
        if (file.size() >= 8) {
          const size_t pos = Below(8);
          file[pos] = static_cast<char>(file[pos] ^ (1 << Below(8)));
        }
        break;
      case 2:  // Truncate anywhere, the length field included.
        file.resize(Below(file.size() + 1));
        break;
      case 3:  // Append bytes to the data.
        file.append(1 + Below(16), static_cast<char>(Below(256)));
        break;
    }
  }

 private:
  void ReplaceNumber(std::string& text) {
    std::vector<size_t> starts;
    for (size_t i = 0; i < text.size(); ++i) {
      const bool digit = std::isdigit(static_cast<unsigned char>(text[i])) != 0;
      if (digit && (i == 0 || !std::isdigit(static_cast<unsigned char>(text[i - 1])))) {
        starts.push_back(i);
      }
    }
    if (starts.empty()) return;
    const size_t start = starts[Below(starts.size())];
    size_t end = start;
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
    const uint64_t old = std::strtoull(text.substr(start, end - start).c_str(), nullptr, 10);
    const std::string candidates[] = {"0",
                                      "1",
                                      absl::StrCat(old + 1),
                                      absl::StrCat(old - 1),  // "18446744073709551615" for 0.
                                      absl::StrCat(old * 2),
                                      "4294967296",
                                      "9223372036854775807",
                                      "9223372036854775808",
                                      "18446744073709551615",
                                      "18446744073709551616",
                                      "1e3",
                                      "-1",
                                      "1.5"};
    text.replace(start, end - start, candidates[Below(std::size(candidates))]);
  }

  std::mt19937 rng_;
};

TEST(SafetensorsMutation, NeverCrashesAndAcceptsOnlyConsistentHeaders) {
  const Seed seed = MakeSeed();
  ASSERT_FALSE(seed.header.empty());
  {
    const std::string file = SafetensorsBytes(seed.header, seed.data);
    absl::StatusOr<ParsedSafetensors> parsed = ParseSafetensorsFile(file);
    ASSERT_OK(parsed);
    ASSERT_EQ(CheckParsedInvariants(file, *parsed), "");
  }

  Mutator mutator(kSeed);
  int accepted = 0;
  int rejected = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::string header = seed.header;
    std::string data = seed.data;
    const size_t edits = mutator.OneIn(2) ? 1 : 2 + mutator.Below(3);
    for (size_t e = 0; e < edits; ++e) mutator.MutateText(header);
    if (mutator.OneIn(4)) data.resize(mutator.Below(data.size() + 1));
    // Mostly a correct length, so that the header parser sees the edits.
    std::string file = SafetensorsBytes(header, data);
    if (mutator.OneIn(5)) mutator.MutateFile(file);

    absl::StatusOr<ParsedSafetensors> parsed = ParseSafetensorsFile(file);
    if (parsed.ok()) {
      ++accepted;
      ASSERT_EQ(CheckParsedInvariants(file, *parsed), "")
          << "iteration " << i << ": " << absl::CEscape(file.substr(0, 2000));
    } else {
      ++rejected;
      ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
          << "iteration " << i << ": " << parsed.status();
      ASSERT_FALSE(parsed.status().message().empty()) << "iteration " << i;
    }
  }
  RecordProperty("accepted", accepted);
  RecordProperty("rejected", rejected);
  // The mix is meant to exercise both sides; if either count drops to zero the
  // mutations have stopped saying anything.
  EXPECT_GT(accepted, kIterations / 100) << accepted << " accepted, " << rejected << " rejected";
  EXPECT_GT(rejected, kIterations / 2) << accepted << " accepted, " << rejected << " rejected";
}

}  // namespace
}  // namespace catq
