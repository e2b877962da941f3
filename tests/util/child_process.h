// File: tests/util/child_process.h
//
// ChildProcess: a program run as a child of the test, for tests that need a
// real process boundary: a server killed with SIGKILL mid-job and restarted,
// a remote worker that dies mid-task. The child's stdout and stderr go,
// interleaved, into one pipe the test reads; WaitForLine blocks in poll(2)
// until the child prints a matching line, so a test waits for what it needs
// (a server's "listening on" line) instead of sleeping for a guessed time.
//
//   absl::StatusOr<std::unique_ptr<ChildProcess>> server = ChildProcess::Start(
//       {CATQ_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir});
//   ASSERT_OK(server);
//   absl::StatusOr<std::string> line =
//       (*server)->WaitForLine("catq serve: listening on", absl::Seconds(60));
//   ASSERT_OK(line);  // the message ends with the output read so far
//   ...
//   int status = (*server)->Kill();  // SIGKILL, as a crash would; reaped
//   EXPECT_TRUE(WIFSIGNALED(status));
//
// The child gets the test's environment and working directory, default
// signal dispositions and an empty signal mask, /dev/null as stdin and no
// other descriptor of the test. It is sent SIGKILL when the thread that
// started it ends, so a test that crashes leaves no server running: start a
// child from a thread that outlives it (a test body does).
//
// Output is read only inside WaitForLine, Wait and Kill. The pipe holds
// 64 KiB (1 MiB where the kernel allows it to grow); a child that writes more
// while the test reads nothing blocks in write(2) until the next of those
// calls.
//
// Thread-safety: not thread-safe; one thread at a time may use a given
// ChildProcess. Start may be called from any thread of a multithreaded test
// (between fork and exec the child calls only async-signal-safe functions).
#ifndef CATQ_TESTS_UTIL_CHILD_PROCESS_H_
#define CATQ_TESTS_UTIL_CHILD_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace catq::testing {

class ChildProcess {
 public:
  // ChildProcess::Start
  //
  // Runs argv[0] (a path; PATH is not searched) with arguments argv.
  // InvalidArgument for an empty argv; the OS error (naming argv[0]) when the
  // pipe, the fork or the exec fails: a program that cannot be run is an
  // error here, not an exit status later.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv);

  // Sends SIGKILL and reaps the child if it has not been reaped.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // ChildProcess::WaitForLine
  //
  // Reads output until a line (without its '\n') for which `matches` is true
  // and returns that line. Lines are examined once, in order: the next call
  // looks only at lines after the one returned, so waiting twice for the
  // same text waits for its second occurrence. A final line without '\n'
  // counts once the output has ended.
  // Errors (each message ends with the last 4 KiB of output): DeadlineExceeded
  // when no line matched within `timeout`; FailedPrecondition when the output
  // ended first (the child exited, or closed stdout and stderr) or the child
  // was already reaped.
  absl::StatusOr<std::string> WaitForLine(const std::function<bool(absl::string_view)>& matches,
                                          absl::Duration timeout);
  // WaitForLine of the first line containing `substring`.
  absl::StatusOr<std::string> WaitForLine(absl::string_view substring, absl::Duration timeout);

  // Everything read from the child so far, for failure messages.
  const std::string& output() const { return output_; }

  // ChildProcess::Signal: kill(2) with `signal`. FailedPrecondition once the
  // child has been reaped (its pid may belong to another process by then).
  absl::Status Signal(int signal);

  // ChildProcess::Kill
  //
  // Sends SIGKILL, reaps the child, reads what output remains and returns the
  // wait status (WIFSIGNALED and WTERMSIG SIGKILL, unless the child had
  // already exited). Once reaped, returns the status it was reaped with.
  int Kill();

  // ChildProcess::Wait
  //
  // Reads the output until it ends, reaps the child and returns its wait
  // status (test with WIFEXITED / WEXITSTATUS, WIFSIGNALED / WTERMSIG). Blocks
  // until the child exits; a grandchild that keeps the child's stdout open
  // keeps it waiting. Once reaped, returns the status it was reaped with.
  int Wait();

 private:
  ChildProcess(pid_t pid, int output_fd) : pid_(pid), output_fd_(output_fd) {}

  // Reads what the pipe holds now, waiting up to `timeout` (no limit for
  // absl::InfiniteDuration()) for the first byte. False when nothing came in
  // time; sets output_ended_ at end of file.
  bool ReadSome(absl::Duration timeout);
  // Reaps the child (waitpid) and records its status.
  void Reap();
  // The last 4 KiB of output, for error messages.
  std::string OutputTail() const;

  const pid_t pid_;
  int output_fd_;              // Read end of the pipe; -1 once closed.
  bool output_ended_ = false;  // End of file read.
  bool reaped_ = false;        // waitpid returned for pid_.
  int wait_status_ = 0;        // Valid when reaped_.
  std::string output_;         // Every byte read.
  size_t next_line_ = 0;       // Offset in output_ of the first unexamined line.
};

}  // namespace catq::testing

#endif  // CATQ_TESTS_UTIL_CHILD_PROCESS_H_
