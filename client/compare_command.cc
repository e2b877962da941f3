// `catq compare --model DIR --calib-text FILE --text FILE [--json]`: quantizes
// the model with each method (rtn, smoothquant, hadamard, cat with k in {1,
// 16, 32, d}) at each grid (W4A4, W4A8, W8A8, W4A16), evaluates every output
// from its stored shards and prints one table of perplexity, KL to FP and mean
// per-linear SQNR: what a user runs to choose a recipe. Calibrates once.
// `--methods cat-auto:X` adds cat-auto under the online cost budget X; --json
// gives every row's online cost (online transform MACs over linear MACs).
// `--kv-cache-bits 4` (or "4,8") adds under every recipe a row with the K/V
// cache quantized at those bits ("+KV4"; with `--kv-cache-no-hadamard`,
// "+KV4 noH": without the rotation of each head); the default table has
// none.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/command.h"
#include "core/eval/eval_documents.h"
#include "core/eval/evaluate.h"
#include "core/output/auto_block_size.h"
#include "core/output/in_process_quantizer.h"
#include "core/quant/compressed_tensors_pack.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct CompareFlags {
  std::string model;
  std::string calib_text;
  std::string text;
  int64_t calib_max_docs = 64;
  std::string methods = "rtn,smoothquant,hadamard,cat:1,cat:16,cat:32,cat:d";
  std::string grids = "W4A4,W4A8,W8A8,W4A16";
  std::string work_dir;
  bool json = false;
  // Comma list of K/V cache bits (4 or 8) whose rows are added; empty: none.
  std::string kv_cache_bits;
  bool kv_cache_no_hadamard = false;
};

struct Variant {
  std::string name;  // "cat k=32"
  Recipe recipe;
};

struct Cell {
  std::string variant;
  std::string grid;
  double perplexity = 0.0;
  double kl_to_fp = 0.0;
  double mean_sqnr_db = 0.0;
  double online_cost = 0.0;  // online transform MACs over the linear MACs, per token
  // Whether any site's transform runs online; false: the output is
  // zero-overhead, plain compressed-tensors (totals.zero_overhead).
  bool online_transform = false;
  // Average weight bits (by parameters) and activation bits (by MACs) of the
  // output: the grid's, or what mixed precision chose.
  double average_weight_bits = 0.0;
  double average_activation_bits = 0.0;
};

absl::StatusOr<std::vector<Variant>> ParseMethods(const std::string& list) {
  std::vector<Variant> variants;
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    Variant v;
    const std::vector<std::string> parts = absl::StrSplit(item, ':');
    if (parts[0] == kCatAutoMethodName) {
      // cat-auto:X, X the online cost budget relative to the linear MACs.
      v.recipe.method = Method::kCat;
      v.recipe.online_cost_budget = parts.size() > 1 ? std::atof(parts[1].c_str()) : 0.0;
      if (!(v.recipe.online_cost_budget > 0.0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--methods: bad budget in \"", item, "\" (cat-auto:X with X > 0)"));
      }
      v.name = absl::StrCat("cat-auto ", parts[1]);
      variants.push_back(v);
      continue;
    }
    absl::StatusOr<Method> method = ParseMethod(parts[0]);
    if (!method.ok()) return Prefix("--methods", method.status());
    v.recipe.method = *method;
    v.name = parts[0];
    if (v.recipe.method == Method::kCat) {
      const std::string k = parts.size() > 1 ? parts[1] : "128";
      v.recipe.block_size = k == "d" ? (1 << 30) : std::atoi(k.c_str());
      if (v.recipe.block_size < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("--methods: bad block size in \"", item, "\" (cat:K with K >= 1 or d)"));
      }
      v.name = absl::StrCat("cat k=", k);
      // cat:K:nomix, block CAT without the Hadamard mixing; with K = 1 a
      // diagonal that folds into the weights (zero-overhead). cat:K:mixB,
      // mixed precision: bits per site (4, 6, 8) under an average of B for
      // the weights and for the activations (those the grid quantizes).
      if (parts.size() > 2) {
        if (absl::StartsWith(parts[2], "mix") && parts[2] != "mix") {
          const double average = std::atof(parts[2].c_str() + 3);
          if (!(average >= 4.0 && average <= 8.0)) {
            return absl::InvalidArgumentError(absl::StrCat(
                "--methods: bad average bits in \"", item, "\" (cat:K:mixB with B in [4, 8])"));
          }
          v.recipe.average_weight_bits = average;
          v.recipe.average_activation_bits = average;
          v.name = absl::StrCat("cat k=", k, " mix", parts[2].substr(3));
        } else if (parts[2] == "nomix") {
          v.recipe.cat_hadamard = false;
          v.name = absl::StrCat("cat k=", k, " nomix");
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat("--methods: \"", item,
                           "\": expected cat:K, cat:K:nomix or cat:K:mixB after the block size"));
        }
      }
    }
    variants.push_back(v);
  }
  return variants;
}

// Each variant, followed by one copy per K/V cache width of --kv-cache-bits
// (named "<variant> +KV<b>", "... noH" without the Hadamard).
absl::StatusOr<std::vector<Variant>> WithKvCacheRows(const std::vector<Variant>& variants,
                                                     const CompareFlags& flags) {
  std::vector<int> widths;
  for (absl::string_view item : absl::StrSplit(flags.kv_cache_bits, ',', absl::SkipEmpty())) {
    int bits = 0;
    if (!absl::SimpleAtoi(item, &bits) || (bits != 4 && bits != 8)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--kv-cache-bits: \"", item, "\" is not 4 or 8"));
    }
    widths.push_back(bits);
  }
  std::vector<Variant> rows;
  for (const Variant& variant : variants) {
    rows.push_back(variant);
    for (int bits : widths) {
      Variant kv = variant;
      kv.recipe.kv_cache_bits = bits;
      kv.recipe.kv_cache_hadamard = !flags.kv_cache_no_hadamard;
      kv.name = absl::StrCat(variant.name, " +KV", bits, flags.kv_cache_no_hadamard ? " noH" : "");
      rows.push_back(kv);
    }
  }
  return rows;
}

// "W4A8" -> weight bits 4, activation bits 8.
absl::StatusOr<std::pair<int, int>> ParseGrid(absl::string_view grid) {
  int w = 0;
  int a = 0;
  if (std::sscanf(std::string(grid).c_str(), "W%dA%d", &w, &a) != 2) {
    return absl::InvalidArgumentError(absl::StrCat("--grids: \"", grid, "\" is not WnAm"));
  }
  if (!IsExactPackedWidth(w)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--grids: \"", grid, "\": the pack-quantized output stores 4-, 6- or 8-bit weights only"));
  }
  return std::make_pair(w, a);
}

double MeanSqnr(const QuantizationReport& report) {
  double sum = 0.0;
  for (const LinearReport& linear : report.linears) {
    sum += linear.sqnr_after.has_value() ? linear.sqnr_after->measured_sqnr_db : 0.0;
  }
  return report.linears.empty() ? 0.0 : sum / static_cast<double>(report.linears.size());
}

absl::StatusOr<Cell> RunCell(const CompareFlags& flags, const LlamaModel& fp,
                             const CalibrationData& calibration,
                             const std::vector<std::vector<int32_t>>& documents,
                             const Variant& variant, const std::string& grid,
                             const std::string& out) {
  CATQ_ASSIGN_OR_RETURN(auto bits, ParseGrid(grid));
  Recipe recipe = variant.recipe;
  recipe.weights.bits = bits.first;
  recipe.activation_bits = bits.second;
  // Mixed precision leaves float activations float.
  if (recipe.activation_bits >= 16) recipe.average_activation_bits = 0.0;
  InProcessOptions options;
  options.replace = true;
  options.calibration_data = &calibration;
  CATQ_ASSIGN_OR_RETURN(QuantizationReport report,
                        QuantizeModelInProcess(Env::Default(), flags.model, out, recipe, options));
  CATQ_ASSIGN_OR_RETURN(const OnlineCost cost, ModelOnlineCost(fp, report.recipe));
  CATQ_ASSIGN_OR_RETURN(QuantizedModel quantized, QuantizedModel::Open(out));
  CATQ_ASSIGN_OR_RETURN(KlDivergenceResult kl,
                        CompareQuantizedToReference(fp, quantized, documents));
  Cell cell{variant.name,
            grid,
            kl.candidate.perplexity,
            kl.mean_kl,
            MeanSqnr(report),
            cost.relative(),
            report.online_sites > 0,
            static_cast<double>(bits.first),
            static_cast<double>(bits.second)};
  const nlohmann::json totals =
      report.bit_allocation.is_null()
          ? nlohmann::json::object()
          : report.bit_allocation.value("totals", nlohmann::json::object());
  cell.average_weight_bits = totals.value("average_weight_bits", cell.average_weight_bits);
  cell.average_activation_bits =
      totals.value("average_activation_bits", cell.average_activation_bits);
  return cell;
}

void PrintTable(const std::vector<Cell>& cells, const std::vector<std::string>& grids,
                double fp_perplexity) {
  // Recipe names are at least 14 wide, wider for the K/V cache rows.
  int width = 14;
  for (const Cell& c : cells) width = std::max(width, static_cast<int>(c.variant.size()));
  std::cout << absl::StrFormat("%-*s", width, "recipe");
  for (const std::string& grid : grids) {
    std::cout << absl::StrFormat(" | %-26s", grid + ": ppl, KL, SQNR dB");
  }
  std::cout << " | transform";
  std::cout << absl::StrFormat("\n%-*s", width, "FP");
  for (size_t g = 0; g < grids.size(); ++g)
    std::cout << absl::StrFormat(" | %-26.4f", fp_perplexity);
  for (size_t i = 0; i < cells.size(); i += grids.size()) {
    std::cout << absl::StrFormat("\n%-*s", width, cells[i].variant);
    for (size_t g = 0; g < grids.size(); ++g) {
      const Cell& c = cells[i + g];
      std::cout << absl::StrFormat(" | %7.4f %6.4f %6.2f     ", c.perplexity, c.kl_to_fp,
                                   c.mean_sqnr_db);
    }
    std::cout << (cells[i].online_transform ? " | online" : " | none");
  }
  std::cout << "\nppl: perplexity of the stored output; KL: nats per token to FP; SQNR: mean "
               "per-linear measured W x A SQNR on calibration samples; last column: whether a "
               "transform runs online (none: zero-overhead, plain compressed-tensors)\n";
}

absl::Status RunCompare(const CompareFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(std::vector<Variant> methods, ParseMethods(flags.methods));
  CATQ_ASSIGN_OR_RETURN(const std::vector<Variant> variants, WithKvCacheRows(methods, flags));
  const std::vector<std::string> grids = absl::StrSplit(flags.grids, ',', absl::SkipEmpty());
  for (const std::string& grid : grids) CATQ_RETURN_IF_ERROR(ParseGrid(grid).status());
  CATQ_ASSIGN_OR_RETURN(LlamaModel fp, LlamaModel::Open(flags.model));
  CalibrationInput input;
  input.text_path = flags.calib_text;
  input.text.max_documents = flags.calib_max_docs;
  Recipe calibration_recipe;
  calibration_recipe.method = Method::kCat;
  CalibrationReport calibration_report;
  CATQ_ASSIGN_OR_RETURN(CalibrationData calibration,
                        LoadCalibration(Env::Default(), fp, flags.model, calibration_recipe, input,
                                        &calibration_report));
  if (calibration_report.statistics_block_size != 0) {
    return absl::FailedPreconditionError(
        "compare calibrates once with full Sx matrices; this model's sites are too wide");
  }
  CATQ_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> documents,
                        ReadEvalDocuments(flags.model, flags.text, fp.config().vocab_size));
  const std::string work = flags.work_dir.empty()
                               ? (std::filesystem::temp_directory_path() / "catq-compare").string()
                               : flags.work_dir;
  std::vector<Cell> cells;
  double fp_perplexity = 0.0;
  for (const Variant& variant : variants) {
    for (const std::string& grid : grids) {
      const std::string out = absl::StrCat(work, "/out");
      CATQ_ASSIGN_OR_RETURN(Cell cell,
                            RunCell(flags, fp, calibration, documents, variant, grid, out));
      if (!flags.json) {
        std::cerr << absl::StrFormat(
            "%s %s: perplexity %.4f, KL %.4f, online cost %.5f, average bits W %.3f A %.3f\n",
            variant.name, grid, cell.perplexity, cell.kl_to_fp, cell.online_cost,
            cell.average_weight_bits, cell.average_activation_bits);
      }
      cells.push_back(cell);
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(work, ignored);
  CATQ_ASSIGN_OR_RETURN(PerplexityResult fp_result, EvaluatePerplexity(fp, documents));
  fp_perplexity = fp_result.perplexity;
  if (flags.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const Cell& c : cells) {
      rows.push_back({{"recipe", c.variant},
                      {"grid", c.grid},
                      {"perplexity", c.perplexity},
                      {"kl_to_fp", c.kl_to_fp},
                      {"mean_sqnr_db", c.mean_sqnr_db},
                      {"online_cost", c.online_cost},
                      {"online_transform", c.online_transform},
                      {"average_weight_bits", c.average_weight_bits},
                      {"average_activation_bits", c.average_activation_bits}});
    }
    std::cout << nlohmann::json({{"fp_perplexity", fp_perplexity},
                                 {"calibration_documents", calibration_report.documents},
                                 {"calibration_tokens", calibration_report.tokens},
                                 {"results", rows}})
                     .dump(2)
              << "\n";
  } else {
    PrintTable(cells, grids, fp_perplexity);
  }
  return absl::OkStatus();
}

}  // namespace

void AddCompareCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<CompareFlags>();
  CLI::App* sub = app.add_subcommand(
      "compare", "Quantize with every method and grid, evaluate each, print one table");
  sub->add_option("--model", flags->model, "Hugging Face Llama directory")->required();
  sub->add_option("--calib-text", flags->calib_text, "Calibration text file")->required();
  sub->add_option("--text", flags->text, "Evaluation text file")->required();
  sub->add_option("--calib-max-docs", flags->calib_max_docs, "First N calibration documents")
      ->capture_default_str();
  sub->add_option("--methods", flags->methods,
                  "Comma list: rtn, smoothquant, hadamard, cat:K, cat:d, cat:K:nomix (no "
                  "Hadamard; cat:1:nomix folds, zero-overhead), cat:K:mixB (bits per site, 4, 6 "
                  "or 8, under an average of B for weights and activations), cat-auto:BUDGET")
      ->capture_default_str();
  sub->add_option("--grids", flags->grids, "Comma list of WnAm (n = 4, 6 or 8)")
      ->capture_default_str();
  sub->add_option("--work-dir", flags->work_dir, "Scratch directory for the outputs");
  sub->add_option("--kv-cache-bits", flags->kv_cache_bits,
                  "Comma list of K/V cache bits (4, 8): adds a row per recipe with the K/V cache "
                  "quantized at each");
  sub->add_flag("--kv-cache-no-hadamard", flags->kv_cache_no_hadamard,
                "The added K/V cache rows quantize without the Hadamard of each head");
  sub->add_flag("--json", flags->json, "Print the results as JSON");
  sub->callback([flags, &run] { run = [flags] { return RunCompare(*flags); }; });
}

}  // namespace catq::cli
