// `catq eval --model DIR [--quantized OUT_DIR] --text FILE [--json] [--threads N]
// [--max-tokens-per-doc N]`: perplexity of a model directory on a text file,
// computed locally (core/eval/evaluate.h). DIR may be a floating-point model
// or a catq output (run fake-quantized, as stored). With --quantized, DIR is
// the floating-point model the output came from, and eval also reports the
// mean KL divergence from its next-token distributions to the output's
// (nats per token). The tokenizer is DIR's tokenizer.model (SentencePiece), else
// its tokenizer.bin (llama2.c format).
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/command.h"
#include "core/eval/eval_documents.h"
#include "core/eval/evaluate.h"
#include "core/io/env.h"
#include "core/model/llama2c_import.h"
#include "core/model/llama_config.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace catq::cli {
namespace {

struct EvalFlags {
  std::string model;
  std::string quantized;
  std::string text;
  bool json = false;
  int threads = 0;
  int64_t max_tokens_per_doc = 0;
};

// What one run measured; `comparison` only with --quantized, `recipe` when
// a quantized output was evaluated.
struct EvalResult {
  PerplexityResult perplexity;
  std::optional<KlDivergenceResult> comparison;
  nlohmann::json recipe;
};

absl::Status CheckFlags(const EvalFlags& flags) {
  if (flags.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads: ", flags.threads, " must be >= 0 (0: all cores)"));
  }
  if (flags.max_tokens_per_doc < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-tokens-per-doc: ", flags.max_tokens_per_doc, " must be >= 0 (0: the context)"));
  }
  return absl::OkStatus();
}

// The text's documents as token ids, each cut to --max-tokens-per-doc when
// set (the evaluators cut to the model's context in any case).
absl::StatusOr<std::vector<std::vector<int32_t>>> ReadDocuments(const EvalFlags& flags,
                                                                int64_t vocab_size) {
  CATQ_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> documents,
                        ReadEvalDocuments(flags.model, flags.text, vocab_size));
  if (flags.max_tokens_per_doc > 0) {
    for (std::vector<int32_t>& ids : documents) {
      if (static_cast<int64_t>(ids.size()) > flags.max_tokens_per_doc) {
        ids.resize(static_cast<size_t>(flags.max_tokens_per_doc));
      }
    }
  }
  return documents;
}

absl::StatusOr<QuantizedModel> OpenQuantized(const std::string& dir) {
  absl::StatusOr<QuantizedModel> model = QuantizedModel::Open(dir);
  if (!model.ok()) return Prefix(dir, model.status());
  return model;
}

// --model alone: its perplexity, fake-quantized when it is a catq output.
absl::StatusOr<EvalResult> EvaluateOne(const EvalFlags& flags, const LlamaConfig& config,
                                       const ForwardOptions& options) {
  CATQ_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> documents,
                        ReadDocuments(flags, config.vocab_size));
  EvalResult result;
  if (!config.original.contains("quantization_config")) {
    CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(flags.model));
    CATQ_ASSIGN_OR_RETURN(result.perplexity, EvaluatePerplexity(model, documents, options));
    return result;
  }
  CATQ_ASSIGN_OR_RETURN(QuantizedModel model, OpenQuantized(flags.model));
  CATQ_ASSIGN_OR_RETURN(result.perplexity, EvaluateQuantizedPerplexity(model, documents, options));
  result.recipe = model.quantization().recipe;
  return result;
}

// --model with --quantized: the output against the FP model.
absl::StatusOr<EvalResult> EvaluatePair(const EvalFlags& flags, const LlamaConfig& config,
                                        const ForwardOptions& options) {
  if (config.original.contains("quantization_config")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--model ", flags.model,
        " is a quantized output (its config.json has quantization_config); with --quantized, "
        "--model must be the floating-point model"));
  }
  CATQ_ASSIGN_OR_RETURN(LlamaModel reference, LlamaModel::Open(flags.model));
  CATQ_ASSIGN_OR_RETURN(QuantizedModel quantized, OpenQuantized(flags.quantized));
  CATQ_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> documents,
                        ReadDocuments(flags, config.vocab_size));
  absl::StatusOr<KlDivergenceResult> comparison =
      CompareQuantizedToReference(reference, quantized, documents, options);
  if (!comparison.ok()) return Prefix(flags.quantized, comparison.status());
  EvalResult result;
  result.perplexity = comparison->candidate;
  result.comparison = *std::move(comparison);
  result.recipe = quantized.quantization().recipe;
  return result;
}

nlohmann::json ToJson(const EvalFlags& flags, const EvalResult& r) {
  nlohmann::json out = {
      {"model", flags.model},
      {"text", flags.text},
      {"perplexity", r.perplexity.perplexity},
      {"mean_nll", r.perplexity.mean_nll},
      {"tokens", r.perplexity.tokens},
      {"documents", r.perplexity.documents},
      {"truncated_documents", r.perplexity.truncated_documents},
      {"units", {{"mean_nll", "nats/token"}}},
  };
  if (!r.recipe.is_null()) out["recipe"] = r.recipe;
  if (r.comparison) {
    out["quantized"] = flags.quantized;
    out["fp_perplexity"] = r.comparison->reference.perplexity;
    out["fp_mean_nll"] = r.comparison->reference.mean_nll;
    out["kl_to_fp"] = r.comparison->mean_kl;
    out["max_kl_to_fp"] = r.comparison->max_kl;
    out["units"]["fp_mean_nll"] = "nats/token";
    out["units"]["kl_to_fp"] = "nats/token";
    out["units"]["max_kl_to_fp"] = "nats at one position";
  }
  return out;
}

void PrintTable(const EvalFlags& flags, const EvalResult& r) {
  const PerplexityResult& p = r.perplexity;
  std::cout << absl::StrFormat("text   %s: %d documents (%d truncated), %d predicted tokens\n",
                               flags.text, p.documents, p.truncated_documents, p.tokens);
  if (!r.recipe.is_null()) std::cout << "recipe " << r.recipe.dump() << "\n";
  std::cout << absl::StrFormat("\n%-10s %-40s %12s %14s\n", "", "directory", "perplexity",
                               "NLL nats/tok");
  if (r.comparison) {
    const PerplexityResult& fp = r.comparison->reference;
    std::cout << absl::StrFormat("%-10s %-40s %12.4f %14.5f\n", "fp", flags.model, fp.perplexity,
                                 fp.mean_nll);
    std::cout << absl::StrFormat("%-10s %-40s %12.4f %14.5f\n", "quantized", flags.quantized,
                                 p.perplexity, p.mean_nll);
    std::cout << absl::StrFormat(
        "\nKL(fp || quantized): %.6f nats/token (largest at one "
        "position: %.4f nats)\n",
        r.comparison->mean_kl, r.comparison->max_kl);
    return;
  }
  std::cout << absl::StrFormat("%-10s %-40s %12.4f %14.5f\n",
                               r.recipe.is_null() ? "model" : "quantized", flags.model,
                               p.perplexity, p.mean_nll);
}

absl::Status RunEval(const EvalFlags& flags) {
  CATQ_RETURN_IF_ERROR(CheckFlags(flags));
  CATQ_ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(Env::Default(), flags.model));
  ForwardOptions options;
  options.num_threads = flags.threads;
  CATQ_ASSIGN_OR_RETURN(EvalResult result, flags.quantized.empty()
                                               ? EvaluateOne(flags, config, options)
                                               : EvaluatePair(flags, config, options));
  if (flags.json) {
    std::cout << ToJson(flags, result).dump(2) << "\n";
  } else {
    PrintTable(flags, result);
  }
  return absl::OkStatus();
}

}  // namespace

void AddEvalCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* sub = app.add_subcommand(
      "eval", "Perplexity of a model or catq output on a text file; KL divergence to FP");
  sub->add_option("--model", flags->model,
                  "Model directory (floating point, or a catq output when alone)")
      ->required();
  sub->add_option("--quantized", flags->quantized,
                  "catq output of --model to compare with it (adds kl_to_fp)");
  sub->add_option("--text", flags->text,
                  "Text file: documents split on <|endoftext|>, else one per line")
      ->required();
  sub->add_flag("--json", flags->json, "Print one JSON object");
  sub->add_option("--threads", flags->threads, "Forward worker threads (0: all cores)")
      ->capture_default_str();
  sub->add_option("--max-tokens-per-doc", flags->max_tokens_per_doc,
                  "Cut each document to this many tokens, BOS included (0: the model's context)")
      ->capture_default_str();
  sub->callback([flags, &run] { run = [flags] { return RunEval(*flags); }; });
}

}  // namespace catq::cli
