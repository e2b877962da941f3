// `catq inspect FILE_OR_DIR [--json]`: the tensors (name, dtype, shape, bytes)
// and metadata of a safetensors file or model directory. For a quantized output
// directory it also decodes each packed linear: its [out, in] shape, groups and
// group size.
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/command.h"
#include "core/io/env.h"
#include "core/model/llama_config.h"
#include "core/model/llama_weights.h"
#include "core/tensor/safetensors_dir.h"
#include "core/tensor/safetensors_file.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace catq::cli {
namespace {

struct InspectFlags {
  std::string path;
  bool json = false;
};

struct PackedLinearInfo {
  std::string module;
  int64_t out = 0;
  int64_t in = 0;
  int64_t groups = 0;
  bool asymmetric = false;
};

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// DecodePackedLinears: every `<m>.weight_packed` with its `<m>.weight_shape`
// and `<m>.weight_scale`, checked against each other.
absl::StatusOr<std::vector<PackedLinearInfo>> DecodePackedLinears(const SafetensorsDir& dir) {
  constexpr absl::string_view kSuffix = ".weight_packed";
  std::vector<PackedLinearInfo> linears;
  for (const std::string& name : dir.TensorNames()) {
    if (!absl::EndsWith(name, kSuffix)) continue;
    PackedLinearInfo info;
    info.module = name.substr(0, name.size() - kSuffix.size());
    CATQ_ASSIGN_OR_RETURN(TensorView shape_view, dir.Get(info.module + ".weight_shape"));
    // CopyAs: a tensor after an odd count of F32 or F16 values is not 8-aligned.
    CATQ_ASSIGN_OR_RETURN(std::vector<int64_t> shape, shape_view.CopyAs<int64_t>());
    if (shape.size() != 2) {
      return absl::DataLossError(absl::StrCat(info.module, ".weight_shape: expected 2 values"));
    }
    info.out = shape[0];
    info.in = shape[1];
    CATQ_ASSIGN_OR_RETURN(const TensorInfo* scale, dir.Info(info.module + ".weight_scale"));
    if (scale->shape.size() != 2 || scale->shape[0] != info.out) {
      return absl::DataLossError(absl::StrCat(info.module, ".weight_scale: shape ",
                                              ShapeString(scale->shape), " does not match out ",
                                              info.out));
    }
    info.groups = scale->shape[1];
    info.asymmetric = dir.Contains(info.module + ".weight_zero_point");
    linears.push_back(std::move(info));
  }
  return linears;
}

// The group size the output's quantization_config records; -1 per channel.
int64_t ConfiguredGroupSize(const nlohmann::json& config) {
  const nlohmann::json::json_pointer pointer(
      "/quantization_config/config_groups/group_0/weights/group_size");
  if (!config.is_object() || !config.contains(pointer)) return -1;
  const nlohmann::json& group_size = config.at(pointer);
  return group_size.is_number_integer() ? group_size.get<int64_t>() : -1;
}

// Full-precision linear weights of a Llama directory: the tensors named by
// the config's layout, in layer order.
std::vector<std::pair<std::string, std::vector<int64_t>>> FloatLinearWeights(
    const SafetensorsDir& dir, const nlohmann::json& config) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> linears;
  if (!config.is_object()) return linears;
  absl::StatusOr<LlamaConfig> llama = ParseLlamaConfig(config.dump());
  if (!llama.ok()) return linears;
  for (int64_t layer = 0; layer < llama->num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      absl::StatusOr<const TensorInfo*> info = dir.Info(LinearWeightName(layer, kind));
      if (info.ok()) linears.emplace_back((*info)->name, (*info)->shape);
    }
  }
  return linears;
}

std::map<std::string, std::string> Metadata(const SafetensorsDir& dir) {
  std::map<std::string, std::string> metadata;
  for (const SafetensorsFile& file : dir.files())
    metadata.insert(file.metadata().begin(), file.metadata().end());
  return metadata;
}

nlohmann::json TensorsJson(const SafetensorsDir& dir) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const std::string& name : dir.TensorNames()) {
    const TensorInfo* info = *dir.Info(name);
    tensors.push_back({{"name", name},
                       {"dtype", std::string(DTypeName(info->dtype))},
                       {"shape", info->shape},
                       {"bytes", info->NumBytes()}});
  }
  return tensors;
}

void PrintText(const SafetensorsDir& dir, const std::vector<PackedLinearInfo>& linears,
               const nlohmann::json& config) {
  const int64_t group_size = ConfiguredGroupSize(config);
  uint64_t total = 0;
  for (const std::string& name : dir.TensorNames()) {
    const TensorInfo* info = *dir.Info(name);
    total += info->NumBytes();
    std::cout << absl::StrFormat("%-60s %-5s %-16s %12d\n", name, DTypeName(info->dtype),
                                 ShapeString(info->shape), info->NumBytes());
  }
  std::cout << absl::StrFormat("%d tensors, %d bytes\n", dir.TensorNames().size(), total);
  if (!config.is_null()) {
    std::cout << "config: " << config.value("model_type", "?") << ", "
              << config.value("num_hidden_layers", 0) << " layers, hidden "
              << config.value("hidden_size", 0) << "\n";
  }
  for (const auto& [key, value] : Metadata(dir))
    std::cout << "metadata: " << key << " = " << value << "\n";
  const auto float_linears = FloatLinearWeights(dir, config);
  if (!float_linears.empty()) std::cout << float_linears.size() << " linear weights\n";
  if (linears.empty()) return;
  std::cout << "\npacked linears:\n";
  for (const PackedLinearInfo& linear : linears) {
    std::cout << absl::StrFormat("  %-48s [%d, %d] groups %d (group size %d)%s\n", linear.module,
                                 linear.out, linear.in, linear.groups, group_size,
                                 linear.asymmetric ? ", asymmetric" : "");
  }
  std::cout << linears.size() << " packed linears\n";
}

absl::StatusOr<nlohmann::json> ReadConfigIfPresent(const std::string& dir) {
  const std::string path = dir + "/config.json";
  Env* env = Env::Default();
  if (!env->FileExists(path)) return nlohmann::json();
  CATQ_ASSIGN_OR_RETURN(std::string text, env->ReadFile(path));
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return absl::InvalidArgumentError(path + ": not valid JSON");
  return config;
}

// A catq_report.json: its totals and per-linear SQNR, or the JSON itself.
absl::Status RunInspectReport(const InspectFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(std::string text, Env::Default()->ReadFile(flags.path));
  nlohmann::json report = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!report.is_object() || !report.contains("linears") || !report["linears"].is_array()) {
    return absl::InvalidArgumentError(flags.path + ": not a catq report (no \"linears\" array)");
  }
  if (flags.json) {
    std::cout << report.dump(2) << "\n";
    return absl::OkStatus();
  }
  for (const nlohmann::json& linear : report["linears"]) {
    const nlohmann::json& sqnr = linear.value("weight_sqnr_db", nlohmann::json());
    std::cout << absl::StrFormat(
        "%-48s %-9s %s dB\n", linear.value("module", "?"), linear.value("site", "?"),
        sqnr.is_number() ? absl::StrFormat("%8.2f", sqnr.get<double>()) : std::string("   exact"));
  }
  std::cout << "totals: " << report.value("totals", nlohmann::json::object()).dump() << "\n";
  return absl::OkStatus();
}

absl::Status RunInspect(const InspectFlags& flags) {
  if (absl::EndsWith(flags.path, "catq_report.json")) return RunInspectReport(flags);
  std::error_code ec;
  const bool is_dir = std::filesystem::is_directory(flags.path, ec);
  CATQ_ASSIGN_OR_RETURN(SafetensorsDir dir, SafetensorsDir::Open(flags.path));
  CATQ_ASSIGN_OR_RETURN(std::vector<PackedLinearInfo> linears, DecodePackedLinears(dir));
  nlohmann::json config;
  if (is_dir) {
    CATQ_ASSIGN_OR_RETURN(config, ReadConfigIfPresent(flags.path));
  }
  if (!flags.json) {
    PrintText(dir, linears, config);
    return absl::OkStatus();
  }
  nlohmann::json out = {
      {"path", flags.path}, {"tensors", TensorsJson(dir)}, {"metadata", Metadata(dir)}};
  nlohmann::json float_linears = nlohmann::json::array();
  for (const auto& [name, shape] : FloatLinearWeights(dir, config)) {
    float_linears.push_back({{"name", name}, {"shape", shape}});
  }
  out["linear_weights"] = float_linears;
  if (!config.is_null()) out["config"] = config;
  nlohmann::json packed = nlohmann::json::array();
  for (const PackedLinearInfo& linear : linears) {
    packed.push_back({{"name", linear.module},
                      {"shape", {linear.out, linear.in}},
                      {"groups", linear.groups},
                      {"group_size", ConfiguredGroupSize(config)},
                      {"asymmetric", linear.asymmetric}});
  }
  out["packed_linears"] = packed;
  std::cout << out.dump(2) << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddInspectCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<InspectFlags>();
  CLI::App* sub = app.add_subcommand(
      "inspect",
      "List the tensors and metadata of a safetensors file, model directory or catq report");
  sub->add_option("path", flags->path, "A .safetensors file or a model/output directory")
      ->required();
  sub->add_flag("--json", flags->json, "Print one JSON object");
  sub->callback([flags, &run] { run = [flags] { return RunInspect(*flags); }; });
}

}  // namespace catq::cli
