#include "core/model/model_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "core/model/llama2c_import.h"
#include "core/model/sentencepiece_tokenizer.h"

namespace catq {

absl::StatusOr<Llama2cTokenizer> LoadModelTokenizer(Env* env, const std::string& model_dir,
                                                    int64_t vocab_size) {
  const std::string sentencepiece = absl::StrCat(model_dir, "/", kSentencePieceModelFileName);
  if (env->FileExists(sentencepiece)) {
    return LoadSentencePieceTokenizer(env, sentencepiece, vocab_size);
  }
  const std::string llama2c = absl::StrCat(model_dir, "/", kLlama2cTokenizerFileName);
  if (env->FileExists(llama2c)) return Llama2cTokenizer::Load(env, llama2c, vocab_size);
  return absl::NotFoundError(absl::StrCat(model_dir, ": no tokenizer, neither ",
                                          kSentencePieceModelFileName, " (SentencePiece) nor ",
                                          kLlama2cTokenizerFileName, " (llama2.c)"));
}

bool IsModelTokenizerFile(absl::string_view path) {
  return path == kSentencePieceModelFileName || path == kLlama2cTokenizerFileName;
}

}  // namespace catq
