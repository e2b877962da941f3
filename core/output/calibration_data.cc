#include "core/output/calibration_data.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/model/llama_weights.h"
#include "core/output/sequential_calibration.h"
#include "core/tensor/safetensors_file.h"
#include "core/tensor/safetensors_writer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// The block size of statistics collected for `recipe`: full matrices where
// every site is small enough (they serve any k, GPTQ and A_max), else the
// diagonal blocks of k.
int64_t StatisticsBlockSize(const LlamaConfig& config, const Recipe& recipe) {
  constexpr int64_t kMaxFullDim = 8192;
  for (Site site : kAllSites) {
    if (SiteDim(config, site) > kMaxFullDim) {
      return recipe.method == Method::kCat ? recipe.block_size : 1;
    }
  }
  return 0;
}

}  // namespace

absl::StatusOr<CalibrationData> LoadCalibration(Env* env, const LlamaModel& model,
                                                const std::string& model_dir, const Recipe& recipe,
                                                const CalibrationInput& input,
                                                CalibrationReport* report) {
  CalibrationData inputs;
  if (input.empty()) return inputs;
  if (input.sequential && recipe.allocates_bits()) {
    return absl::InvalidArgumentError(
        "calibration: sequential mode cannot calibrate a mixed-precision recipe, whose bits per "
        "site are chosen from the calibration itself; use the float calibration");
  }
  if (input.sequential && recipe.is_auto()) {
    // Sequential mode runs each layer quantized with the recipe, while
    // cat-auto's per-site block sizes are chosen from these statistics.
    return absl::InvalidArgumentError(
        "calibration: sequential mode cannot calibrate cat-auto, whose block sizes are chosen "
        "from the calibration itself; use the float calibration");
  }
  const uint64_t start = env->NowMicros();
  if (!input.statistics_path.empty()) {
    if (input.sequential) {
      return absl::InvalidArgumentError(
          "calibration: sequential mode needs a text or token id calibration to run through the "
          "model, not precomputed statistics");
    }
    report->source = "statistics";
    report->path = input.statistics_path;
    CATQ_ASSIGN_OR_RETURN(inputs.statistics, ReadSiteStatistics(input.statistics_path, env));
  } else {
    const bool text = !input.text_path.empty();
    report->source = text ? "text" : "token_ids";
    report->path = text ? input.text_path : input.token_ids_path;
    report->max_documents = input.text.max_documents;
    report->max_tokens = input.text.max_tokens;
    CATQ_ASSIGN_OR_RETURN(
        std::vector<std::vector<int32_t>> sequences,
        text ? CalibrationSequencesFromText(env, model, model_dir, input.text_path, input.text)
             : CalibrationSequencesFromTokenIds(env, model, input.token_ids_path, input.text));
    CalibrationOptions options;
    options.block_size = StatisticsBlockSize(model.config(), recipe);
    options.fold_norm_gains = recipe.fold_norm_gains;
    options.sample_tokens = input.sample_tokens;
    options.forward.num_threads = input.threads;
    report->sequential = input.sequential;
    CATQ_ASSIGN_OR_RETURN(Calibration calibration,
                          input.sequential
                              ? CollectSequentialSiteStatistics(model, recipe, sequences, options)
                              : CollectSiteStatistics(model, sequences, options));
    report->documents = calibration.sequences;
    report->tokens = calibration.tokens;
    report->statistics_block_size = options.block_size;
    inputs.statistics = std::move(calibration.statistics);
    inputs.samples = std::move(calibration.samples);
  }
  CATQ_RETURN_IF_ERROR(CheckStatisticsCover(model.config(), inputs.statistics));
  report->seconds = static_cast<double>(env->NowMicros() - start) * 1e-6;
  return inputs;
}

absl::Status WriteActivationSamples(Env* env, const std::string& path,
                                    const std::map<std::string, RowMatrixXf>& samples) {
  std::vector<TensorSpec> specs;
  for (const auto& [key, matrix] : samples) {
    specs.push_back({key, DType::kF32, {matrix.rows(), matrix.cols()}});
  }
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                        SafetensorsWriter::Create(env, path, std::move(specs)));
  for (const auto& [key, matrix] : samples) {
    CATQ_RETURN_IF_ERROR(writer->Append(absl::string_view(
        reinterpret_cast<const char*>(matrix.data()), matrix.size() * sizeof(float))));
  }
  return writer->Finish();
}

namespace {

// The samples of every key, or of those in `only` when given.
absl::StatusOr<std::map<std::string, RowMatrixXf>> ReadSamples(
    Env* env, const std::string& path, const std::vector<std::string>* only) {
  CATQ_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path, env));
  std::map<std::string, RowMatrixXf> samples;
  for (const TensorInfo& info : file.tensors()) {
    if (only != nullptr && std::find(only->begin(), only->end(), info.name) == only->end()) {
      continue;
    }
    if (info.dtype != DType::kF32 || info.shape.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", info.name, ": expected F32 [tokens, dim]"));
    }
    CATQ_ASSIGN_OR_RETURN(TensorView view, file.Get(info.name));
    RowMatrixXf matrix(info.shape[0], info.shape[1]);
    std::memcpy(matrix.data(), view.bytes().data(), view.bytes().size());
    file.ReleaseTensor(info);
    samples.emplace(info.name, std::move(matrix));
  }
  return samples;
}

}  // namespace

absl::StatusOr<std::map<std::string, RowMatrixXf>> ReadActivationSamples(Env* env,
                                                                         const std::string& path) {
  return ReadSamples(env, path, nullptr);
}

absl::StatusOr<std::map<std::string, RowMatrixXf>> ReadActivationSamplesOf(
    Env* env, const std::string& path, const std::vector<std::string>& keys) {
  return ReadSamples(env, path, &keys);
}

absl::StatusOr<CalibrationData> ReadLayerCalibration(Env* env, const CalibrationFiles& files,
                                                     int64_t layer) {
  CalibrationData data;
  if (files.statistics_path.empty()) return data;
  std::vector<std::string> keys;
  for (Site site : kAllSites) keys.push_back(SiteQualifiedName(layer, site));
  CATQ_ASSIGN_OR_RETURN(data.statistics, ReadSiteStatisticsOf(files.statistics_path, keys, env));
  if (!files.samples_path.empty()) {
    CATQ_ASSIGN_OR_RETURN(data.samples, ReadActivationSamplesOf(env, files.samples_path, keys));
  }
  return data;
}

}  // namespace catq
