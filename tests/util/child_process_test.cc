#include "tests/util/child_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "tests/util/status_matchers.h"

namespace catq::testing {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<ChildProcess> Shell(const std::string& script) {
  auto child = ChildProcess::Start({"/bin/sh", "-c", script});
  EXPECT_OK(child);
  return child.ok() ? std::move(*child) : nullptr;
}

TEST(ChildProcess, WaitsForLinesInOrderFromStdoutAndStderr) {
  auto child = Shell("echo one; echo two >&2; echo one again; printf tail");
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->WaitForLine("two", absl::Seconds(30)).value_or(""), "two");
  // Lines before the one returned are not looked at again.
  EXPECT_EQ(child->WaitForLine("one", absl::Seconds(30)).value_or(""), "one again");
  EXPECT_EQ(
      child->WaitForLine([](absl::string_view line) { return line == "tail"; }, absl::Seconds(30))
          .value_or(""),
      "tail");
  EXPECT_STATUS(child->WaitForLine("one", absl::Seconds(30)), absl::StatusCode::kFailedPrecondition,
                "ended its output");
  const int status = child->Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(child->output(), "one\ntwo\none again\ntail");
}

TEST(ChildProcess, DeadlineExceededShowsTheOutputAndKillReaps) {
  // tail -f prints its input and then waits forever without exiting.
  auto child = ChildProcess::Start({"/usr/bin/tail", "-f", "/dev/null"});
  ASSERT_OK(child);
  EXPECT_STATUS((*child)->WaitForLine("never", absl::Milliseconds(50)),
                absl::StatusCode::kDeadlineExceeded, "no matching line");
  ASSERT_OK((*child)->Signal(0));
  const int status = (*child)->Kill();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_EQ((*child)->Kill(), status);
  EXPECT_EQ((*child)->Wait(), status);
  EXPECT_EQ((*child)->Signal(SIGTERM).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ChildProcess, ReportsExitStatusAndSignals) {
  auto exits = Shell("echo bye; exit 3");
  ASSERT_NE(exits, nullptr);
  const int status = exits->Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << status;
  EXPECT_THAT(exits->output(), HasSubstr("bye"));

  auto terminated = Shell("echo ready; exec tail -f /dev/null");
  ASSERT_NE(terminated, nullptr);
  ASSERT_OK(terminated->WaitForLine("ready", absl::Seconds(30)));
  ASSERT_OK(terminated->Signal(SIGTERM));
  const int term = terminated->Wait();
  EXPECT_TRUE(WIFSIGNALED(term) && WTERMSIG(term) == SIGTERM) << term;
}

TEST(ChildProcess, AProgramThatCannotRunIsAnErrorAtStart) {
  EXPECT_STATUS(ChildProcess::Start({"/nonexistent/program"}), absl::StatusCode::kInternal,
                "/nonexistent/program");
  EXPECT_EQ(ChildProcess::Start({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChildProcess, DestructorKillsARunningChild) {
  pid_t pid;
  {
    auto child = Shell("echo up; exec tail -f /dev/null");
    ASSERT_NE(child, nullptr);
    ASSERT_OK(child->WaitForLine("up", absl::Seconds(30)));
    pid = child->pid();
  }
  // Reaped: the pid is no longer our child.
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
}

}  // namespace
}  // namespace catq::testing
