#include "core/output/in_process_quantizer.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/io/staged_directory.h"
#include "core/model/llama_model.h"
#include "core/output/calibration_data.h"
#include "core/output/output_names.h"
#include "core/output/output_plan.h"
#include "core/output/packed_linear.h"
#include "core/output/quantization_config.h"
#include "core/output/site_quantizer.h"
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

absl::Status CheckRecipeSupported(const Recipe& recipe, const InProcessOptions& options) {
  const CalibrationInput& calibration = options.calibration;
  CATQ_RETURN_IF_ERROR(Prefix("recipe", recipe.Validate()));
  if (!calibration.text_path.empty() && !calibration.statistics_path.empty()) {
    return absl::InvalidArgumentError(
        "calibration: give a text file or a statistics file, not both");
  }
  if (RecipeNeedsStatistics(recipe) && calibration.empty() && options.calibration_data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "recipe.method '", MethodName(recipe.method), "' with weight quantizer '",
        WeightQuantizerName(recipe.weight_quantizer),
        "' needs calibration: a text file (--calib-text) or statistics (--calib-stats)"));
  }
  return absl::OkStatus();
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

// Streams the plan's tensors into `writer`, one item at a time, running the
// site tasks of a layer when its first item needs them.
class PlanWriter {
 public:
  PlanWriter(Env* env, const LlamaModel& model, const Recipe& recipe,
             const InProcessOptions& options, const CalibrationData& inputs,
             QuantizationReport* report)
      : env_(env),
        model_(model),
        recipe_(recipe),
        options_(options),
        inputs_(inputs),
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
      case OutputSource::kOnlineTransform:
        return WriteOnlineTransform(item, writer);
      case OutputSource::kFoldedGain:
        return WriteFoldedGain(item, writer);
    }
    return absl::InternalError("unknown output source");
  }

  absl::Status WriteLinear(const OutputItem& item, ShardedSafetensorsWriter& writer) {
    CATQ_ASSIGN_OR_RETURN(SiteResult * site, SiteFor(item.layer, SiteOfLinear(item.linear)));
    const std::vector<LinearKind> kinds = LinearsOfSite(SiteOfLinear(item.linear));
    const size_t index =
        static_cast<size_t>(std::find(kinds.begin(), kinds.end(), item.linear) - kinds.begin());
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
    CATQ_ASSIGN_OR_RETURN(SiteResult * site, SiteFor(item.layer, item.site));
    for (const TensorSpec& spec : item.specs) {
      CATQ_ASSIGN_OR_RETURN(std::string bytes, OnlineTensorBytes(site->online, spec));
      CATQ_RETURN_IF_ERROR(writer.Append(bytes));
    }
    return absl::OkStatus();
  }

  // gain * t in F32 (SiteFoldsDiagonal folds only into F32 norms), or t
  // alone when the gain itself went into the weights.
  absl::Status WriteFoldedGain(const OutputItem& item, ShardedSafetensorsWriter& writer) {
    CATQ_ASSIGN_OR_RETURN(SiteResult * site, SiteFor(item.layer, item.site));
    if (!site->folded_diagonal.has_value() || item.specs[0].dtype != DType::kF32) {
      return absl::InternalError(absl::StrCat(item.name, ": planned as folded, but the ",
                                              SiteName(item.site), " transform was not"));
    }
    CATQ_ASSIGN_OR_RETURN(std::vector<float> gain, model_.GetFloat(item.name));
    const Eigen::VectorXd& t = *site->folded_diagonal;
    for (size_t j = 0; j < gain.size(); ++j) {
      const double g = recipe_.fold_norm_gains ? 1.0 : gain[j];
      gain[j] = static_cast<float>(g * t[static_cast<int64_t>(j)]);
    }
    return writer.Append(
        std::string(reinterpret_cast<const char*>(gain.data()), gain.size() * sizeof(float)));
  }

  // The results of `layer`'s four sites, computed on first use; the previous
  // layer's are dropped then (memory stays one layer).
  absl::StatusOr<SiteResult*> SiteFor(int64_t layer, Site site) {
    if (layer != cached_layer_) CATQ_RETURN_IF_ERROR(QuantizeLayer(layer));
    return &cached_[static_cast<size_t>(site)];
  }

  // The sites of a layer, producers' folds first: attn_out's and mlp_out's
  // diagonals scale the rows of v_proj and up_proj, which attn_in and mlp_in
  // then transform and quantize.
  absl::Status QuantizeLayer(int64_t layer) {
    cached_.clear();
    cached_.resize(kAllSites.size());
    cached_layer_ = -1;
    // A layer met again (items out of layer order) is recomputed, the same
    // bytes, but recorded once.
    const bool first_time = recorded_layers_.insert(layer).second;
    for (Site site : {Site::kAttnOut, Site::kMlpOut, Site::kAttnIn, Site::kMlpIn}) {
      uint64_t start = env_->NowMicros();
      CATQ_ASSIGN_OR_RETURN(SiteWeights weights, ReadSiteWeights(model_, layer, site, recipe_));
      CATQ_ASSIGN_OR_RETURN(weights.fold_diagonal, SiteIsFolded(model_, recipe_, layer, site));
      CATQ_RETURN_IF_ERROR(ScaleFoldedRows(weights));
      report_->read_seconds += SecondsSince(env_, start);
      start = env_->NowMicros();
      const std::string key = SiteQualifiedName(layer, site);
      auto stats = inputs_.statistics.find(key);
      auto samples = inputs_.samples.find(key);
      CATQ_ASSIGN_OR_RETURN(
          SiteResult result,
          QuantizeSite(recipe_, weights,
                       stats == inputs_.statistics.end() ? nullptr : &stats->second,
                       samples == inputs_.samples.end() ? nullptr : &samples->second));
      report_->quantize_seconds += SecondsSince(env_, start);
      cached_[static_cast<size_t>(site)] = std::move(result);
    }
    if (first_time) {
      for (Site site : kAllSites) {
        records_.push_back(cached_[static_cast<size_t>(site)].record);
        report_->sites.push_back(cached_[static_cast<size_t>(site)].report);
      }
    }
    cached_layer_ = layer;
    return absl::OkStatus();
  }

  // v_proj's rows times attn_out's folded t (one KV head per query head, so
  // row j feeds channel j), up_proj's rows times mlp_out's.
  absl::Status ScaleFoldedRows(SiteWeights& weights) {
    const std::pair<Site, LinearKind> folds[] = {{Site::kAttnOut, LinearKind::kVProj},
                                                 {Site::kMlpOut, LinearKind::kUpProj}};
    for (const auto& [producer_site, kind] : folds) {
      const std::optional<Eigen::VectorXd>& t =
          cached_[static_cast<size_t>(producer_site)].folded_diagonal;
      if (!t.has_value()) continue;
      for (size_t i = 0; i < weights.kinds.size(); ++i) {
        if (weights.kinds[i] != kind) continue;
        if (weights.weights[i].rows() != t->size()) {
          return absl::InternalError(absl::StrCat(weights.modules[i], ": ", t->size(),
                                                  " folded scales for ", weights.weights[i].rows(),
                                                  " rows"));
        }
        weights.weights[i] = t->cast<float>().asDiagonal() * weights.weights[i];
      }
    }
    return absl::OkStatus();
  }

  Env* const env_;
  const LlamaModel& model_;
  const Recipe& recipe_;
  const InProcessOptions& options_;
  const CalibrationData& inputs_;
  QuantizationReport* const report_;
  int64_t total_linears_ = 0;
  int64_t cached_layer_ = -1;
  std::vector<SiteResult> cached_;  // by Site
  std::vector<SiteRecord> records_;
  std::set<int64_t> recorded_layers_;
};

// config.json of the output: the input's own JSON plus quantization_config.
std::string OutputConfigJson(const LlamaConfig& config, const Recipe& recipe,
                             const std::vector<SiteRecord>& sites) {
  nlohmann::json json = config.original;
  json["quantization_config"] = BuildQuantizationConfig(recipe, sites);
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
  CATQ_RETURN_IF_ERROR(CheckRecipeSupported(recipe, options));
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
  CalibrationData loaded;
  if (options.calibration_data != nullptr) {
    report.calibration.source = "preloaded";
    CATQ_RETURN_IF_ERROR(
        CheckStatisticsCover(model.config(), options.calibration_data->statistics));
  } else {
    CATQ_ASSIGN_OR_RETURN(loaded, LoadCalibration(env, model, model_dir, recipe,
                                                  options.calibration, &report.calibration));
  }
  const CalibrationData& inputs =
      options.calibration_data != nullptr ? *options.calibration_data : loaded;
  report.calibration_seconds = report.calibration.seconds;
  PlanWriter plan_writer(env, model, recipe, options, inputs, &report);
  CATQ_RETURN_IF_ERROR(plan_writer.WriteAll(plan, *writer));
  const std::vector<SiteRecord> records = std::move(plan_writer).TakeRecords();

  const uint64_t finish_start = env->NowMicros();
  CATQ_RETURN_IF_ERROR(writer->Finish());
  report.output_bytes = writer->data_size();
  report.shard_files = writer->file_names();
  CATQ_RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(staged->path(), kConfigFileName),
                                           OutputConfigJson(model.config(), recipe, records)));
  CATQ_RETURN_IF_ERROR(CopySideFiles(env, model_dir, staged->path()));
  report.write_seconds += SecondsSince(env, finish_start);
  report.total_seconds = SecondsSince(env, start);
  CATQ_RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(staged->path(), kReportFileName),
                                           QuantizationReportToJson(report).dump(2) + "\n"));
  CATQ_RETURN_IF_ERROR(staged->Publish());
  return report;
}

}  // namespace catq
