// File: core/model/text_documents.h
//
// Evaluation and calibration text as documents, the way catq reads a text
// file everywhere (catq eval, calibration uploads): documents are separated
// by `<|endoftext|>` when that marker occurs in the text, else each non-empty
// line is a document. Each is stripped of surrounding spaces, tabs, CR and LF;
// documents left empty are dropped. Tokenized, each starts with BOS and has
// no EOS. Truncation to the model's context is the evaluator's job (see
// perplexity.h), so the same documents serve models of any context length.
//
//   CATQ_ASSIGN_OR_RETURN(std::vector<std::string> docs, ReadTextDocuments(env, path));
//   std::vector<std::vector<int32_t>> ids = TokenizeDocuments(tokenizer, docs);
//   CATQ_ASSIGN_OR_RETURN(PerplexityResult ppl, EvaluatePerplexity(model, ids, {}));
//
// Thread-safety: pure functions (ReadTextDocuments as thread-safe as `env`).
#ifndef CATQ_CORE_MODEL_TEXT_DOCUMENTS_H_
#define CATQ_CORE_MODEL_TEXT_DOCUMENTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"
#include "core/model/llama2c_tokenizer.h"

namespace catq {

inline constexpr char kEndOfTextMarker[] = "<|endoftext|>";

// StripDocument: `text` without leading and trailing ' ', '\t', '\r', '\n'
// (other white space, such as a form feed or U+00A0, is kept).
absl::string_view StripDocument(absl::string_view text);

// SplitTextDocuments: the documents of `text`, in order, as above.
std::vector<std::string> SplitTextDocuments(absl::string_view text);

// ReadTextDocuments: SplitTextDocuments of the file at `path`. Env's errors
// (NotFound for a missing file) name the path.
absl::StatusOr<std::vector<std::string>> ReadTextDocuments(Env* env, const std::string& path);

// TokenizeDocuments: each document encoded with BOS first, no EOS.
std::vector<std::vector<int32_t>> TokenizeDocuments(const Llama2cTokenizer& tokenizer,
                                                    const std::vector<std::string>& documents);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_TEXT_DOCUMENTS_H_
