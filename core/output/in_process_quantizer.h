// File: core/output/in_process_quantizer.h
//
// Quantizes a Hugging Face Llama-family model directory into a catq output
// directory (architecture.md section 4) in this process, streaming: one
// layer is in memory at a time (its site tasks run in order), input tensors
// are read through mmap, and shards go to disk as they fill. Methods other
// than rtn first collect calibration statistics (core/cat/calibration.h). This is `catq quantize`
// without --server and the reference the service's output must equal.
//
//   InProcessOptions options;
//   options.on_linear = [](const LinearReport& r, int64_t done, int64_t total) { ... };
//   CATQ_ASSIGN_OR_RETURN(QuantizationReport report,
//                         QuantizeModelInProcess(env, "models/m", "out/m-w4", recipe, options));
//
// The output appears atomically (StagedDirectory): on any error nothing is
// left at `out_dir`.
//
// Thread-safety: independent calls may run concurrently on different outputs.
#ifndef CATQ_CORE_OUTPUT_IN_PROCESS_QUANTIZER_H_
#define CATQ_CORE_OUTPUT_IN_PROCESS_QUANTIZER_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "core/cat/recipe.h"
#include "core/io/env.h"
#include "core/output/calibration_data.h"
#include "core/output/output_assembler.h"
#include "core/output/quantization_report.h"

namespace catq {

struct InProcessOptions {
  CalibrationInput calibration;
  // Calibration already loaded (LoadCalibration) for this model, used instead
  // of `calibration`: `catq compare` calibrates once for many recipes. Not
  // owned; null by default.
  const CalibrationData* calibration_data = nullptr;
  // Largest shard, in bytes of tensor data. Default 2 GiB.
  uint64_t max_shard_bytes = uint64_t{2} << 30;
  // Replace an existing `out_dir`. Default false: AlreadyExists.
  bool replace = false;
  // Called after each linear is quantized, in write order; `done` counts
  // linears finished out of `total`.
  std::function<void(const LinearReport& linear, int64_t done, int64_t total)> on_linear;
};

// Errors: the model cannot be opened or validated (names file and tensor),
// the recipe is invalid, it needs calibration and none is given (or the
// statistics do not cover the model's sites), a site task fails (names the
// site), the output exists and `replace` is false, or an I/O failure.
absl::StatusOr<QuantizationReport> QuantizeModelInProcess(Env* env, const std::string& model_dir,
                                                          const std::string& out_dir,
                                                          const Recipe& recipe,
                                                          const InProcessOptions& options);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_IN_PROCESS_QUANTIZER_H_
