// File: client/calibration_flags.h
//
// The calibration limits `catq quantize`, `catq submit` and `catq calibrate`
// share, and the sequential mode of the first two, declared once so their
// names, help and defaults agree.
#ifndef CATQ_CLIENT_CALIBRATION_FLAGS_H_
#define CATQ_CLIENT_CALIBRATION_FLAGS_H_

#include <CLI/CLI.hpp>
#include <cstdint>

namespace catq::cli {

// --calib-max-docs and --calib-max-tokens (0: no limit).
inline void AddCalibrationLimitFlags(CLI::App& command, int64_t& max_documents,
                                     int64_t& max_tokens) {
  command
      .add_option("--calib-max-docs", max_documents, "Calibrate on the first N documents (0: all)")
      ->capture_default_str();
  command.add_option("--calib-max-tokens", max_tokens, "Calibration token budget (0: no limit)")
      ->capture_default_str();
}

// --sequential-calibration: measure each layer behind the layers before it,
// quantized with the recipe (core/output/sequential_calibration.h).
inline void AddSequentialCalibrationFlag(CLI::App& command, bool& sequential) {
  command.add_flag("--sequential-calibration", sequential,
                   "Calibrate layer by layer behind the already-quantized layers (text or token "
                   "ids only)");
}

}  // namespace catq::cli

#endif  // CATQ_CLIENT_CALIBRATION_FLAGS_H_
