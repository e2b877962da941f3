#include "core/output/gptq_export.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/eval/quantized_model.h"
#include "core/eval/stored_quantization.h"
#include "core/io/staged_directory.h"
#include "core/output/output_assembler.h"
#include "core/output/output_names.h"
#include "core/output/output_plan.h"
#include "core/output/packed_linear.h"
#include "core/output/site_quantizer.h"
#include "core/quant/gptq_pack.h"
#include "core/tensor/half.h"
#include "core/tensor/safetensors_names.h"
#include "core/tensor/sharded_writer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

constexpr int kGptqBits = 4;

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

template <typename T>
std::string BytesOf(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// One entry of the export, in the source's tensor order: a tensor copied as
// is, or a packed linear rewritten (at the place of its weight_packed).
struct ExportItem {
  // A copied tensor: its shard and entry; null for a linear.
  const SafetensorsFile* file = nullptr;
  const TensorInfo* copy = nullptr;
  // A linear: its module name and [out, in].
  std::string module;
  MatrixShape shape;
};

std::vector<TensorSpec> GptqLinearSpecs(absl::string_view module, MatrixShape shape,
                                        const WeightQuantOptions& weights) {
  const GptqWeightNames names = GptqWeightNamesFor(module);
  const int64_t groups = NumGroups(shape.cols, weights.group_size);
  return {
      {names.qweight, DType::kI32, {(shape.cols + 7) / 8, shape.rows}},
      {names.qzeros, DType::kI32, {groups, (shape.rows + 7) / 8}},
      {names.scales, DType::kF16, {groups, shape.rows}},
      {names.g_idx, DType::kI32, {shape.cols}},
  };
}

// FailedPrecondition naming the first site (layer order, then kAllSites
// order) whose transform runs online.
absl::Status CheckNoOnlineSite(const StoredQuantization& stored) {
  for (size_t layer = 0; layer < stored.sites.size(); ++layer) {
    for (Site site : kAllSites) {
      const StoredSite& s = stored.site(static_cast<int64_t>(layer), site);
      if (!s.online) continue;
      return absl::FailedPreconditionError(absl::StrCat(
          SiteKey(static_cast<int>(layer), SiteName(site)), ": has an online transform (",
          s.hadamard ? "Hadamard mixing" : "no mixing", ", block size ", s.block_size,
          ") that a GPTQ loader would not apply; only outputs whose quantization_config.catq."
          "sites are all \"online\": false can be exported in GPTQ layout"));
    }
  }
  return absl::OkStatus();
}

// Every tensor of the output in order, each packed linear once, at its
// weight_packed. FailedPrecondition for a linear stored in float.
absl::StatusOr<std::vector<ExportItem>> PlanExport(const QuantizedModel& model) {
  const LlamaConfig& config = model.config();
  absl::flat_hash_map<std::string, ExportItem> linear_at;  // weight_packed name -> item
  absl::flat_hash_set<std::string> skipped;                // The other packed tensors.
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      const std::string module = LinearModuleName(layer, kind);
      if (!model.is_packed(layer, kind)) {
        return absl::FailedPreconditionError(absl::StrCat(
            LinearWeightName(layer, kind),
            ": stored in float, not quantized; a GPTQ checkpoint holds every linear quantized"));
      }
      const PackedWeightNames names = PackedWeightNamesFor(module);
      ExportItem item;
      item.module = module;
      item.shape = LinearShape(config, kind);
      linear_at[names.packed] = std::move(item);
      skipped.insert(names.scale);
      skipped.insert(names.shape);
      skipped.insert(names.zero_point);
    }
  }
  std::vector<ExportItem> items;
  for (const SafetensorsFile& file : model.model().tensors().files()) {
    for (const TensorInfo& info : file.tensors()) {  // Sorted by offset: write order.
      if (auto it = linear_at.find(info.name); it != linear_at.end()) {
        items.push_back(it->second);
      } else if (!skipped.contains(info.name)) {
        ExportItem item;
        item.file = &file;
        item.copy = &info;
        items.push_back(std::move(item));
      }
    }
  }
  return items;
}

// The shard limit: the caller's, else one file for a one-file source, else
// the source's largest shard.
uint64_t MaxShardBytes(const SafetensorsDir& source, const GptqExportOptions& options) {
  if (options.max_shard_bytes > 0) return options.max_shard_bytes;
  if (source.files().size() <= 1) return std::numeric_limits<uint64_t>::max();
  uint64_t largest = 1;
  for (const SafetensorsFile& file : source.files()) {
    uint64_t bytes = 0;
    for (const TensorInfo& info : file.tensors()) bytes += info.NumBytes();
    largest = std::max(largest, bytes);
  }
  return largest;
}

// FailedPrecondition naming `<m>.weight_zero_point` for a zero point of -8,
// which GPTQ v1 cannot store (its nibble would be zero_u - 1 = -1).
absl::Status CheckGptqZeroPoints(absl::string_view module, const QuantizedWeight& qw) {
  if (qw.options.symmetric) return absl::OkStatus();
  const int64_t groups = qw.groups();
  const int min_zero = -(1 << (qw.options.bits - 1));
  for (int64_t r = 0; r < qw.rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      if (qw.zeros[r * groups + g] != min_zero) continue;
      return absl::FailedPreconditionError(absl::StrCat(
          PackedWeightNamesFor(module).zero_point, ": output row ", r, ", group ", g,
          " has zero point ", min_zero,
          " (unsigned 0: the group's values are all >= 0), which GPTQ v1 cannot store (it "
          "stores the unsigned zero point minus one); quantize with symmetric weights to export"));
    }
  }
  return absl::OkStatus();
}

// The F16 bytes of GPTQ's scales [groups, out]; FailedPrecondition naming
// `<m>.weight_scale` for a value F16 does not hold exactly.
absl::StatusOr<std::string> GptqScaleBytes(absl::string_view module, const GptqInt4& gptq) {
  std::vector<uint16_t> halves(gptq.scales.size());
  for (int64_t g = 0; g < gptq.groups; ++g) {
    for (int64_t o = 0; o < gptq.rows; ++o) {
      const float scale = gptq.scales[g * gptq.rows + o];
      const uint16_t half = FloatToHalf(scale);
      if (HalfToFloat(half) != scale) {
        return absl::FailedPreconditionError(
            absl::StrCat(PackedWeightNamesFor(module).scale, "[", o, ", ", g, "] = ", scale,
                         " is not an F16 value, and GPTQ stores F16 scales; quantize with "
                         "scale_dtype f16 (or bf16 within F16's range) to export"));
      }
      halves[g * gptq.rows + o] = half;
    }
  }
  return BytesOf(halves);
}

// Reads linear `item` from the output, packs it in GPTQ layout and appends
// its four tensors.
absl::Status WriteGptqLinear(const QuantizedModel& model, const WeightQuantOptions& weights,
                             const ExportItem& item, ShardedSafetensorsWriter& writer) {
  CATQ_ASSIGN_OR_RETURN(QuantizedWeight qw,
                        ReadPackedLinear(model.model().tensors(), item.module, weights));
  CATQ_RETURN_IF_ERROR(CheckGptqZeroPoints(item.module, qw));
  absl::StatusOr<GptqInt4> gptq = PackInt4Gptq(qw);
  CATQ_RETURN_IF_ERROR(Prefix(item.module, gptq.status()));
  qw = QuantizedWeight();  // Memory: the packed form only from here.
  CATQ_ASSIGN_OR_RETURN(std::string scales, GptqScaleBytes(item.module, *gptq));
  CATQ_RETURN_IF_ERROR(writer.Append(BytesOf(gptq->qweight)));
  CATQ_RETURN_IF_ERROR(writer.Append(BytesOf(gptq->qzeros)));
  CATQ_RETURN_IF_ERROR(writer.Append(scales));
  return writer.Append(BytesOf(gptq->g_idx));
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

}  // namespace

GptqWeightNames GptqWeightNamesFor(absl::string_view module) {
  return {absl::StrCat(module, ".qweight"), absl::StrCat(module, ".qzeros"),
          absl::StrCat(module, ".scales"), absl::StrCat(module, ".g_idx")};
}

nlohmann::json GptqQuantizationConfig(const WeightQuantOptions& weights) {
  return {
      {"quant_method", "gptq"},
      {"bits", kGptqBits},
      {"group_size", weights.group_size > 0 ? weights.group_size : -1},
      {"desc_act", false},
      {"sym", weights.symmetric},
      {"checkpoint_format", "gptq"},
  };
}

absl::Status CheckRecipeGptqExportable(const Recipe& recipe) {
  if (recipe.method == Method::kHadamard ||
      (recipe.method == Method::kCat && !RecipeTransformIsDiagonal(recipe))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "recipe.method: ", MethodName(recipe.method),
        recipe.method == Method::kCat
            ? absl::StrCat(" with block_size ", recipe.block_size,
                           recipe.cat_hadamard ? " and Hadamard mixing" : "")
            : std::string(),
        " stores an online transform, which a GPTQ checkpoint cannot hold; export rtn, "
        "smoothquant or cat with block_size 1 and no Hadamard mixing"));
  }
  if (recipe.weights.bits != kGptqBits) {
    return absl::InvalidArgumentError(absl::StrCat("recipe.weights.bits: ", recipe.weights.bits,
                                                   "; the GPTQ export writes 4-bit weights only"));
  }
  for (size_t i = 0; i < recipe.site_settings.size(); ++i) {
    const int bits = recipe.site_settings[i].weight_bits;
    if (bits != 0 && bits != kGptqBits) {
      return absl::InvalidArgumentError(
          absl::StrCat("recipe.site_settings[", i, "].weight_bits: ", bits,
                       "; the GPTQ export writes 4-bit weights only"));
    }
  }
  if (recipe.scale_dtype != DType::kF16 && recipe.scale_dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("recipe.scale_dtype: ", DTypeName(recipe.scale_dtype),
                     " scales are not F16 values, and GPTQ stores F16 scales; use f16"));
  }
  return absl::OkStatus();
}

absl::Status CheckGptqExportable(const LlamaModel& model, const Recipe& recipe) {
  CATQ_RETURN_IF_ERROR(CheckRecipeGptqExportable(recipe));
  if (!RecipeTransformIsDiagonal(recipe)) return absl::OkStatus();  // rtn: no transform.
  for (int64_t layer = 0; layer < model.config().num_hidden_layers; ++layer) {
    for (Site site : kAllSites) {
      CATQ_ASSIGN_OR_RETURN(const bool folded, SiteIsFolded(model, recipe, layer, site));
      if (folded) continue;
      return absl::FailedPreconditionError(absl::StrCat(
          SiteKey(static_cast<int>(layer), SiteName(site)), ": the ", MethodName(recipe.method),
          " diagonal would stay online, which a GPTQ checkpoint cannot hold"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<GptqExportSummary> ExportGptqLayout(Env* env, const std::string& output_dir,
                                                   const std::string& export_dir,
                                                   const GptqExportOptions& options) {
  // The sites first: an output with online transforms is refused before its
  // transforms are built (QuantizedModel::Open builds them).
  CATQ_ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(env, output_dir));
  CATQ_ASSIGN_OR_RETURN(StoredQuantization stored,
                        ParseStoredQuantization(config, JoinPath(output_dir, kConfigFileName)));
  CATQ_RETURN_IF_ERROR(CheckNoOnlineSite(stored));
  if (stored.weights.bits != kGptqBits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weights.bits: ", stored.weights.bits, " (", kConfigFileName,
        " quantization_config.config_groups.group_0.weights.num_bits); the GPTQ export writes "
        "4-bit weights only"));
  }
  if (stored.mixed_precision) {
    return absl::InvalidArgumentError(
        absl::StrCat("config_groups: ", kConfigFileName,
                     " quantization_config has bits per module (mixed precision); the GPTQ "
                     "export writes one 4-bit scheme only"));
  }
  CATQ_ASSIGN_OR_RETURN(QuantizedModel model, QuantizedModel::Open(output_dir, env));
  const WeightQuantOptions& weights = model.quantization().weights;
  CATQ_ASSIGN_OR_RETURN(std::vector<ExportItem> items, PlanExport(model));

  GptqExportSummary summary;
  summary.weights = weights;
  std::vector<TensorSpec> specs;
  for (const ExportItem& item : items) {
    if (item.copy != nullptr) {
      specs.push_back({item.copy->name, item.copy->dtype, item.copy->shape});
    } else {
      for (TensorSpec& spec : GptqLinearSpecs(item.module, item.shape, weights)) {
        specs.push_back(std::move(spec));
      }
    }
  }

  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<StagedDirectory> staged,
                        StagedDirectory::Create(env, export_dir, options.replace));
  ShardedSafetensorsWriter::Options writer_options;
  writer_options.max_shard_bytes = MaxShardBytes(model.model().tensors(), options);
  writer_options.single_file_name = kSafetensorsSingleFileName;
  writer_options.metadata = {{"format", "pt"}, {"producer", "catq"}};
  CATQ_ASSIGN_OR_RETURN(
      std::unique_ptr<ShardedSafetensorsWriter> writer,
      ShardedSafetensorsWriter::Create(env, staged->path(), std::move(specs), writer_options));
  for (const ExportItem& item : items) {
    if (item.copy != nullptr) {
      CATQ_RETURN_IF_ERROR(writer->Append(item.file->View(*item.copy).bytes()));
      ++summary.copied_tensors;
    } else {
      CATQ_RETURN_IF_ERROR(WriteGptqLinear(model, weights, item, *writer));
      ++summary.linears;
    }
  }
  CATQ_RETURN_IF_ERROR(writer->Finish());
  summary.data_bytes = writer->data_size();

  nlohmann::json config_json = config.original;
  config_json["quantization_config"] = GptqQuantizationConfig(weights);
  CATQ_RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(staged->path(), kConfigFileName),
                                           config_json.dump(2) + "\n"));
  CATQ_RETURN_IF_ERROR(WriteFileAtomically(env,
                                           JoinPath(staged->path(), kGptqQuantizeConfigFileName),
                                           GptqQuantizationConfig(weights).dump(2) + "\n"));
  CATQ_RETURN_IF_ERROR(CopySideFiles(env, output_dir, staged->path()));
  CATQ_ASSIGN_OR_RETURN(summary.files, ListFilesRecursively(env, staged->path()));
  CATQ_RETURN_IF_ERROR(staged->Publish());
  return summary;
}

absl::Status ExportGptqLayout(Env* env, const std::string& output_dir,
                              const std::string& export_dir) {
  return ExportGptqLayout(env, output_dir, export_dir, GptqExportOptions()).status();
}

}  // namespace catq
