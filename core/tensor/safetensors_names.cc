#include "core/tensor/safetensors_names.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/tensor/internal/text.h"

namespace catq {

std::string ShardFileName(int index, int count) {
  return absl::StrFormat("model-%05d-of-%05d.safetensors", index, count);
}

absl::Status CheckShardFileName(absl::string_view name) {
  const bool plain = !name.empty() && !absl::StrContains(name, "..") &&
                     name.find_first_of(absl::string_view("/\\\0", 3)) == absl::string_view::npos;
  if (plain) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("shard name ", tensor_internal::Quote(name),
                                                 " is not a plain file name in the directory"));
}

}  // namespace catq
