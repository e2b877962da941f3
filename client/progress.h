// File: client/progress.h
//
// Progress for long commands: a bar redrawn in place when stderr is a
// terminal, one plain line per update otherwise (logs, pipes, CI).
//
//   ProgressPrinter progress("quantize");
//   progress.Update(3, 35, "model.layers.0.mlp.up_proj  SQNR 19.8 dB");
//   progress.Finish();
//
// Not thread-safe.
#ifndef CATQ_CLIENT_PROGRESS_H_
#define CATQ_CLIENT_PROGRESS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace catq::cli {

class ProgressPrinter {
 public:
  explicit ProgressPrinter(absl::string_view task, bool quiet = false);
  void Update(int64_t done, int64_t total, absl::string_view detail);
  // ProgressPrinter::UpdateFraction: as Update, with the counts already
  // formatted (e.g. "12.0/96.0 MiB") and the bar filled to `fraction` in
  // [0, 1].
  void UpdateFraction(double fraction, absl::string_view counts, absl::string_view detail);
  // Ends the bar's line on a terminal.
  void Finish();
  // ProgressPrinter::terminal: whether updates redraw a bar (else each is a
  // line of its own).
  bool terminal() const { return terminal_; }

 private:
  void Draw(int filled, absl::string_view counts, absl::string_view detail);

  std::string task_;
  bool quiet_;
  bool terminal_;
  bool drawn_ = false;
};

}  // namespace catq::cli

#endif  // CATQ_CLIENT_PROGRESS_H_
