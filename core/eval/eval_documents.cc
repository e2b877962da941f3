#include "core/eval/eval_documents.h"

#include "core/io/env.h"
#include "core/model/model_tokenizer.h"
#include "core/model/text_documents.h"
#include "core/util/status_macros.h"

namespace catq {

absl::StatusOr<std::vector<std::vector<int32_t>>> ReadEvalDocuments(const std::string& model_dir,
                                                                    const std::string& text,
                                                                    int64_t vocab_size) {
  CATQ_ASSIGN_OR_RETURN(Llama2cTokenizer tokenizer,
                        LoadModelTokenizer(Env::Default(), model_dir, vocab_size));
  CATQ_ASSIGN_OR_RETURN(std::vector<std::string> texts, ReadTextDocuments(Env::Default(), text));
  return TokenizeDocuments(tokenizer, texts);
}

}  // namespace catq
