#include "core/output/output_assembler.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/output/output_names.h"
#include "core/output/output_plan.h"
#include "core/output/quantization_config.h"
#include "core/tensor/finite_check.h"
#include "core/tensor/float_encoding.h"
#include "core/tensor/safetensors_names.h"
#include "core/tensor/sharded_writer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

double SecondsSince(Env* env, uint64_t start_micros) {
  return static_cast<double>(env->NowMicros() - start_micros) * 1e-6;
}

std::string TensorSuffix(absl::string_view name) {
  const size_t dot = name.rfind('.');
  return std::string(dot == absl::string_view::npos ? name : name.substr(dot));
}

// The bytes of the stored online tensor that `spec` names, after checking
// that the solved transform has it with that shape.
absl::StatusOr<std::string> OnlineTensorBytes(const SiteTransformTensors& online,
                                              const TensorSpec& spec) {
  const std::string suffix = TensorSuffix(spec.name);
  const std::optional<TransformTensorF32>* tensor = nullptr;
  if (suffix == ".blocks") tensor = &online.blocks;
  if (suffix == ".blocks_tail") tensor = &online.blocks_tail;
  if (suffix == ".rot_q") tensor = &online.rot_q;
  if (tensor == nullptr || !tensor->has_value() || (*tensor)->shape != spec.shape) {
    return absl::InternalError(
        absl::StrCat(spec.name, ": the solved transform does not have the planned tensor"));
  }
  const std::vector<float>& values = (*tensor)->values;
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

// Streams the plan's tensors into `writer`, one item at a time, asking the
// source for a layer's results when its first item needs them.
class PlanWriter {
 public:
  PlanWriter(Env* env, const LlamaModel& model, const Recipe& recipe,
             const LayerResultSource& source, const AssembleOptions& options,
             QuantizationReport* report)
      : env_(env),
        model_(model),
        recipe_(recipe),
        source_(source),
        options_(options),
        report_(report) {}

  absl::Status WriteAll(const OutputPlan& plan, ShardedSafetensorsWriter& writer) {
    total_linears_ = plan.NumPackedLinears();
    for (const OutputItem& item : plan.items) {
      CATQ_RETURN_IF_ERROR(WriteItem(item, writer));
    }
    return absl::OkStatus();
  }

  // One record per site of every layer, in layer and site order.
  std::vector<SiteRecord> TakeRecords() && { return std::move(records_); }

 private:
  absl::Status WriteItem(const OutputItem& item, ShardedSafetensorsWriter& writer) {
    switch (item.source) {
      case OutputSource::kCopy: {
        // Copied as is, so checked here as the quantized linears are when
        // read: a NaN or infinity fails the job rather than reach the output.
        CATQ_ASSIGN_OR_RETURN(TensorView view, model_.Get(item.name));
        CATQ_RETURN_IF_ERROR(CheckFiniteTensor(view));
        CATQ_RETURN_IF_ERROR(writer.Append(view.bytes()));
        // Read once (the embedding alone is 500 MB on 7B and 1B shapes).
        return model_.tensors().ReleaseTensor(item.name);
      }
      case OutputSource::kUnitGain: {
        const std::vector<float> ones(item.specs[0].shape[0], 1.0f);
        CATQ_ASSIGN_OR_RETURN(std::string bytes, EncodeFloats(ones, item.specs[0].dtype));
        return writer.Append(bytes);
      }
      case OutputSource::kPackedLinear:
        return WriteLinear(item, writer);
      case OutputSource::kOnlineTransform:
        return WriteOnlineTransform(item, writer);
      case OutputSource::kFoldedGain:
        return WriteFoldedGain(item, writer);
    }
    return absl::InternalError("unknown output source");
  }

  absl::Status WriteLinear(const OutputItem& item, ShardedSafetensorsWriter& writer) {
    CATQ_ASSIGN_OR_RETURN(const SiteResult* site, SiteFor(item.layer, SiteOfLinear(item.linear)));
    const std::vector<LinearKind> kinds = LinearsOfSite(SiteOfLinear(item.linear));
    const size_t index =
        static_cast<size_t>(std::find(kinds.begin(), kinds.end(), item.linear) - kinds.begin());
    if (index >= site->packed.size() || index >= site->linears.size()) {
      return absl::InternalError(absl::StrCat(item.name, ": missing from the layer's results"));
    }
    const uint64_t start = env_->NowMicros();
    for (const std::string& bytes : site->packed[index].bytes) {
      CATQ_RETURN_IF_ERROR(writer.Append(bytes));
    }
    report_->write_seconds += SecondsSince(env_, start);
    const LinearReport& linear = site->linears[index];
    report_->linears.push_back(linear);
    if (options_.on_linear) {
      options_.on_linear(linear, static_cast<int64_t>(report_->linears.size()), total_linears_);
    }
    return absl::OkStatus();
  }

  absl::Status WriteOnlineTransform(const OutputItem& item, ShardedSafetensorsWriter& writer) {
    CATQ_ASSIGN_OR_RETURN(const SiteResult* site, SiteFor(item.layer, item.site));
    for (const TensorSpec& spec : item.specs) {
      CATQ_ASSIGN_OR_RETURN(std::string bytes, OnlineTensorBytes(site->online, spec));
      CATQ_RETURN_IF_ERROR(writer.Append(bytes));
    }
    return absl::OkStatus();
  }

  // gain * t in F32 (the plan stores a folded gain in F32 whatever the
  // model's norm dtype), or t alone when the gain itself went into the
  // weights.
  absl::Status WriteFoldedGain(const OutputItem& item, ShardedSafetensorsWriter& writer) {
    CATQ_ASSIGN_OR_RETURN(const SiteResult* site, SiteFor(item.layer, item.site));
    if (!site->folded_diagonal.has_value() || item.specs[0].dtype != DType::kF32) {
      return absl::InternalError(absl::StrCat(item.name, ": planned as folded, but the ",
                                              SiteName(item.site), " transform was not"));
    }
    CATQ_ASSIGN_OR_RETURN(std::vector<float> model_gain, model_.GetFloat(item.name));
    CATQ_ASSIGN_OR_RETURN(std::vector<float> gain, FoldedNormGain(item.name, std::move(model_gain),
                                                                  *site->folded_diagonal, recipe_));
    return writer.Append(
        std::string(reinterpret_cast<const char*>(gain.data()), gain.size() * sizeof(float)));
  }

  // The results of `layer`, asked for on first use; the previous layer's are
  // dropped then (memory stays one layer).
  absl::StatusOr<const SiteResult*> SiteFor(int64_t layer, Site site) {
    if (!cached_.has_value() || cached_->layer != layer) {
      cached_.reset();
      CATQ_ASSIGN_OR_RETURN(LayerResult result, source_(layer));
      if (result.layer != layer || result.sites.size() != kAllSites.size()) {
        return absl::InternalError(absl::StrCat("layer ", layer, ": the source returned layer ",
                                                result.layer, " with ", result.sites.size(),
                                                " sites"));
      }
      // A layer met again (items out of layer order) is recorded once.
      if (recorded_layers_.insert(layer).second) Record(result);
      cached_ = std::move(result);
    }
    return &cached_->site(site);
  }

  void Record(const LayerResult& result) {
    report_->read_seconds += result.read_seconds;
    report_->quantize_seconds += result.quantize_seconds;
    for (Site site : kAllSites) {
      records_.push_back(result.site(site).record);
      report_->sites.push_back(result.site(site).report);
    }
  }

  Env* const env_;
  const LlamaModel& model_;
  const Recipe& recipe_;
  const LayerResultSource& source_;
  const AssembleOptions& options_;
  QuantizationReport* const report_;
  int64_t total_linears_ = 0;
  std::optional<LayerResult> cached_;
  std::vector<SiteRecord> records_;
  std::set<int64_t> recorded_layers_;
};

// config.json of the output: the input's own JSON plus quantization_config.
std::string OutputConfigJson(const LlamaConfig& config, const Recipe& recipe,
                             const std::vector<SiteRecord>& sites) {
  nlohmann::json json = config.original;
  json["quantization_config"] = BuildQuantizationConfig(recipe, sites, config.head_dim());
  return json.dump(2) + "\n";
}

absl::Status CopySideFiles(Env* env, const std::string& from, const std::string& to) {
  for (const char* name : kCopiedSideFiles) {
    const std::string source = JoinPath(from, name);
    if (!env->FileExists(source)) continue;
    CATQ_ASSIGN_OR_RETURN(std::string bytes, env->ReadFile(source));
    CATQ_RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(to, name), bytes));
  }
  return absl::OkStatus();
}

uint64_t InputBytes(const LlamaModel& model) {
  uint64_t total = 0;
  for (const SafetensorsFile& file : model.tensors().files()) {
    for (const TensorInfo& info : file.tensors()) total += info.NumBytes();
  }
  return total;
}

}  // namespace

QuantizationReport NewQuantizationReport(const LlamaModel& model, const std::string& model_dir,
                                         const Recipe& recipe) {
  QuantizationReport report;
  report.model_dir = model_dir;
  const std::filesystem::path path = std::filesystem::path(model_dir).lexically_normal();
  report.model_name = path.filename().string();
  if (report.model_name.empty()) report.model_name = path.parent_path().filename().string();
  report.num_layers = model.config().num_hidden_layers;
  report.recipe = recipe;
  report.input_bytes = InputBytes(model);
  return report;
}

absl::Status AssembleOutput(Env* env, const LlamaModel& model, const std::string& model_dir,
                            const Recipe& recipe, const LayerResultSource& source,
                            const AssembleOptions& options, const std::string& dir,
                            QuantizationReport* report) {
  const uint64_t start = options.start_micros != 0 ? options.start_micros : env->NowMicros();
  CATQ_ASSIGN_OR_RETURN(OutputPlan plan, PlanOutput(model, recipe));
  ShardedSafetensorsWriter::Options writer_options;
  writer_options.max_shard_bytes = options.max_shard_bytes;
  writer_options.single_file_name = kSafetensorsSingleFileName;
  writer_options.metadata = {{"format", "pt"}, {"producer", "catq"}};
  CATQ_ASSIGN_OR_RETURN(
      std::unique_ptr<ShardedSafetensorsWriter> writer,
      ShardedSafetensorsWriter::Create(env, dir, plan.TensorSpecs(), writer_options));
  PlanWriter plan_writer(env, model, recipe, source, options, report);
  CATQ_RETURN_IF_ERROR(plan_writer.WriteAll(plan, *writer));
  const std::vector<SiteRecord> records = std::move(plan_writer).TakeRecords();
  for (const SiteRecord& record : records) {
    report->online_sites += record.online ? 1 : 0;
    report->folded_sites += record.folded ? 1 : 0;
  }

  const uint64_t finish_start = env->NowMicros();
  CATQ_RETURN_IF_ERROR(writer->Finish());
  report->output_bytes = writer->data_size();
  report->shard_files = writer->file_names();
  CATQ_RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(dir, kConfigFileName),
                                           OutputConfigJson(model.config(), recipe, records)));
  CATQ_RETURN_IF_ERROR(CopySideFiles(env, model_dir, dir));
  report->write_seconds += SecondsSince(env, finish_start);
  report->total_seconds = SecondsSince(env, start);
  return WriteFileAtomically(env, JoinPath(dir, kReportFileName),
                             QuantizationReportToJson(*report).dump(2) + "\n");
}

}  // namespace catq
