// File: tests/client/catq_runner.h
//
// Runs the catq binary (CATQ_BINARY, set by tests/client/CMakeLists.txt) as a
// subprocess for the end-to-end CLI tests.
#ifndef CATQ_TESTS_CLIENT_CATQ_RUNNER_H_
#define CATQ_TESTS_CLIENT_CATQ_RUNNER_H_

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace catq {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// `catq <args>` through the shell, its output and exit code.
inline CommandResult RunCatq(const std::string& args) {
  const std::string command = absl::StrCat(CATQ_BINARY, " ", args, " 2>&1");
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), n);
  }
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// The output as JSON; a test failure when it is not.
inline nlohmann::json ParseJsonOutput(const CommandResult& result) {
  nlohmann::json json = nlohmann::json::parse(result.output, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(json.is_discarded()) << result.output;
  return json;
}

}  // namespace catq

#endif  // CATQ_TESTS_CLIENT_CATQ_RUNNER_H_
