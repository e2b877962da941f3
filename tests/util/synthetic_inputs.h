// File: tests/util/synthetic_inputs.h
//
// A job's inputs that need no ../shared: a synthetic Llama model (with
// outlier channels, core/model/synth.h) and the calibration statistics of
// random tokens run through it, as a client of an architecture catq cannot
// run itself would upload them.
//
//   ASSERT_OK(WriteSyntheticJobInputs(dir.Join("model"), dir.Join("stats.safetensors"), 4));
#ifndef CATQ_TESTS_UTIL_SYNTHETIC_INPUTS_H_
#define CATQ_TESTS_UTIL_SYNTHETIC_INPUTS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace catq::testing {

// The "tiny" preset with `num_layers` layers (0: the preset's 2), and
// statistics from 4 sequences of 40 tokens drawn with `seed`.
absl::Status WriteSyntheticJobInputs(const std::string& model_dir,
                                     const std::string& statistics_path, int64_t num_layers = 0,
                                     uint64_t seed = 11);

}  // namespace catq::testing

#endif  // CATQ_TESTS_UTIL_SYNTHETIC_INPUTS_H_
