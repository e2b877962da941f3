#include "client/report_summary.h"

#include <cmath>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/str_format.h"

namespace catq::cli {
namespace {

using nlohmann::json;

constexpr const char* kSites[] = {"attn_in", "attn_out", "mlp_in", "mlp_out"};

// The number at `key` of `object`, `fallback` when absent or null.
double Number(const json& object, const char* key,
              double fallback = std::numeric_limits<double>::quiet_NaN()) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : fallback;
}

int64_t Integer(const json& object, const char* key) {
  if (!object.is_object()) return 0;
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<int64_t>() : 0;
}

std::string Text(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

const json& Member(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it != object.end() ? *it : kNull;
}

size_t Size(const json& array) { return array.is_array() ? array.size() : 0; }

// Mean weight SQNR per layer and site, the figure a user scans first.
void PrintWeightSqnrTable(const json& report, std::ostream& os) {
  std::map<int64_t, std::map<std::string, std::pair<double, int>>> by_layer;
  for (const json& linear : Member(report, "linears")) {
    auto& [sum, count] = by_layer[Integer(linear, "layer")][Text(linear, "site")];
    sum += Number(linear, "weight_sqnr_db", std::numeric_limits<double>::infinity());
    ++count;
  }
  os << absl::StrFormat("%-6s %10s %10s %10s %10s   (weight SQNR, dB)\n", "layer", "attn_in",
                        "attn_out", "mlp_in", "mlp_out");
  for (const auto& [layer, sites] : by_layer) {
    os << absl::StrFormat("%-6d", layer);
    for (const char* site : kSites) {
      auto it = sites.find(site);
      const double mean = it == sites.end() ? NAN : it->second.first / it->second.second;
      os << absl::StrFormat(" %10.2f", mean);
    }
    os << "\n";
  }
}

void PrintTotals(const json& report, std::ostream& os) {
  const json& totals = Member(report, "totals");
  os << absl::StrFormat(
      "%d linears quantized (%s), %d -> %d bytes (%.2fx), weight SQNR mean %.2f dB, min %.2f "
      "dB, max error %.3f steps, %.2f s\n",
      Size(Member(report, "linears")), Text(Member(report, "recipe"), "method"),
      Integer(totals, "input_bytes"), Integer(totals, "output_bytes"),
      Number(totals, "compression_ratio"), Number(totals, "weight_sqnr_db_mean"),
      Number(totals, "weight_sqnr_db_min"), Number(totals, "max_error_steps"),
      Number(Member(report, "timings_seconds"), "total"));
}

// Per layer and site, the output SQNR measured on the calibration samples
// after the transform and, in parentheses, without it (W x vs Q(W') Q(T x)).
void PrintMeasuredSqnr(const json& report, std::ostream& os) {
  const json& sites = Member(report, "sites");
  if (Size(sites) == 0 || Member(sites[0], "sqnr_after").is_null()) return;
  std::map<int64_t, std::map<std::string, const json*>> by_layer;
  for (const json& site : sites) by_layer[Integer(site, "layer")][Text(site, "site")] = &site;
  os << absl::StrFormat("%-6s %16s %16s %16s %16s   (measured SQNR, dB: %s (none))\n", "layer",
                        "attn_in", "attn_out", "mlp_in", "mlp_out",
                        Text(Member(report, "recipe"), "method"));
  for (const auto& [layer, by_site] : by_layer) {
    os << absl::StrFormat("%-6d", layer);
    for (const char* name : kSites) {
      auto it = by_site.find(name);
      if (it == by_site.end() || Member(*it->second, "sqnr_after").is_null()) {
        os << absl::StrFormat(" %16s", "-");
        continue;
      }
      os << absl::StrFormat(" %7.2f (%6.2f)",
                            Number(Member(*it->second, "sqnr_after"), "measured_sqnr_db"),
                            Number(Member(*it->second, "sqnr_before"), "measured_sqnr_db"));
    }
    os << "\n";
  }
  const json& sqnr = Member(Member(report, "totals"), "sqnr");
  if (sqnr.is_null()) return;
  const json& calibration = Member(report, "calibration");
  os << absl::StrFormat(
      "per-linear measured SQNR mean %.2f dB (none: %.2f dB), predicted %.2f dB; prediction "
      "within 1 dB on %d of %d linears; calibration %d documents, %d tokens\n",
      Number(sqnr, "measured_sqnr_db_mean"), Number(sqnr, "measured_sqnr_db_mean_before"),
      Number(sqnr, "predicted_sqnr_db_mean"), Integer(sqnr, "linears_predicted_within_1db"),
      Integer(sqnr, "linears"), Integer(calibration, "documents"), Integer(calibration, "tokens"));
}

// Whether the output runs any transform online, from the totals: none
// means a standard engine loads it as plain compressed-tensors.
void PrintOnlineTransforms(const json& report, std::ostream& os) {
  const json& totals = Member(report, "totals");
  const json& zero_overhead = Member(totals, "zero_overhead");
  if (!zero_overhead.is_boolean()) return;
  const int64_t online = Integer(totals, "online_transform_sites");
  const int64_t folded = Integer(totals, "folded_sites");
  const int64_t sites = static_cast<int64_t>(Size(Member(report, "sites")));
  if (!zero_overhead.get<bool>()) {
    os << absl::StrFormat(
        "online transforms at %d sites (x' = T x before the linears; the output needs catq's "
        "online tensors)\n",
        online);
    return;
  }
  const json& recipe = Member(report, "recipe");
  const int64_t w_bits = Integer(recipe, "w_bits");
  const int64_t a_bits = Integer(recipe, "a_bits");
  // What the GPTQ export takes: 4-bit weights with F16-representable scales;
  // GPTQ runs activations in float, so only a weight-only output is the same
  // model there.
  const bool gptq = w_bits == 4 && a_bits >= 16 && Text(recipe, "scale_dtype") != "F32";
  os << absl::StrFormat(
      "online transform: none (zero-overhead%s): plain compressed-tensors "
      "pack-quantized W%dA%d%s\n",
      folded > 0 ? absl::StrFormat(", %d of %d site transforms folded into the "
                                   "weights",
                                   folded, sites)
                 : "",
      w_bits, a_bits, gptq ? " (and GPTQ with --export-gptq)" : "");
}

void PrintEvaluation(const json& report, std::ostream& os) {
  const json& e = Member(report, "evaluation");
  if (!e.is_object()) return;
  os << absl::StrFormat(
      "evaluation on %s: perplexity %.4f (FP %.4f), KL to FP %.4f nats/token, %d tokens\n",
      Text(e, "text"), Number(e, "perplexity"), Number(e, "fp_perplexity"), Number(e, "kl_to_fp"),
      Integer(e, "tokens"));
}

}  // namespace

void PrintReportSummary(const json& report, const std::string& out_dir, std::ostream& os) {
  PrintWeightSqnrTable(report, os);
  PrintTotals(report, os);
  PrintMeasuredSqnr(report, os);
  PrintOnlineTransforms(report, os);
  os << "output: " << out_dir << " (config.json, catq_report.json, "
     << Size(Member(Member(report, "totals"), "shard_files")) << " shard(s))\n";
  PrintEvaluation(report, os);
}

}  // namespace catq::cli
