#include "tests/util/child_process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace catq::testing {
namespace {

constexpr size_t kOutputTailBytes = 4096;
constexpr int kWantedPipeBytes = 1 << 20;

absl::Status OsError(absl::string_view what, int error) {
  return absl::InternalError(absl::StrCat(what, ": ", strerror(error)));
}

void CloseQuietly(int fd) {
  if (fd >= 0) ::close(fd);
}

// The child's side of Start, between fork and exec: async-signal-safe calls
// only. Reports a failure as its errno on `error_fd` and exits 127.
[[noreturn]] void ExecChild(char* const* argv, int null_fd, int output_fd, int error_fd,
                            pid_t parent, int max_fd) {
  // Die with the thread that started us; if it is already gone, go now.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) _exit(127);
  struct sigaction default_action = {};
  default_action.sa_handler = SIG_DFL;
  for (int signal = 1; signal < NSIG; ++signal) ::sigaction(signal, &default_action, nullptr);
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);
  if (::dup2(null_fd, STDIN_FILENO) < 0 || ::dup2(output_fd, STDOUT_FILENO) < 0 ||
      ::dup2(output_fd, STDERR_FILENO) < 0) {
    const int error = errno;
    (void)!::write(error_fd, &error, sizeof(error));
    _exit(127);
  }
  // Nothing of the test but stdin, stdout, stderr and the error pipe (which
  // is close-on-exec) reaches the program.
  bool closed = error_fd <= STDERR_FILENO + 1 ||
                ::close_range(STDERR_FILENO + 1, static_cast<unsigned>(error_fd) - 1, 0) == 0;
  closed = closed && ::close_range(static_cast<unsigned>(error_fd) + 1, ~0U, 0) == 0;
  if (!closed) {  // A kernel without close_range (before 5.9).
    for (int fd = STDERR_FILENO + 1; fd < max_fd; ++fd) {
      if (fd != error_fd) ::close(fd);
    }
  }
  ::execv(argv[0], argv);
  const int error = errno;
  (void)!::write(error_fd, &error, sizeof(error));
  _exit(127);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("ChildProcess::Start: empty argv");
  // Everything the child needs is prepared before fork: it may not allocate.
  std::vector<std::string> args = argv;
  std::vector<char*> pointers;
  for (std::string& arg : args) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  const long open_max = ::sysconf(_SC_OPEN_MAX);
  const int max_fd = open_max > 0 && open_max <= (1 << 20) ? static_cast<int>(open_max) : 1 << 20;

  int output[2] = {-1, -1};
  int error[2] = {-1, -1};
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return OsError("ChildProcess::Start: open /dev/null", errno);
  if (::pipe2(output, O_CLOEXEC) != 0 || ::pipe2(error, O_CLOEXEC) != 0) {
    const int e = errno;
    for (int fd : {null_fd, output[0], output[1], error[0], error[1]}) CloseQuietly(fd);
    return OsError("ChildProcess::Start: pipe", e);
  }
  // Best effort: a bigger pipe leaves a chatty child more room between reads.
  ::fcntl(output[0], F_SETPIPE_SZ, kWantedPipeBytes);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) ExecChild(pointers.data(), null_fd, output[1], error[1], parent, max_fd);
  const int fork_errno = errno;
  for (int fd : {null_fd, output[1], error[1]}) CloseQuietly(fd);
  if (pid < 0) {
    CloseQuietly(output[0]);
    CloseQuietly(error[0]);
    return OsError("ChildProcess::Start: fork", fork_errno);
  }

  // The error pipe closes on a successful exec: end of file means running.
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(error[0], &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  CloseQuietly(error[0]);
  if (n > 0) {
    CloseQuietly(output[0]);
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return OsError(absl::StrCat("ChildProcess::Start: exec ", argv[0]), exec_errno);
  }
  ::fcntl(output[0], F_SETFL, ::fcntl(output[0], F_GETFL) | O_NONBLOCK);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, output[0]));
}

ChildProcess::~ChildProcess() {
  if (!reaped_) Kill();
  CloseQuietly(output_fd_);
}

bool ChildProcess::ReadSome(absl::Duration timeout) {
  if (output_ended_ || output_fd_ < 0) return false;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int poll_ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      const absl::Duration left = std::max(deadline - absl::Now(), absl::ZeroDuration());
      poll_ms = static_cast<int>(std::min<int64_t>(
          absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 1 << 30));
    }
    pollfd fd = {output_fd_, POLLIN, 0};
    const int ready = ::poll(&fd, 1, poll_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;  // Timed out (poll cannot fail on one valid fd).
    break;
  }
  bool got_any = false;
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = ::read(output_fd_, buffer, sizeof(buffer));
    if (n > 0) {
      output_.append(buffer, static_cast<size_t>(n));
      got_any = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) output_ended_ = true;
    // n < 0: EAGAIN, the pipe is empty for now.
    return got_any || output_ended_;
  }
}

absl::StatusOr<std::string> ChildProcess::WaitForLine(
    const std::function<bool(absl::string_view)>& matches, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    // Examine every complete line read so far (and, once the output has
    // ended, the unterminated last one).
    while (next_line_ < output_.size()) {
      const size_t newline = output_.find('\n', next_line_);
      if (newline == std::string::npos && !output_ended_) break;
      const size_t end = newline == std::string::npos ? output_.size() : newline;
      const std::string line = output_.substr(next_line_, end - next_line_);
      next_line_ = newline == std::string::npos ? output_.size() : newline + 1;
      if (matches(line)) return line;
    }
    if (output_ended_ || reaped_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "child ", pid_, " ended its output without a matching line; output:\n", OutputTail()));
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration() || !ReadSome(left)) {
      if (output_ended_) continue;  // Report the end, after the last line.
      return absl::DeadlineExceededError(
          absl::StrCat("child ", pid_, " printed no matching line within ",
                       absl::FormatDuration(timeout), "; output:\n", OutputTail()));
    }
  }
}

absl::StatusOr<std::string> ChildProcess::WaitForLine(absl::string_view substring,
                                                      absl::Duration timeout) {
  return WaitForLine(
      [substring](absl::string_view line) { return absl::StrContains(line, substring); }, timeout);
}

absl::Status ChildProcess::Signal(int signal) {
  if (reaped_) {
    return absl::FailedPreconditionError(absl::StrCat("child ", pid_, " was already reaped"));
  }
  if (::kill(pid_, signal) != 0) return OsError(absl::StrCat("kill ", pid_), errno);
  return absl::OkStatus();
}

int ChildProcess::Kill() {
  if (reaped_) return wait_status_;
  ::kill(pid_, SIGKILL);
  Reap();
  // What the child wrote before it died, without waiting: a grandchild may
  // hold the pipe open.
  ReadSome(absl::ZeroDuration());
  return wait_status_;
}

int ChildProcess::Wait() {
  if (reaped_) return wait_status_;
  while (!output_ended_ && output_fd_ >= 0) ReadSome(absl::InfiniteDuration());
  Reap();
  return wait_status_;
}

void ChildProcess::Reap() {
  int status = 0;
  pid_t got;
  do {
    got = ::waitpid(pid_, &status, 0);
  } while (got < 0 && errno == EINTR);
  reaped_ = true;
  wait_status_ = status;
}

std::string ChildProcess::OutputTail() const {
  if (output_.size() <= kOutputTailBytes) return output_;
  return absl::StrCat("...", output_.substr(output_.size() - kOutputTailBytes));
}

}  // namespace catq::testing
