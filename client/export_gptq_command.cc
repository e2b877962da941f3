// `catq export-gptq --in OUT_DIR --out DIR [--replace] [--max-shard-bytes B]`:
// rewrites a catq output (compressed-tensors pack-quantized) in the GPTQ v1
// layout for loaders that read GPTQ checkpoints (core/output/gptq_export.h),
// and prints what it wrote. Outputs with an online transform are refused,
// naming the site.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "client/command.h"
#include "core/io/env.h"
#include "core/output/gptq_export.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct ExportGptqFlags {
  std::string in;
  std::string out;
  uint64_t max_shard_bytes = 0;
  bool replace = false;
};

std::string GridName(const WeightQuantOptions& weights) {
  return absl::StrFormat(
      "%d-bit, %s, %s", weights.bits,
      weights.group_size > 0 ? absl::StrFormat("group %d", weights.group_size) : "per channel",
      weights.symmetric ? "symmetric" : "asymmetric");
}

absl::Status RunExportGptq(const ExportGptqFlags& flags) {
  Env* env = Env::Default();
  GptqExportOptions options;
  options.max_shard_bytes = flags.max_shard_bytes;
  options.replace = flags.replace;
  CATQ_ASSIGN_OR_RETURN(GptqExportSummary summary,
                        ExportGptqLayout(env, flags.in, flags.out, options));
  std::cout << absl::StrFormat(
      "exported %s -> %s in GPTQ layout: %d linears (%s), %d tensors copied, %d bytes of "
      "tensors\n",
      flags.in, flags.out, summary.linears, GridName(summary.weights), summary.copied_tensors,
      summary.data_bytes);
  for (const std::string& file : summary.files) {
    CATQ_ASSIGN_OR_RETURN(uint64_t size, env->GetFileSize(flags.out + "/" + file));
    std::cout << absl::StrFormat("  %-40s %12d bytes\n", file, size);
  }
  return absl::OkStatus();
}

}  // namespace

void AddExportGptqCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<ExportGptqFlags>();
  CLI::App* sub = app.add_subcommand(
      "export-gptq",
      "Rewrite a catq output in GPTQ (AutoGPTQ v1) layout; refused for outputs with an online "
      "transform");
  sub->add_option("--in", flags->in, "catq output directory (from `catq quantize` or `fetch`)")
      ->required();
  sub->add_option("--out", flags->out, "Export directory (must not exist unless --replace)")
      ->required();
  sub->add_option("--max-shard-bytes", flags->max_shard_bytes,
                  "Largest shard (0: like the output: one file for one file, else its largest "
                  "shard)")
      ->capture_default_str();
  sub->add_flag("--replace", flags->replace, "Replace an existing export directory");
  sub->callback([flags, &run] { run = [flags] { return RunExportGptq(*flags); }; });
}

}  // namespace catq::cli
