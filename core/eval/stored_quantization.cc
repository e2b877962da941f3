#include "core/eval/stored_quantization.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/quant/activation_quant.h"
#include "core/quant/compressed_tensors_pack.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// A JSON object and the dotted path it sits at, so that every error names
// the field it is about.
struct Node {
  const nlohmann::json& json;
  std::string path;
};

absl::Status FieldError(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

absl::StatusOr<Node> Child(const Node& parent, const std::string& key) {
  const std::string path = parent.path.empty() ? key : absl::StrCat(parent.path, ".", key);
  if (!parent.json.is_object() || !parent.json.contains(key)) return FieldError(path, "missing");
  return Node{parent.json.at(key), path};
}

absl::StatusOr<Node> ChildObject(const Node& parent, const std::string& key) {
  CATQ_ASSIGN_OR_RETURN(Node child, Child(parent, key));
  if (!child.json.is_object()) return FieldError(child.path, "expected an object");
  return child;
}

absl::StatusOr<bool> GetBool(const Node& parent, const std::string& key) {
  CATQ_ASSIGN_OR_RETURN(Node child, Child(parent, key));
  if (!child.json.is_boolean()) return FieldError(child.path, "expected true or false");
  return child.json.get<bool>();
}

absl::StatusOr<int64_t> GetInt(const Node& parent, const std::string& key) {
  CATQ_ASSIGN_OR_RETURN(Node child, Child(parent, key));
  if (!child.json.is_number_integer()) return FieldError(child.path, "expected an integer");
  return child.json.get<int64_t>();
}

absl::StatusOr<std::string> GetString(const Node& parent, const std::string& key) {
  CATQ_ASSIGN_OR_RETURN(Node child, Child(parent, key));
  if (!child.json.is_string()) return FieldError(child.path, "expected a string");
  return child.json.get<std::string>();
}

absl::Status ExpectString(const Node& parent, const std::string& key, absl::string_view want) {
  CATQ_ASSIGN_OR_RETURN(std::string value, GetString(parent, key));
  if (value != want) {
    return FieldError(absl::StrCat(parent.path, ".", key),
                      absl::StrCat("'", value, "', expected '", want, "'"));
  }
  return absl::OkStatus();
}

// The weight scheme: 4-, 6- or 8-bit int, per group or per channel.
absl::StatusOr<WeightQuantOptions> ParseWeights(const Node& weights) {
  WeightQuantOptions options;
  CATQ_RETURN_IF_ERROR(ExpectString(weights, "type", "int"));
  CATQ_ASSIGN_OR_RETURN(const int64_t bits, GetInt(weights, "num_bits"));
  if (!IsExactPackedWidth(static_cast<int>(bits))) {
    return FieldError(
        absl::StrCat(weights.path, ".num_bits"),
        absl::StrCat(bits, "; catq's pack-quantized outputs hold 4-, 6- or 8-bit weights"));
  }
  options.bits = static_cast<int>(bits);
  CATQ_ASSIGN_OR_RETURN(options.symmetric, GetBool(weights, "symmetric"));
  CATQ_ASSIGN_OR_RETURN(const std::string strategy, GetString(weights, "strategy"));
  if (strategy == "channel") {
    options.group_size = kPerChannelGroupSize;
  } else if (strategy == "group") {
    CATQ_ASSIGN_OR_RETURN(const int64_t group_size, GetInt(weights, "group_size"));
    if (group_size < 1 || group_size > (int64_t{1} << 30)) {
      return FieldError(absl::StrCat(weights.path, ".group_size"),
                        absl::StrCat(group_size, " is outside [1, 2^30]"));
    }
    options.group_size = static_cast<int>(group_size);
  } else {
    return FieldError(absl::StrCat(weights.path, ".strategy"),
                      absl::StrCat("'", strategy, "', expected 'group' or 'channel'"));
  }
  return options;
}

// The activation scheme: null (float) or per-token dynamic int.
absl::Status ParseActivations(const Node& group, StoredQuantization& out) {
  out.activation_bits = kFloatActivationBits;
  CATQ_ASSIGN_OR_RETURN(Node activations, Child(group, "input_activations"));
  if (activations.json.is_null()) return absl::OkStatus();
  if (!activations.json.is_object()) {
    return FieldError(activations.path, "expected an object or null");
  }
  CATQ_RETURN_IF_ERROR(ExpectString(activations, "type", "int"));
  CATQ_RETURN_IF_ERROR(ExpectString(activations, "strategy", "token"));
  CATQ_ASSIGN_OR_RETURN(const int64_t bits, GetInt(activations, "num_bits"));
  if (bits != kFloatActivationBits && (bits < kMinActivationBits || bits > 8)) {
    return FieldError(absl::StrCat(activations.path, ".num_bits"),
                      absl::StrCat(bits, " is outside [", kMinActivationBits, ", 8]"));
  }
  out.activation_bits = static_cast<int>(bits);
  CATQ_ASSIGN_OR_RETURN(out.activation_symmetric, GetBool(activations, "symmetric"));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> GetUint64(const Node& parent, const std::string& key) {
  CATQ_ASSIGN_OR_RETURN(Node child, Child(parent, key));
  if (!child.json.is_number_unsigned()) {
    return FieldError(child.path, "expected a non-negative integer");
  }
  return child.json.get<uint64_t>();
}

// The K/V cache scheme: absent or null (a float cache), else what catq writes
// (quantization_config.cc): dynamic asymmetric int per token and KV head,
// i.e. groups of head_dim along the cached vector; the rotation is catq's own.
absl::Status ParseKvCache(const Node& qc, const Node& catq, const LlamaConfig& config,
                          StoredQuantization& out) {
  if (!qc.json.contains("kv_cache_scheme")) return absl::OkStatus();
  CATQ_ASSIGN_OR_RETURN(Node scheme, Child(qc, "kv_cache_scheme"));
  if (scheme.json.is_null()) return absl::OkStatus();
  if (!scheme.json.is_object()) return FieldError(scheme.path, "expected an object or null");
  CATQ_RETURN_IF_ERROR(ExpectString(scheme, "type", "int"));
  CATQ_RETURN_IF_ERROR(ExpectString(scheme, "strategy", "group"));
  CATQ_ASSIGN_OR_RETURN(const int64_t bits, GetInt(scheme, "num_bits"));
  if (bits < kMinActivationBits || bits > 8) {
    return FieldError(absl::StrCat(scheme.path, ".num_bits"),
                      absl::StrCat(bits, " is outside [", kMinActivationBits, ", 8]"));
  }
  CATQ_ASSIGN_OR_RETURN(const int64_t group_size, GetInt(scheme, "group_size"));
  if (group_size != config.head_dim()) {
    return FieldError(absl::StrCat(scheme.path, ".group_size"),
                      absl::StrCat(group_size, ", expected head_dim ", config.head_dim(),
                                   " (one group per token and KV head)"));
  }
  CATQ_ASSIGN_OR_RETURN(const bool symmetric, GetBool(scheme, "symmetric"));
  if (symmetric) {
    return FieldError(absl::StrCat(scheme.path, ".symmetric"),
                      "true; catq's K/V cache grid is asymmetric");
  }
  CATQ_ASSIGN_OR_RETURN(const bool dynamic, GetBool(scheme, "dynamic"));
  if (!dynamic) {
    return FieldError(absl::StrCat(scheme.path, ".dynamic"),
                      "false; catq's K/V cache grid is taken per token (dynamic)");
  }
  out.kv_cache.bits = static_cast<int>(bits);
  CATQ_ASSIGN_OR_RETURN(out.kv_cache.hadamard, GetBool(catq, "kv_cache_hadamard"));
  if (out.kv_cache.hadamard) {
    CATQ_ASSIGN_OR_RETURN(out.kv_cache.mixing_seed, GetUint64(catq, "mixing_seed"));
  }
  return absl::OkStatus();
}

// "model.layers.{i}.{site}" -> (i, site), checked against the model.
absl::StatusOr<std::pair<int64_t, Site>> ParseSiteKey(const std::string& key,
                                                      const std::string& path, int64_t num_layers) {
  const std::vector<absl::string_view> parts = absl::StrSplit(key, '.');
  int64_t layer = -1;
  if (parts.size() != 4 || parts[0] != "model" || parts[1] != "layers" ||
      !absl::SimpleAtoi(parts[2], &layer)) {
    return FieldError(path, "expected a key of the form model.layers.{i}.{site}");
  }
  if (layer < 0 || layer >= num_layers) {
    return FieldError(path, absl::StrCat("layer ", layer, " is outside [0, ", num_layers, ")"));
  }
  absl::StatusOr<Site> site = ParseSite(parts[3]);
  if (!site.ok()) return FieldError(path, site.status().message());
  return std::make_pair(layer, *site);
}

absl::StatusOr<StoredSite> ParseStoredSite(const Node& node) {
  StoredSite site;
  CATQ_ASSIGN_OR_RETURN(site.online, GetBool(node, "online"));
  CATQ_ASSIGN_OR_RETURN(site.hadamard, GetBool(node, "hadamard"));
  CATQ_ASSIGN_OR_RETURN(site.block_size, GetInt(node, "block_size"));
  CATQ_ASSIGN_OR_RETURN(site.folded, GetBool(node, "folded"));
  if (site.block_size < 0) {
    return FieldError(absl::StrCat(node.path, ".block_size"),
                      absl::StrCat(site.block_size, " is negative"));
  }
  if (site.online && site.folded) {
    return FieldError(node.path, "a site cannot be both online and folded");
  }
  return site;
}

absl::Status ParseSites(const Node& catq, int64_t num_layers, StoredQuantization& out) {
  CATQ_ASSIGN_OR_RETURN(Node sites, ChildObject(catq, "sites"));
  std::vector<std::array<bool, kAllSites.size()>> seen(static_cast<size_t>(num_layers));
  out.sites.assign(static_cast<size_t>(num_layers), {});
  for (const auto& [key, value] : sites.json.items()) {
    const Node node{value, absl::StrCat(sites.path, "[\"", key, "\"]")};
    if (!value.is_object()) return FieldError(node.path, "expected an object");
    CATQ_ASSIGN_OR_RETURN(const auto layer_site, ParseSiteKey(key, node.path, num_layers));
    const auto [layer, site] = layer_site;
    CATQ_ASSIGN_OR_RETURN(out.sites[static_cast<size_t>(layer)][static_cast<size_t>(site)],
                          ParseStoredSite(node));
    seen[static_cast<size_t>(layer)][static_cast<size_t>(site)] = true;
  }
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    for (Site site : kAllSites) {
      if (!seen[static_cast<size_t>(layer)][static_cast<size_t>(site)]) {
        return FieldError(absl::StrCat(sites.path, "[\"", SiteQualifiedName(layer, site), "\"]"),
                          "missing");
      }
    }
  }
  return absl::OkStatus();
}

// The recipe to report: catq's scalar fields, then the grids in the short
// names of catq_report.json.
nlohmann::json RecipeJson(const nlohmann::json& catq, const StoredQuantization& q) {
  nlohmann::json recipe = nlohmann::json::object();
  for (const auto& [key, value] : catq.items()) {
    if (value.is_primitive()) recipe[key] = value;
  }
  recipe["w_bits"] = q.weights.bits;
  recipe["w_group_size"] = q.weights.group_size;
  recipe["w_symmetric"] = q.weights.symmetric;
  recipe["a_bits"] = q.activation_bits;
  recipe["a_symmetric"] = q.activation_symmetric;
  recipe["kv_cache_bits"] = q.kv_cache.bits;
  if (q.mixed_precision) recipe["mixed_precision"] = true;
  return recipe;
}

// One config group: its weight and activation schemes.
struct GroupScheme {
  WeightQuantOptions weights;
  int activation_bits = kFloatActivationBits;
  bool activation_symmetric = false;
};

absl::StatusOr<GroupScheme> ParseGroup(const Node& group) {
  GroupScheme scheme;
  CATQ_ASSIGN_OR_RETURN(Node weights, ChildObject(group, "weights"));
  CATQ_ASSIGN_OR_RETURN(scheme.weights, ParseWeights(weights));
  StoredQuantization activations;
  CATQ_RETURN_IF_ERROR(ParseActivations(group, activations));
  scheme.activation_bits = activations.activation_bits;
  scheme.activation_symmetric = activations.activation_symmetric;
  return scheme;
}

// config_groups: each linear's scheme from the group whose targets name its
// module, else from the group targeting "Linear"; then each site's
// activation bits from the linears reading it. `out.weights` and the
// activation fields are group_0's, as a single-group reader reports them.
absl::Status ParseConfigGroups(const Node& groups, const LlamaConfig& config,
                               StoredQuantization& out) {
  const int64_t num_layers = config.num_hidden_layers;
  absl::flat_hash_map<std::string, std::pair<int64_t, LinearKind>> linears;
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) linears[LinearModuleName(layer, kind)] = {layer, kind};
  }
  std::vector<GroupScheme> schemes;
  std::vector<std::string> scheme_paths;
  std::vector<std::vector<int>> chosen(static_cast<size_t>(num_layers),
                                       std::vector<int>(kAllLinearKinds.size(), -1));
  int default_scheme = -1;
  std::string default_path;
  if (!groups.json.contains("group_0")) return FieldError(groups.path + ".group_0", "missing");
  for (const auto& [name, value] : groups.json.items()) {
    const Node group{value, absl::StrCat(groups.path, ".", name)};
    if (!value.is_object()) return FieldError(group.path, "expected an object");
    CATQ_ASSIGN_OR_RETURN(GroupScheme scheme, ParseGroup(group));
    const int index = static_cast<int>(schemes.size());
    if (name == "group_0") {
      out.weights = scheme.weights;
      out.activation_bits = scheme.activation_bits;
      out.activation_symmetric = scheme.activation_symmetric;
    }
    if (index > 0 && scheme.activation_symmetric != schemes[0].activation_symmetric &&
        scheme.activation_bits != kFloatActivationBits &&
        schemes[0].activation_bits != kFloatActivationBits) {
      return FieldError(absl::StrCat(group.path, ".input_activations.symmetric"),
                        "differs from the other groups'; catq's activation grid is one");
    }
    schemes.push_back(scheme);
    scheme_paths.push_back(group.path);
    CATQ_ASSIGN_OR_RETURN(Node targets, Child(group, "targets"));
    if (!targets.json.is_array()) return FieldError(targets.path, "expected an array");
    for (size_t t = 0; t < targets.json.size(); ++t) {
      const std::string path = absl::StrCat(targets.path, "[", t, "]");
      if (!targets.json[t].is_string()) return FieldError(path, "expected a string");
      const std::string target = targets.json[t].get<std::string>();
      if (target == "Linear") {
        if (default_scheme >= 0) {
          return FieldError(path, absl::StrCat("\"Linear\" is also a target of ", default_path));
        }
        default_scheme = index;
        default_path = group.path;
        continue;
      }
      auto linear = linears.find(target);
      if (linear == linears.end()) {
        return FieldError(
            path, absl::StrCat("\"", target, "\" is neither \"Linear\" nor a linear of the model"));
      }
      int& slot = chosen[static_cast<size_t>(linear->second.first)]
                        [static_cast<size_t>(linear->second.second)];
      if (slot >= 0) {
        return FieldError(path, absl::StrCat("\"", target, "\" is also a target of ",
                                             scheme_paths[static_cast<size_t>(slot)]));
      }
      slot = index;
    }
  }
  out.mixed_precision = schemes.size() > 1;
  out.linear_weights.resize(static_cast<size_t>(num_layers));
  out.site_activation_bits.resize(static_cast<size_t>(num_layers));
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    for (LinearKind kind : kAllLinearKinds) {
      int index = chosen[static_cast<size_t>(layer)][static_cast<size_t>(kind)];
      if (index < 0) index = default_scheme;
      if (index < 0) {
        return FieldError(groups.path,
                          absl::StrCat("no group targets ", LinearModuleName(layer, kind),
                                       " (by name or as \"Linear\")"));
      }
      chosen[static_cast<size_t>(layer)][static_cast<size_t>(kind)] = index;
      out.linear_weights[static_cast<size_t>(layer)][static_cast<size_t>(kind)] =
          schemes[static_cast<size_t>(index)].weights;
    }
    for (Site site : kAllSites) {
      const absl::Span<const LinearKind> readers = SiteLinears(site);
      const int first = chosen[static_cast<size_t>(layer)][static_cast<size_t>(readers[0])];
      const int bits = schemes[static_cast<size_t>(first)].activation_bits;
      for (LinearKind kind : readers) {
        const int index = chosen[static_cast<size_t>(layer)][static_cast<size_t>(kind)];
        if (schemes[static_cast<size_t>(index)].activation_bits != bits) {
          return FieldError(
              groups.path,
              absl::StrCat(LinearModuleName(layer, kind), " reads ", SiteQualifiedName(layer, site),
                           " at ", schemes[static_cast<size_t>(index)].activation_bits, " bits, ",
                           LinearModuleName(layer, readers[0]), " at ", bits,
                           "; the linears of a site share its activation bits"));
        }
      }
      out.site_activation_bits[static_cast<size_t>(layer)][static_cast<size_t>(site)] = bits;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StoredQuantization> Parse(const LlamaConfig& config) {
  const Node root{config.original, ""};
  CATQ_ASSIGN_OR_RETURN(Node qc, ChildObject(root, "quantization_config"));
  CATQ_RETURN_IF_ERROR(ExpectString(qc, "quant_method", "compressed-tensors"));
  CATQ_RETURN_IF_ERROR(ExpectString(qc, "format", "pack-quantized"));
  CATQ_ASSIGN_OR_RETURN(Node groups, ChildObject(qc, "config_groups"));
  StoredQuantization out;
  CATQ_RETURN_IF_ERROR(ParseConfigGroups(groups, config, out));
  CATQ_ASSIGN_OR_RETURN(Node catq, ChildObject(qc, "catq"));
  CATQ_ASSIGN_OR_RETURN(out.method, GetString(catq, "method"));
  CATQ_RETURN_IF_ERROR(ParseSites(catq, config.num_hidden_layers, out));
  CATQ_RETURN_IF_ERROR(ParseKvCache(qc, catq, config, out));
  out.recipe = RecipeJson(catq.json, out);
  return out;
}

}  // namespace

absl::StatusOr<StoredQuantization> ParseStoredQuantization(const LlamaConfig& config,
                                                           absl::string_view config_path) {
  absl::StatusOr<StoredQuantization> parsed = Parse(config);
  if (!parsed.ok()) return Prefix(config_path, parsed.status());
  return parsed;
}

}  // namespace catq
