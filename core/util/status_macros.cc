#include "core/util/status_macros.h"

#include "absl/strings/str_cat.h"

namespace catq {

absl::Status Prefix(absl::string_view context, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace catq
