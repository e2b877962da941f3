#include "core/output/in_process_quantizer.h"

#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/io/staged_directory.h"
#include "core/model/llama_model.h"
#include "core/output/output_names.h"
#include "core/output/output_plan.h"
#include "core/output/packed_linear.h"
#include "core/output/quantization_config.h"
#include "core/tensor/float_encoding.h"
#include "core/tensor/safetensors_names.h"
#include "core/tensor/sharded_writer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

// Seconds elapsed on `env`'s clock since `start_micros`.
double SecondsSince(Env* env, uint64_t start_micros) {
  return static_cast<double>(env->NowMicros() - start_micros) * 1e-6;
}

// One activation site record per layer and site: RTN has no transform.
std::vector<SiteRecord> RtnSiteRecords(const LlamaConfig& config) {
  std::vector<SiteRecord> sites;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (Site site : kAllSites) {
      SiteRecord record;
      record.layer = static_cast<int>(layer);
      record.site = std::string(SiteName(site));
      sites.push_back(record);
    }
  }
  return sites;
}

absl::Status CheckRecipeSupported(const Recipe& recipe) {
  CATQ_RETURN_IF_ERROR(Prefix("recipe", recipe.Validate()));
  if (recipe.method != Method::kRtn) {
    return absl::UnimplementedError(
        absl::StrCat("recipe.method: '", MethodName(recipe.method),
                     "' needs calibration statistics and the CAT engine; the in-process path "
                     "supports 'rtn'"));
  }
  if (recipe.weight_quantizer != WeightQuantizer::kRtn) {
    return absl::UnimplementedError(
        "recipe.weight_quantizer: 'gptq' needs calibration statistics; use 'rtn'");
  }
  return absl::OkStatus();
}

// Streams the plan's tensors into `writer`, one item at a time.
class PlanWriter {
 public:
  PlanWriter(Env* env, const LlamaModel& model, const Recipe& recipe,
             const InProcessOptions& options, QuantizationReport* report)
      : env_(env), model_(model), recipe_(recipe), options_(options), report_(report) {}

  absl::Status WriteAll(const OutputPlan& plan, ShardedSafetensorsWriter& writer) {
    total_linears_ = plan.NumPackedLinears();
    for (const OutputItem& item : plan.items) {
      CATQ_RETURN_IF_ERROR(WriteItem(item, writer));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status WriteItem(const OutputItem& item, ShardedSafetensorsWriter& writer) {
    switch (item.source) {
      case OutputSource::kCopy: {
        CATQ_ASSIGN_OR_RETURN(TensorView view, model_.Get(item.name));
        return writer.Append(view.bytes());
      }
      case OutputSource::kUnitGain: {
        const std::vector<float> ones(item.specs[0].shape[0], 1.0f);
        CATQ_ASSIGN_OR_RETURN(std::string bytes, EncodeFloats(ones, item.specs[0].dtype));
        return writer.Append(bytes);
      }
      case OutputSource::kPackedLinear:
        return WriteLinear(item, writer);
    }
    return absl::InternalError("unknown output source");
  }

  // Reads the weight, folds the preceding norm's gain into its columns,
  // quantizes and packs it.
  absl::Status WriteLinear(const OutputItem& item, ShardedSafetensorsWriter& writer) {
    uint64_t start = env_->NowMicros();
    CATQ_ASSIGN_OR_RETURN(RowMatrixXf w, model_.LinearWeight(item.layer, item.linear));
    const Site site = SiteOfLinear(item.linear);
    const std::optional<NormKind> norm = SitePrecedingNorm(site);
    if (recipe_.fold_norm_gains && norm.has_value()) {
      CATQ_ASSIGN_OR_RETURN(std::vector<float> gain,
                            model_.GetFloat(NormWeightName(item.layer, *norm)));
      w *= Eigen::Map<const Eigen::VectorXf>(gain.data(), gain.size()).asDiagonal();
    }
    report_->read_seconds += SecondsSince(env_, start);

    start = env_->NowMicros();
    CATQ_ASSIGN_OR_RETURN(PackedLinear packed, QuantizeAndPackLinear(item.name, w, recipe_.weights,
                                                                     recipe_.scale_dtype));
    report_->quantize_seconds += SecondsSince(env_, start);

    start = env_->NowMicros();
    for (const std::string& bytes : packed.bytes) CATQ_RETURN_IF_ERROR(writer.Append(bytes));
    report_->write_seconds += SecondsSince(env_, start);

    LinearReport linear;
    linear.module = item.name;
    linear.layer = item.layer;
    linear.site = std::string(SiteName(site));
    linear.rows = w.rows();
    linear.cols = w.cols();
    linear.weight_sqnr_db = packed.weight_sqnr_db;
    linear.max_error_steps = packed.max_error_steps;
    report_->linears.push_back(linear);
    if (options_.on_linear) {
      options_.on_linear(linear, static_cast<int64_t>(report_->linears.size()), total_linears_);
    }
    return absl::OkStatus();
  }

  Env* const env_;
  const LlamaModel& model_;
  const Recipe& recipe_;
  const InProcessOptions& options_;
  QuantizationReport* const report_;
  int64_t total_linears_ = 0;
};

// config.json of the output: the input's own JSON plus quantization_config.
std::string OutputConfigJson(const LlamaConfig& config, const Recipe& recipe) {
  nlohmann::json json = config.original;
  json["quantization_config"] = BuildQuantizationConfig(recipe, RtnSiteRecords(config));
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

absl::StatusOr<QuantizationReport> QuantizeModelInProcess(Env* env, const std::string& model_dir,
                                                          const std::string& out_dir,
                                                          const Recipe& recipe,
                                                          const InProcessOptions& options) {
  const uint64_t start = env->NowMicros();
  CATQ_RETURN_IF_ERROR(CheckRecipeSupported(recipe));
  CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(model_dir, env));
  CATQ_ASSIGN_OR_RETURN(OutputPlan plan, PlanOutput(model, recipe));
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<StagedDirectory> staged,
                        StagedDirectory::Create(env, out_dir, options.replace));

  QuantizationReport report;
  report.model_dir = model_dir;
  report.model_name = std::filesystem::path(model_dir).lexically_normal().filename().string();
  if (report.model_name.empty()) {
    report.model_name =
        std::filesystem::path(model_dir).lexically_normal().parent_path().filename();
  }
  report.num_layers = model.config().num_hidden_layers;
  report.recipe = recipe;
  report.input_bytes = InputBytes(model);

  ShardedSafetensorsWriter::Options writer_options;
  writer_options.max_shard_bytes = options.max_shard_bytes;
  writer_options.single_file_name = kSafetensorsSingleFileName;
  writer_options.metadata = {{"format", "pt"}, {"producer", "catq"}};
  CATQ_ASSIGN_OR_RETURN(
      std::unique_ptr<ShardedSafetensorsWriter> writer,
      ShardedSafetensorsWriter::Create(env, staged->path(), plan.TensorSpecs(), writer_options));
  PlanWriter plan_writer(env, model, recipe, options, &report);
  CATQ_RETURN_IF_ERROR(plan_writer.WriteAll(plan, *writer));

  const uint64_t finish_start = env->NowMicros();
  CATQ_RETURN_IF_ERROR(writer->Finish());
  report.output_bytes = writer->data_size();
  report.shard_files = writer->file_names();
  CATQ_RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(staged->path(), kConfigFileName),
                                           OutputConfigJson(model.config(), recipe)));
  CATQ_RETURN_IF_ERROR(CopySideFiles(env, model_dir, staged->path()));
  report.write_seconds += SecondsSince(env, finish_start);
  report.total_seconds = SecondsSince(env, start);
  CATQ_RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(staged->path(), kReportFileName),
                                           QuantizationReportToJson(report).dump(2) + "\n"));
  CATQ_RETURN_IF_ERROR(staged->Publish());
  return report;
}

}  // namespace catq
