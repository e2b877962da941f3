// File: tests/fuzz/fuzz_check.h
//
// What every catq fuzz target asserts besides "no crash": a rejection is
// InvalidArgument or DataLoss (the codes the parsers document for bad bytes)
// with a message, and a property violation traps with a line on stderr, which
// libFuzzer reports as a crash.
#ifndef CATQ_TESTS_FUZZ_FUZZ_CHECK_H_
#define CATQ_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <string>

#include "absl/status/status.h"

namespace catq::fuzzing {

[[noreturn]] inline void Violation(const char* fuzzer, const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", fuzzer, what.c_str());
  __builtin_trap();
}

// CheckRejection: `status` (not OK) is InvalidArgument or DataLoss with a
// message.
inline void CheckRejection(const char* fuzzer, const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument &&
      status.code() != absl::StatusCode::kDataLoss) {
    Violation(fuzzer, "rejection is not InvalidArgument or DataLoss: " + status.ToString());
  }
  if (status.message().empty()) Violation(fuzzer, "rejection without a message");
}

}  // namespace catq::fuzzing

#endif  // CATQ_TESTS_FUZZ_FUZZ_CHECK_H_
