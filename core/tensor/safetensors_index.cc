#include "core/tensor/safetensors_index.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/tensor/internal/strict_json.h"
#include "core/tensor/internal/text.h"
#include "core/tensor/safetensors_names.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace catq {
namespace {

using nlohmann::json;
using tensor_internal::Quote;

absl::Status ParseTotalSize(const json& root, SafetensorsIndex& index) {
  auto metadata = root.find("metadata");
  if (metadata == root.end()) return absl::OkStatus();
  if (!metadata->is_object()) {
    return absl::InvalidArgumentError("index: \"metadata\" must be an object");
  }
  auto total = metadata->find("total_size");
  if (total == metadata->end()) return absl::OkStatus();
  if (!total->is_number_unsigned()) {
    return absl::InvalidArgumentError("index: metadata.total_size must be a non-negative integer");
  }
  index.total_size = total->get<uint64_t>();
  return absl::OkStatus();
}

absl::Status ParseWeightMap(const json& root, SafetensorsIndex& index) {
  auto weight_map = root.find("weight_map");
  if (weight_map == root.end() || !weight_map->is_object()) {
    return absl::InvalidArgumentError("index: \"weight_map\" must be present and an object");
  }
  for (const auto& [tensor, shard] : weight_map->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("index: weight_map ", Quote(tensor), ": shard must be a string"));
    }
    const std::string& name = shard.get_ref<const std::string&>();
    CATQ_RETURN_IF_ERROR(
        Prefix(absl::StrCat("index: weight_map ", Quote(tensor)), CheckShardFileName(name)));
    index.weight_map.emplace(tensor, name);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SafetensorsIndex> ParseSafetensorsIndex(absl::string_view text) {
  absl::StatusOr<json> root = tensor_internal::ParseStrictJson(text);
  if (!root.ok()) return Prefix("index", root.status());
  if (!root->is_object()) return absl::InvalidArgumentError("index: must be a JSON object");
  SafetensorsIndex index;
  CATQ_RETURN_IF_ERROR(ParseTotalSize(*root, index));
  CATQ_RETURN_IF_ERROR(ParseWeightMap(*root, index));
  return index;
}

absl::StatusOr<std::string> SerializeSafetensorsIndex(
    uint64_t total_size, const std::map<std::string, std::string>& weight_map) {
  json map = json::object();
  for (const auto& [tensor, shard] : weight_map) {
    if (tensor_internal::FindInvalidUtf8(tensor) != absl::string_view::npos) {
      return absl::InvalidArgumentError("index: a tensor name is not valid UTF-8");
    }
    CATQ_RETURN_IF_ERROR(
        Prefix(absl::StrCat("index: weight_map ", Quote(tensor)), CheckShardFileName(shard)));
    if (tensor_internal::FindInvalidUtf8(shard) != absl::string_view::npos) {
      return absl::InvalidArgumentError("index: a shard name is not valid UTF-8");
    }
    map[tensor] = shard;
  }
  json root = {{"metadata", {{"total_size", total_size}}}, {"weight_map", std::move(map)}};
  try {
    return root.dump(2) + "\n";
  } catch (const json::exception& e) {
    return absl::InternalError(absl::StrCat("serializing index: ", e.what()));
  }
}

absl::Status WriteSafetensorsIndex(Env* env, const std::string& dir, uint64_t total_size,
                                   const std::map<std::string, std::string>& weight_map) {
  CATQ_ASSIGN_OR_RETURN(std::string text, SerializeSafetensorsIndex(total_size, weight_map));
  return WriteFileAtomically(env, absl::StrCat(dir, "/", kSafetensorsIndexFileName), text);
}

}  // namespace catq
