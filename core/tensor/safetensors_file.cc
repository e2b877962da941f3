#include "core/tensor/safetensors_file.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/tensor/internal/text.h"
#include "core/tensor/safetensors_format.h"
#include "core/util/status_macros.h"

namespace catq {

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path, Env* env) {
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, env->MapFile(path));
  absl::StatusOr<ParsedSafetensors> parsed = ParseSafetensorsFile(mapped->bytes());
  if (!parsed.ok()) return Prefix(path, parsed.status());
  SafetensorsFile file;
  file.path_ = path;
  file.mapped_ = std::move(mapped);
  file.header_ = std::move(parsed->header);
  file.data_offset_ = parsed->data_offset;
  file.by_name_.reserve(file.header_.tensors.size());
  for (size_t i = 0; i < file.header_.tensors.size(); ++i) {
    file.by_name_.emplace(file.header_.tensors[i].name, i);
  }
  return file;
}

const TensorInfo* SafetensorsFile::Find(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
}

absl::StatusOr<TensorView> SafetensorsFile::Get(absl::string_view name) const {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor ", tensor_internal::Quote(name)));
  }
  return View(*info);
}

TensorView SafetensorsFile::View(const TensorInfo& info) const {
  // Open proved data_offset_ + data_end <= file size for every tensor.
  return TensorView(info, mapped_->bytes().substr(data_offset_ + info.data_begin, info.NumBytes()));
}

void SafetensorsFile::ReleaseTensor(const TensorInfo& info) const {
  mapped_->Release(mapped_->bytes().substr(data_offset_ + info.data_begin, info.NumBytes()));
}

}  // namespace catq
