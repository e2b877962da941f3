#include "core/model/text_documents.h"

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

bool IsStripped(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

absl::string_view StripDocument(absl::string_view text) {
  while (!text.empty() && IsStripped(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsStripped(text.back())) text.remove_suffix(1);
  return text;
}

std::vector<std::string> SplitTextDocuments(absl::string_view text) {
  std::vector<absl::string_view> pieces;
  if (absl::StrContains(text, kEndOfTextMarker)) {
    pieces = absl::StrSplit(text, kEndOfTextMarker);
  } else {
    pieces = absl::StrSplit(text, '\n');
  }
  std::vector<std::string> documents;
  for (absl::string_view piece : pieces) {
    absl::string_view document = StripDocument(piece);
    if (!document.empty()) documents.emplace_back(document);
  }
  return documents;
}

absl::StatusOr<std::vector<std::string>> ReadTextDocuments(Env* env, const std::string& path) {
  CATQ_ASSIGN_OR_RETURN(std::string text, env->ReadFile(path));
  return SplitTextDocuments(text);
}

std::vector<std::vector<int32_t>> TokenizeDocuments(const Llama2cTokenizer& tokenizer,
                                                    const std::vector<std::string>& documents) {
  std::vector<std::vector<int32_t>> ids;
  ids.reserve(documents.size());
  for (const std::string& document : documents) {
    ids.push_back(tokenizer.Encode(document, /*add_bos=*/true, /*add_eos=*/false));
  }
  return ids;
}

}  // namespace catq
