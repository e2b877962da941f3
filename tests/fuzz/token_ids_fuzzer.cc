// Fuzz target for token-id calibration files (int32 little-endian ids, -1
// between documents): ParseTokenIdDocuments with the vocabulary size taken
// from the first byte. An accepted file gives non-empty documents whose ids
// are all in [0, vocab_size) and together account for every id in the file.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/model/token_id_documents.h"
#include "tests/fuzz/fuzz_check.h"

namespace {
constexpr char kName[] = "token_ids_fuzzer";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using catq::fuzzing::CheckRejection;
  using catq::fuzzing::Violation;
  if (size < 1) return 0;
  const int64_t vocab_size = data[0] % 8 == 0 ? 0 : 32 * data[0];  // 0: no limit
  const absl::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  auto documents = catq::ParseTokenIdDocuments(bytes, vocab_size, "calib.ids");
  if (!documents.ok()) {
    CheckRejection(kName, documents.status());
    return 0;
  }
  size_t ids = 0;
  for (const std::vector<int32_t>& document : *documents) {
    if (document.empty()) Violation(kName, "an empty document");
    for (int32_t id : document) {
      if (id < 0 || (vocab_size > 0 && id >= vocab_size)) {
        Violation(kName, absl::StrCat("id ", id, " out of range"));
      }
    }
    ids += document.size();
  }
  size_t in_file = 0;
  for (size_t at = 0; at + 4 <= bytes.size(); at += 4) {
    int32_t id = 0;
    std::memcpy(&id, bytes.data() + at, 4);
    if (id != catq::kTokenIdDocumentSeparator) ++in_file;
  }
  if (ids != in_file)
    Violation(kName, absl::StrCat(ids, " ids in documents, ", in_file, " in file"));
  return 0;
}
