#include "core/model/token_id_documents.h"

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {

absl::StatusOr<std::vector<std::vector<int32_t>>> ParseTokenIdDocuments(absl::string_view bytes,
                                                                        int64_t vocab_size,
                                                                        absl::string_view source) {
  if (bytes.size() % sizeof(int32_t) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": size ", bytes.size(), " is not a multiple of 4 (little-endian int32 ids)"));
  }
  std::vector<std::vector<int32_t>> documents(1);
  for (size_t offset = 0; offset < bytes.size(); offset += sizeof(int32_t)) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + offset);
    const int32_t id =
        static_cast<int32_t>(static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                             static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24);
    if (id == kTokenIdDocumentSeparator) {
      if (!documents.back().empty()) documents.emplace_back();
      continue;
    }
    if (id < 0 || (vocab_size > 0 && id >= vocab_size)) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": id ", id, " at byte offset ", offset, " is outside [0, ",
                       vocab_size > 0 ? absl::StrCat(vocab_size) : std::string("2^31"),
                       ") and is not the separator -1"));
    }
    documents.back().push_back(id);
  }
  if (documents.back().empty()) documents.pop_back();
  if (documents.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": holds no token id"));
  }
  return documents;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> ReadTokenIdDocuments(Env* env,
                                                                       const std::string& path,
                                                                       int64_t vocab_size) {
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, env->MapFile(path));
  return ParseTokenIdDocuments(file->bytes(), vocab_size, path);
}

}  // namespace catq
