// `catq synth --preset tiny|small|1b|7b --out DIR [--dtype F32|F16|BF16]
// [--statistics-out FILE [--statistics-block-size K]]`: a Llama-shaped model
// with random weights and outlier channels, written streaming (memory stays at
// one tensor chunk, whatever the preset), and optionally calibration
// statistics for it (core/cat/synthetic_statistics.h), to quantize a model too
// large for a calibration forward pass here.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "client/command.h"
#include "core/cat/synthetic_statistics.h"
#include "core/io/env.h"
#include "core/model/synth.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct SynthFlags {
  SynthOptions options;
  std::string dtype = "F32";
  std::string out;
  std::string statistics_out;
  SyntheticStatisticsOptions statistics;
};

absl::Status RunSynth(SynthFlags flags) {
  CATQ_ASSIGN_OR_RETURN(flags.options.dtype, ParseDType(absl::AsciiStrToUpper(flags.dtype)));
  CATQ_ASSIGN_OR_RETURN(LlamaConfig config, SynthConfig(flags.options));
  CATQ_RETURN_IF_ERROR(WriteSyntheticModel(Env::Default(), flags.options, flags.out));
  std::cout << "synthesized " << flags.options.preset << " (" << DTypeName(flags.options.dtype)
            << ") -> " << flags.out << ": " << config.num_hidden_layers << " layers, hidden "
            << config.hidden_size << ", intermediate " << config.intermediate_size << "\n";
  if (flags.statistics_out.empty()) return absl::OkStatus();
  flags.statistics.seed = flags.options.seed;
  CATQ_RETURN_IF_ERROR(
      WriteSyntheticSiteStatistics(Env::Default(), config, flags.statistics, flags.statistics_out));
  std::cout << "statistics (" << flags.statistics.tokens << " tokens per site, block size "
            << flags.statistics.block_size << ") -> " << flags.statistics_out << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddSynthCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<SynthFlags>();
  CLI::App* sub = app.add_subcommand(
      "synth", "Write a synthetic Llama-shaped model with outlier channels, for scale tests");
  sub->add_option("--preset", flags->options.preset, "tiny, small, 1b or 7b")
      ->capture_default_str();
  sub->add_option("--out", flags->out, "Output directory")->required();
  sub->add_option("--dtype", flags->dtype, "F32, F16 or BF16")->capture_default_str();
  sub->add_option("--seed", flags->options.seed, "Random seed")->capture_default_str();
  sub->add_option("--layers", flags->options.num_layers, "Override the preset's layer count");
  sub->add_option("--max-shard-bytes", flags->options.max_shard_bytes, "Largest shard")
      ->capture_default_str();
  sub->add_option("--outlier-channels", flags->options.outlier_channels,
                  "Hidden channels with large norm gains")
      ->capture_default_str();
  sub->add_option("--statistics-out", flags->statistics_out,
                  "Also write synthetic calibration statistics for every site to this file");
  sub->add_option("--statistics-block-size", flags->statistics.block_size,
                  "Block size k of the statistics (0: full matrices)")
      ->capture_default_str();
  sub->add_option("--statistics-tokens", flags->statistics.tokens,
                  "Random activations summed per site")
      ->capture_default_str();
  sub->callback([flags, &run] { run = [flags] { return RunSynth(*flags); }; });
}

}  // namespace catq::cli
