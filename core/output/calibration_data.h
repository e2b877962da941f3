// File: core/output/calibration_data.h
//
// The calibration a quantization job reads: where it comes from
// (CalibrationInput: a text or token id file run through the model, or a
// precomputed statistics file) and what it yields (CalibrationData: the
// statistics of every site and, from text or token ids, activation samples
// to measure SQNR on). The
// in-process quantizer, `catq analyze` and the workers load it the same way.
//
//   CATQ_ASSIGN_OR_RETURN(CalibrationData data,
//                         LoadCalibration(env, model, dir, recipe, input, &report.calibration));
//
// Thread-safety: LoadCalibration is safe to call concurrently.
#ifndef CATQ_CORE_OUTPUT_CALIBRATION_DATA_H_
#define CATQ_CORE_OUTPUT_CALIBRATION_DATA_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cat/calibration.h"
#include "core/cat/recipe.h"
#include "core/io/env.h"
#include "core/model/llama_model.h"
#include "core/output/quantization_report.h"

namespace catq {

// Where the calibration statistics of methods other than rtn come from: a
// text file run through the model, or a precomputed statistics file
// (site_statistics.h), not both.
struct CalibrationInput {
  // One of the three: text (the model's tokenizer), token ids
  // (token_id_documents.h) or precomputed statistics.
  std::string text_path;
  std::string token_ids_path;
  std::string statistics_path;
  // Limits on the documents of a text or token id input.
  CalibrationTextOptions text;
  // Activation tokens kept per site to measure SQNR before and after (0:
  // none). Text and token id calibration only.
  int64_t sample_tokens = 512;
  // Forward worker threads (0: all cores).
  int threads = 0;
  // Sequential mode (sequential_calibration.h): layer l measured behind the
  // quantized layers 0..l-1 of the recipe. Text and token id calibration
  // only. Default false: every layer behind the float model.
  bool sequential = false;
  bool empty() const {
    return text_path.empty() && token_ids_path.empty() && statistics_path.empty();
  }
};

// Statistics and samples the site tasks read; empty when no calibration is
// given.
struct CalibrationData {
  SiteStatisticsMap statistics;
  std::map<std::string, RowMatrixXf> samples;
};

// LoadCalibration
//
// Reads the statistics file, or tokenizes the text and runs the calibration
// forward pass, collecting full Sx matrices where every site has at most
// 8192 channels (they serve any block size, GPTQ and A_max) and the diagonal
// blocks of recipe.block_size otherwise; fills `report`. An empty `input`
// gives empty data. Errors: the file and forward-pass errors, statistics that
// do not cover every site of the model (names the site), `sequential` with a
// statistics file (InvalidArgument: there is no forward pass to make
// sequential), `sequential` with a cat-auto recipe (InvalidArgument: its
// block sizes are chosen from this calibration).
absl::StatusOr<CalibrationData> LoadCalibration(Env* env, const LlamaModel& model,
                                                const std::string& model_dir, const Recipe& recipe,
                                                const CalibrationInput& input,
                                                CalibrationReport* report);

// WriteActivationSamples / ReadActivationSamples
//
// CalibrationData::samples as a safetensors file, one F32 [tokens, dim]
// tensor per site key, so a calibration computed once (the service's
// calibration stage) serves every later layer task. Writing is atomic; an
// empty map is written as a file with no tensors. Read errors name the path
// and tensor.
absl::Status WriteActivationSamples(Env* env, const std::string& path,
                                    const std::map<std::string, RowMatrixXf>& samples);
absl::StatusOr<std::map<std::string, RowMatrixXf>> ReadActivationSamples(Env* env,
                                                                         const std::string& path);

// A calibration stored as files (WriteSiteStatistics, WriteActivationSamples),
// as the service keeps it for a job's layer tasks. An empty statistics path
// means no calibration (rtn); an empty samples path, no samples.
struct CalibrationFiles {
  std::string statistics_path;
  std::string samples_path;
};

// ReadLayerCalibration: the statistics and samples of the four sites of
// `layer` only, so a job holds one layer's calibration per task instead of
// the whole model's (about 740 MB of statistics for Llama-2-7B with k = 128).
// Errors name the file; a site missing from the statistics is NotFound.
absl::StatusOr<CalibrationData> ReadLayerCalibration(Env* env, const CalibrationFiles& files,
                                                     int64_t layer);

// ReadActivationSamplesOf: the samples of `keys` only (a key without samples
// is absent from the result); errors as ReadActivationSamples.
absl::StatusOr<std::map<std::string, RowMatrixXf>> ReadActivationSamplesOf(
    Env* env, const std::string& path, const std::vector<std::string>& keys);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_CALIBRATION_DATA_H_
