#include "client/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"

namespace catq::cli {
namespace {

constexpr int kBarWidth = 30;

}  // namespace

ProgressPrinter::ProgressPrinter(absl::string_view task, bool quiet)
    : task_(task), quiet_(quiet), terminal_(::isatty(STDERR_FILENO) == 1) {}

void ProgressPrinter::Update(int64_t done, int64_t total, absl::string_view detail) {
  const int filled = total > 0 ? static_cast<int>(kBarWidth * done / total) : kBarWidth;
  Draw(filled, absl::StrFormat("%d/%d", done, total), detail);
}

void ProgressPrinter::UpdateFraction(double fraction, absl::string_view counts,
                                     absl::string_view detail) {
  Draw(static_cast<int>(kBarWidth * std::clamp(fraction, 0.0, 1.0)), counts, detail);
}

void ProgressPrinter::Draw(int filled, absl::string_view counts, absl::string_view detail) {
  if (quiet_) return;
  filled = std::clamp(filled, 0, kBarWidth);
  if (!terminal_) {
    std::cerr << absl::StrFormat("%s %s %s\n", task_, counts, detail);
    return;
  }
  std::cerr << absl::StrFormat("\r\033[K%s [%s%s] %s %s", task_, std::string(filled, '#'),
                               std::string(kBarWidth - filled, '.'), counts, detail)
            << std::flush;
  drawn_ = true;
}

void ProgressPrinter::Finish() {
  if (drawn_) std::cerr << "\n";
  drawn_ = false;
}

}  // namespace catq::cli
