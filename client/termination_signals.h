// File: client/termination_signals.h
//
// How the long-running commands (`catq serve`, `catq worker`) stop on SIGINT
// and SIGTERM. A handler writes the signal's number to a pipe and one thread
// waits on the pipe. A handler (rather than blocking the signals and calling
// sigwait) works whichever thread the kernel delivers the signal to,
// including threads libraries start before main (OpenBLAS's) with every
// signal unblocked.
//
//   TerminationSignals signals;   // installs the handler
//   ... start work ...
//   const int signal = signals.Wait();   // SIGINT, SIGTERM, or 0 after Wake
//
// One instance at a time per process.
#ifndef CATQ_CLIENT_TERMINATION_SIGNALS_H_
#define CATQ_CLIENT_TERMINATION_SIGNALS_H_

namespace catq::cli {

class TerminationSignals {
 public:
  // Installs handlers for SIGINT and SIGTERM.
  TerminationSignals();
  // Restores the default dispositions.
  ~TerminationSignals();
  TerminationSignals(const TerminationSignals&) = delete;
  TerminationSignals& operator=(const TerminationSignals&) = delete;

  // Wait: blocks until SIGINT or SIGTERM arrives (returns it) or Wake is
  // called (returns 0).
  int Wait();
  // Wake: makes Wait return 0 (the work ended by itself). Thread-safe.
  void Wake();
};

}  // namespace catq::cli

#endif  // CATQ_CLIENT_TERMINATION_SIGNALS_H_
