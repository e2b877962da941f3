#include "core/output/layer_result_io.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/tensor/safetensors_file.h"
#include "core/tensor/safetensors_writer.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace catq {
namespace {

using nlohmann::json;

constexpr char kMetadataKey[] = "catq_layer_result";
constexpr const char* kOnlineNames[] = {"blocks", "blocks_tail", "rot_q"};

// JSON numbers print with max_digits10, so finite doubles round-trip; JSON
// has no infinity or NaN, which therefore travel as strings.
json Number(double value) {
  if (std::isfinite(value)) return value;
  if (std::isnan(value)) return "nan";
  return value > 0 ? "inf" : "-inf";
}

double ReadNumber(const json& value) {
  if (value.is_number()) return value.get<double>();
  const std::string text = value.get<std::string>();
  if (text == "inf") return std::numeric_limits<double>::infinity();
  if (text == "-inf") return -std::numeric_limits<double>::infinity();
  return std::numeric_limits<double>::quiet_NaN();
}

// The fields of LinearSqnrReport, in one place for both directions.
template <typename Report, typename Visit>
void VisitSqnrFields(Report& r, Visit visit) {
  visit("c_x", r.activation_concentration_db);
  visit("c_w", r.weight_concentration_db);
  visit("a", r.alignment_db);
  visit("a_max", r.max_alignment_db);
  visit("pred_x", r.predicted_activation_sqnr_db);
  visit("pred_w", r.predicted_weight_sqnr_db);
  visit("pred", r.predicted_sqnr_db);
  visit("meas_x", r.measured_activation_sqnr_db);
  visit("meas_w", r.measured_weight_sqnr_db);
  visit("meas", r.measured_sqnr_db);
}

json SqnrToJson(const std::optional<LinearSqnrReport>& r) {
  if (!r.has_value()) return nullptr;
  json out = json::object();
  VisitSqnrFields(*r, [&](const char* key, double value) { out[key] = Number(value); });
  return out;
}

std::optional<LinearSqnrReport> SqnrFromJson(const json& in) {
  if (in.is_null()) return std::nullopt;
  LinearSqnrReport r;
  VisitSqnrFields(r, [&](const char* key, double& value) { value = ReadNumber(in.at(key)); });
  return r;
}

template <typename Report, typename Visit>
void VisitSiteReportFields(Report& s, Visit visit) {
  visit("condition", s.condition);
  visit("max_inverse_residual", s.max_inverse_residual);
  visit("seconds", s.seconds);
}

// The stage timings ("stage_seconds"); results written before they existed
// have none and read as zeros.
template <typename Report, typename Visit>
void VisitStageSeconds(Report& s, Visit visit) {
  visit("solve", s.stages.solve);
  visit("quantize", s.stages.quantize);
  visit("pack", s.stages.pack);
  visit("measure", s.stages.measure);
}

template <typename Report, typename Visit>
void VisitSiteReportCounts(Report& s, Visit visit) {
  visit("layer", s.layer);
  visit("dim", s.dim);
  visit("block_size", s.block_size);
  visit("mixing_q", s.mixing_q);
  visit("damped_blocks", s.damped_blocks);
  visit("clipped_blocks", s.clipped_blocks);
  visit("identity_blocks", s.identity_blocks);
  visit("sample_tokens", s.sample_tokens);
}

json SiteReportJson(const SiteReport& s) {
  json out = {{"key", s.key}, {"site", s.site}, {"transform", s.transform}};
  VisitSiteReportFields(s, [&](const char* key, double value) { out[key] = Number(value); });
  VisitSiteReportCounts(s, [&](const char* key, int64_t value) { out[key] = value; });
  json& stages = out["stage_seconds"] = json::object();
  VisitStageSeconds(s, [&](const char* key, double value) { stages[key] = Number(value); });
  out["sqnr_before"] = SqnrToJson(s.sqnr_before);
  out["sqnr_after"] = SqnrToJson(s.sqnr_after);
  return out;
}

SiteReport SiteReportFromJson(const json& in) {
  SiteReport s;
  s.key = in.at("key").get<std::string>();
  s.site = in.at("site").get<std::string>();
  s.transform = in.at("transform").get<std::string>();
  VisitSiteReportFields(s, [&](const char* key, double& value) { value = ReadNumber(in.at(key)); });
  VisitSiteReportCounts(
      s, [&](const char* key, int64_t& value) { value = in.at(key).get<int64_t>(); });
  if (in.contains("stage_seconds")) {
    const json& stages = in.at("stage_seconds");
    VisitStageSeconds(s,
                      [&](const char* key, double& value) { value = ReadNumber(stages.at(key)); });
  }
  s.sqnr_before = SqnrFromJson(in.at("sqnr_before"));
  s.sqnr_after = SqnrFromJson(in.at("sqnr_after"));
  return s;
}

json LinearJson(const LinearReport& l) {
  return {{"module", l.module},
          {"layer", l.layer},
          {"site", l.site},
          {"rows", l.rows},
          {"cols", l.cols},
          {"weight_sqnr_db", Number(l.weight_sqnr_db)},
          {"max_error_steps", Number(l.max_error_steps)},
          {"sqnr_before", SqnrToJson(l.sqnr_before)},
          {"sqnr_after", SqnrToJson(l.sqnr_after)}};
}

LinearReport LinearFromJson(const json& in) {
  LinearReport l;
  l.module = in.at("module").get<std::string>();
  l.layer = in.at("layer").get<int64_t>();
  l.site = in.at("site").get<std::string>();
  l.rows = in.at("rows").get<int64_t>();
  l.cols = in.at("cols").get<int64_t>();
  l.weight_sqnr_db = ReadNumber(in.at("weight_sqnr_db"));
  l.max_error_steps = ReadNumber(in.at("max_error_steps"));
  l.sqnr_before = SqnrFromJson(in.at("sqnr_before"));
  l.sqnr_after = SqnrFromJson(in.at("sqnr_after"));
  return l;
}

json RecordJson(const SiteRecord& r) {
  return {{"layer", r.layer},           {"site", r.site},
          {"online", r.online},         {"hadamard", r.hadamard},
          {"block_size", r.block_size}, {"folded", r.folded}};
}

SiteRecord RecordFromJson(const json& in) {
  SiteRecord r;
  r.layer = in.at("layer").get<int>();
  r.site = in.at("site").get<std::string>();
  r.online = in.at("online").get<bool>();
  r.hadamard = in.at("hadamard").get<bool>();
  r.block_size = in.at("block_size").get<int>();
  r.folded = in.at("folded").get<bool>();
  return r;
}

const std::optional<TransformTensorF32>& OnlineTensor(const SiteTransformTensors& online,
                                                      absl::string_view name) {
  if (name == "blocks") return online.blocks;
  if (name == "blocks_tail") return online.blocks_tail;
  return online.rot_q;
}

std::optional<TransformTensorF32>& OnlineTensor(SiteTransformTensors& online,
                                                absl::string_view name) {
  return const_cast<std::optional<TransformTensorF32>&>(
      OnlineTensor(static_cast<const SiteTransformTensors&>(online), name));
}

template <typename T>
std::string RawBytes(const T* data, size_t count) {
  return std::string(reinterpret_cast<const char*>(data), count * sizeof(T));
}

// Specs and bytes of every tensor of `result`, and the JSON describing it.
struct Encoded {
  std::vector<TensorSpec> specs;
  std::vector<std::string> bytes;
  json description;
};

Encoded Encode(const LayerResult& result) {
  Encoded out;
  out.description = {{"layer", result.layer},
                     {"read_seconds", Number(result.read_seconds)},
                     {"quantize_seconds", Number(result.quantize_seconds)},
                     {"sites", json::array()}};
  for (Site s : kAllSites) {
    const SiteResult& site = result.site(s);
    const std::string prefix(SiteName(s));
    json entry = {
        {"record", RecordJson(site.record)}, {"report", SiteReportJson(site.report)},
        {"linears", json::array()},          {"packed", json::array()},
        {"online", json::array()},           {"folded", site.folded_diagonal.has_value()}};
    for (const LinearReport& linear : site.linears) entry["linears"].push_back(LinearJson(linear));
    for (const PackedLinear& packed : site.packed) {
      json names = json::array();
      for (size_t i = 0; i < packed.specs.size(); ++i) {
        names.push_back(packed.specs[i].name);
        out.specs.push_back(packed.specs[i]);
        out.bytes.push_back(packed.bytes[i]);
      }
      entry["packed"].push_back({{"tensors", names},
                                 {"weight_sqnr_db", Number(packed.weight_sqnr_db)},
                                 {"max_error_steps", Number(packed.max_error_steps)}});
    }
    for (const char* name : kOnlineNames) {
      const std::optional<TransformTensorF32>& tensor = OnlineTensor(site.online, name);
      if (!tensor.has_value()) continue;
      entry["online"].push_back(name);
      out.specs.push_back({absl::StrCat(prefix, ".online.", name), DType::kF32, tensor->shape});
      out.bytes.push_back(RawBytes(tensor->values.data(), tensor->values.size()));
    }
    if (site.folded_diagonal.has_value()) {
      const Eigen::VectorXd& t = *site.folded_diagonal;
      out.specs.push_back({absl::StrCat(prefix, ".folded_diagonal"), DType::kF64, {t.size()}});
      out.bytes.push_back(RawBytes(t.data(), static_cast<size_t>(t.size())));
    }
    out.description["sites"].push_back(std::move(entry));
  }
  return out;
}

absl::StatusOr<std::string> TensorBytes(const SafetensorsFile& file, const std::string& name,
                                        DType dtype) {
  CATQ_ASSIGN_OR_RETURN(TensorView view, file.Get(name));
  if (view.dtype() != dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": dtype ", DTypeName(view.dtype()), ", expected ", DTypeName(dtype)));
  }
  return std::string(view.bytes());
}

absl::StatusOr<SiteResult> DecodeSite(const SafetensorsFile& file, Site s, const json& entry) {
  SiteResult site;
  const std::string prefix(SiteName(s));
  site.record = RecordFromJson(entry.at("record"));
  site.report = SiteReportFromJson(entry.at("report"));
  for (const json& linear : entry.at("linears")) site.linears.push_back(LinearFromJson(linear));
  for (const json& packed_json : entry.at("packed")) {
    PackedLinear packed;
    packed.weight_sqnr_db = ReadNumber(packed_json.at("weight_sqnr_db"));
    packed.max_error_steps = ReadNumber(packed_json.at("max_error_steps"));
    for (const json& name_json : packed_json.at("tensors")) {
      const std::string name = name_json.get<std::string>();
      const TensorInfo* info = file.Find(name);
      if (info == nullptr) return absl::InvalidArgumentError(absl::StrCat(name, ": missing"));
      packed.specs.push_back({name, info->dtype, info->shape});
      CATQ_ASSIGN_OR_RETURN(std::string bytes, TensorBytes(file, name, info->dtype));
      packed.bytes.push_back(std::move(bytes));
    }
    site.packed.push_back(std::move(packed));
  }
  for (const json& name_json : entry.at("online")) {
    const std::string name = name_json.get<std::string>();
    const std::string tensor_name = absl::StrCat(prefix, ".online.", name);
    CATQ_ASSIGN_OR_RETURN(std::string bytes, TensorBytes(file, tensor_name, DType::kF32));
    TransformTensorF32 tensor;
    tensor.shape = file.Find(tensor_name)->shape;
    tensor.values.resize(bytes.size() / sizeof(float));
    std::memcpy(tensor.values.data(), bytes.data(), bytes.size());
    OnlineTensor(site.online, name) = std::move(tensor);
  }
  if (entry.at("folded").get<bool>()) {
    const std::string tensor_name = absl::StrCat(prefix, ".folded_diagonal");
    CATQ_ASSIGN_OR_RETURN(std::string bytes, TensorBytes(file, tensor_name, DType::kF64));
    Eigen::VectorXd t(static_cast<int64_t>(bytes.size() / sizeof(double)));
    std::memcpy(t.data(), bytes.data(), bytes.size());
    site.folded_diagonal = std::move(t);
  }
  if (site.packed.size() != site.linears.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, ": ", site.packed.size(), " packed linears for ", site.linears.size(), " reports"));
  }
  return site;
}

absl::StatusOr<LayerResult> Decode(const SafetensorsFile& file) {
  auto it = file.metadata().find(kMetadataKey);
  if (it == file.metadata().end()) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", kMetadataKey, "' is missing"));
  }
  const json description = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (description.is_discarded() || !description.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", kMetadataKey, "' is not JSON"));
  }
  // nlohmann's at() and get() throw on a missing key or a wrong type; they
  // stay inside this function.
  try {
    LayerResult result;
    result.layer = description.at("layer").get<int64_t>();
    result.read_seconds = ReadNumber(description.at("read_seconds"));
    result.quantize_seconds = ReadNumber(description.at("quantize_seconds"));
    const json& sites = description.at("sites");
    if (!sites.is_array() || sites.size() != kAllSites.size()) {
      return absl::InvalidArgumentError("sites: expected one entry per site");
    }
    for (Site s : kAllSites) {
      CATQ_ASSIGN_OR_RETURN(SiteResult site, DecodeSite(file, s, sites[static_cast<size_t>(s)]));
      result.sites.push_back(std::move(site));
    }
    return result;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("metadata '", kMetadataKey, "': ", e.what()));
  }
}

}  // namespace

absl::Status WriteLayerResult(Env* env, const std::string& path, const LayerResult& result) {
  if (result.sites.size() != kAllSites.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer ", result.layer, ": ", result.sites.size(), " sites, expected ", kAllSites.size()));
  }
  Encoded encoded = Encode(result);
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                        SafetensorsWriter::Create(env, path, encoded.specs,
                                                  {{kMetadataKey, encoded.description.dump()}}));
  for (const std::string& bytes : encoded.bytes) CATQ_RETURN_IF_ERROR(writer->Append(bytes));
  return writer->Finish();
}

absl::StatusOr<LayerResult> ReadLayerResult(Env* env, const std::string& path) {
  CATQ_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path, env));
  absl::StatusOr<LayerResult> result = Decode(file);
  if (!result.ok()) return Prefix(path, result.status());
  return result;
}

}  // namespace catq
