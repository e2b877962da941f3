#include "client/progress.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"

namespace catq::cli {

ProgressPrinter::ProgressPrinter(absl::string_view task, bool quiet)
    : task_(task), quiet_(quiet), terminal_(::isatty(STDERR_FILENO) == 1) {}

void ProgressPrinter::Update(int64_t done, int64_t total, absl::string_view detail) {
  if (quiet_) return;
  if (!terminal_) {
    std::cerr << absl::StrFormat("%s %d/%d %s\n", task_, done, total, detail);
    return;
  }
  constexpr int kWidth = 30;
  const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
  std::cerr << absl::StrFormat("\r\033[K%s [%s%s] %d/%d %s", task_, std::string(filled, '#'),
                               std::string(kWidth - filled, '.'), done, total, detail)
            << std::flush;
  drawn_ = true;
}

void ProgressPrinter::Finish() {
  if (drawn_) std::cerr << "\n";
  drawn_ = false;
}

}  // namespace catq::cli
