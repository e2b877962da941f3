#include "client/termination_signals.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

namespace catq::cli {
namespace {

int pipe_fds[2] = {-1, -1};

// Async-signal-safe: one write(2) of the signal's number.
extern "C" void OnTerminationSignal(int signal) {
  const int saved = errno;
  const char byte = static_cast<char>(signal);
  [[maybe_unused]] const ssize_t n = write(pipe_fds[1], &byte, 1);
  errno = saved;
}

}  // namespace

TerminationSignals::TerminationSignals() {
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) pipe_fds[0] = pipe_fds[1] = -1;
  struct sigaction action = {};
  action.sa_handler = OnTerminationSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

TerminationSignals::~TerminationSignals() {
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  pipe_fds[0] = pipe_fds[1] = -1;
}

int TerminationSignals::Wait() {
  char byte = 0;
  while (true) {
    const ssize_t n = read(pipe_fds[0], &byte, 1);
    if (n == 1) return static_cast<unsigned char>(byte);
    if (n < 0 && errno == EINTR) continue;
    return 0;  // the pipe is broken: nothing more can arrive
  }
}

void TerminationSignals::Wake() {
  const char byte = 0;
  [[maybe_unused]] const ssize_t n = write(pipe_fds[1], &byte, 1);
}

}  // namespace catq::cli
