#include "core/tensor/safetensors_header.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/tensor/internal/header_sax.h"
#include "core/tensor/internal/text.h"
#include "core/tensor/shape.h"
#include "nlohmann/json.hpp"

namespace catq {
namespace {

using tensor_internal::Quote;

std::string Context(const TensorInfo& tensor) {
  return absl::StrCat("tensor ", Quote(tensor.name));
}

std::string Offsets(const TensorInfo& tensor) {
  return absl::StrCat("[", tensor.data_begin, ", ", tensor.data_end, "]");
}

// CheckTensorBytes: the offsets are ordered, inside the buffer, and span
// exactly the bytes the shape and dtype need.
absl::Status CheckTensorBytes(const TensorInfo& tensor, uint64_t data_size) {
  if (tensor.data_begin > tensor.data_end) {
    return absl::InvalidArgumentError(
        absl::StrCat(Context(tensor), ": data_offsets ", Offsets(tensor), " have begin > end"));
  }
  if (tensor.data_end > data_size) {
    return absl::InvalidArgumentError(absl::StrCat(Context(tensor), ": data_offsets ",
                                                   Offsets(tensor), " end past the data buffer of ",
                                                   data_size, " bytes"));
  }
  absl::StatusOr<uint64_t> needed = ShapeNumBytes(tensor.shape, tensor.dtype);
  if (!needed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Context(tensor), ": ", needed.status().message()));
  }
  if (*needed != tensor.NumBytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Context(tensor), ": shape ", FormatShape(tensor.shape), " of ", DTypeName(tensor.dtype),
        " needs ", *needed, " bytes, data_offsets span ", tensor.NumBytes()));
  }
  return absl::OkStatus();
}

absl::Status CheckUniqueNames(const std::vector<TensorInfo>& tensors) {
  std::vector<const TensorInfo*> by_name;
  by_name.reserve(tensors.size());
  for (const TensorInfo& tensor : tensors) by_name.push_back(&tensor);
  std::sort(by_name.begin(), by_name.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->name < b->name; });
  for (size_t i = 1; i < by_name.size(); ++i) {
    if (by_name[i]->name == by_name[i - 1]->name) {
      return absl::InvalidArgumentError(
          absl::StrCat("duplicate tensor name ", Quote(by_name[i]->name)));
    }
  }
  return absl::OkStatus();
}

// CheckTiling: sorted by offset, the tensors cover [0, data_size) exactly, as
// the format requires. REQUIRES: `tensors` sorted by (data_begin, data_end).
absl::Status CheckTiling(const std::vector<TensorInfo>& tensors, uint64_t data_size) {
  uint64_t expected = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& tensor : tensors) {
    if (tensor.data_begin < expected) {
      return absl::InvalidArgumentError(
          absl::StrCat(Context(tensor), ": data_offsets ", Offsets(tensor), " overlap ",
                       Context(*previous), " at ", Offsets(*previous)));
    }
    if (tensor.data_begin > expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          Context(tensor), ": data_offsets ", Offsets(tensor), " leave a hole: bytes [", expected,
          ", ", tensor.data_begin, ") of the data buffer belong to no tensor"));
    }
    expected = tensor.data_end;
    previous = &tensor;
  }
  if (expected != data_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data buffer has ", data_size - expected, " bytes after ",
        previous != nullptr
            ? absl::StrCat("the last tensor ", Quote(previous->name), " ends at ", expected)
            : std::string("a header with no tensors"),
        " that belong to no tensor"));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TensorInfo::NumElements() const {
  // Unsigned arithmetic wraps instead of overflowing, so an unvalidated shape
  // gives a wrong number, never undefined behaviour.
  uint64_t product = 1;
  for (int64_t dim : shape) product *= static_cast<uint64_t>(dim);
  return static_cast<int64_t>(product);
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view header_json,
                                                         uint64_t data_size) {
  // nlohmann checks UTF-8 only inside strings, and not every case of it.
  const size_t bad_byte = tensor_internal::FindInvalidUtf8(header_json);
  if (bad_byte != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("header is not valid UTF-8 at header byte ", bad_byte));
  }
  // JSON text never holds a raw NUL (strings must escape it), but nlohmann
  // takes one between tokens for the end of the input: "{...}\0<anything>"
  // would parse as "{...}" and silently drop the rest.
  const size_t nul = header_json.find('\0');
  if (nul != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("header has a NUL byte at header byte ", nul));
  }
  tensor_internal::HeaderSaxHandler handler;
  bool parsed = false;
  try {
    parsed = nlohmann::json::sax_parse(header_json.begin(), header_json.end(), &handler);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!handler.status().ok()) return handler.status();
  if (!parsed || !handler.complete()) {
    return absl::InvalidArgumentError("header is not a complete JSON object");
  }
  SafetensorsHeader header;
  header.tensors = handler.TakeTensors();
  header.metadata = handler.TakeMetadata();
  for (const TensorInfo& tensor : header.tensors) {
    absl::Status status = CheckTensorBytes(tensor, data_size);
    if (!status.ok()) return status;
  }
  absl::Status unique = CheckUniqueNames(header.tensors);
  if (!unique.ok()) return unique;
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return std::tie(a.data_begin, a.data_end, a.name) <
                     std::tie(b.data_begin, b.data_end, b.name);
            });
  absl::Status tiling = CheckTiling(header.tensors, data_size);
  if (!tiling.ok()) return tiling;
  return header;
}

absl::StatusOr<std::string> SerializeSafetensorsHeader(const SafetensorsHeader& header) {
  auto invalid_utf8 = [](absl::string_view text) {
    return tensor_internal::FindInvalidUtf8(text) != absl::string_view::npos;
  };
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!header.metadata.empty()) {
    nlohmann::ordered_json metadata = nlohmann::ordered_json::object();
    for (const auto& [key, value] : header.metadata) {
      if (invalid_utf8(key) || invalid_utf8(value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("__metadata__ ", Quote(key), ": key or value is not valid UTF-8"));
      }
      metadata[key] = value;
    }
    root["__metadata__"] = std::move(metadata);
  }
  for (const TensorInfo& tensor : header.tensors) {
    if (invalid_utf8(tensor.name)) {
      return absl::InvalidArgumentError(absl::StrCat(Context(tensor), ": name is not valid UTF-8"));
    }
    // operator[] would silently merge a duplicate or clobber the metadata, and
    // a tensor called "__metadata__" would read back as metadata.
    if (tensor.name == "__metadata__" || root.contains(tensor.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Context(tensor), ": name is a duplicate or reserved"));
    }
    root[tensor.name] = {{"dtype", std::string(DTypeName(tensor.dtype))},
                         {"shape", tensor.shape},
                         {"data_offsets", {tensor.data_begin, tensor.data_end}}};
  }
  std::string text;
  try {
    text = root.dump();
  } catch (const nlohmann::json::exception& e) {
    return absl::InternalError(absl::StrCat("serializing safetensors header: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace catq
