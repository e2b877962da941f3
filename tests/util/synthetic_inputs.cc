#include "tests/util/synthetic_inputs.h"

#include <random>
#include <vector>

#include "core/cat/calibration.h"
#include "core/cat/site_statistics.h"
#include "core/io/env.h"
#include "core/model/llama_model.h"
#include "core/model/synth.h"
#include "core/util/status_macros.h"

namespace catq::testing {

absl::Status WriteSyntheticJobInputs(const std::string& model_dir,
                                     const std::string& statistics_path, int64_t num_layers,
                                     uint64_t seed) {
  Env* env = Env::Default();
  SynthOptions synth;
  synth.preset = "tiny";
  synth.num_layers = num_layers;
  CATQ_RETURN_IF_ERROR(WriteSyntheticModel(env, synth, model_dir));
  CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(model_dir));
  std::mt19937 rng(static_cast<std::mt19937::result_type>(seed));
  std::uniform_int_distribution<int32_t> token(3, model.config().vocab_size - 1);
  std::vector<std::vector<int32_t>> sequences(4, std::vector<int32_t>(40, 1));
  for (std::vector<int32_t>& sequence : sequences) {
    for (size_t i = 1; i < sequence.size(); ++i) sequence[i] = token(rng);
  }
  CATQ_ASSIGN_OR_RETURN(auto calibration, CollectSiteStatistics(model, sequences, {}));
  return WriteSiteStatistics(env, statistics_path, calibration.statistics);
}

}  // namespace catq::testing
