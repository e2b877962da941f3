// File: core/model/model_tokenizer.h
//
// The tokenizer of a model directory, wherever catq tokenizes text
// (calibration and evaluation text, in the command line and in the server's
// jobs): SentencePiece's `tokenizer.model` (Hugging Face Llama models, read by
// sentencepiece_tokenizer.h) when the directory has one, else llama2.c's
// `tokenizer.bin` (imported llama2.c models, llama2c_tokenizer.h).
//
//   CATQ_ASSIGN_OR_RETURN(Llama2cTokenizer tok,
//                         LoadModelTokenizer(env, model_dir, config.vocab_size));
//
// Thread-safety: pure functions (Load as thread-safe as `env`).
#ifndef CATQ_CORE_MODEL_MODEL_TOKENIZER_H_
#define CATQ_CORE_MODEL_MODEL_TOKENIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"
#include "core/model/llama2c_tokenizer.h"

namespace catq {

inline constexpr char kSentencePieceModelFileName[] = "tokenizer.model";

// LoadModelTokenizer: as above, for a model of `vocab_size` tokens. NotFound
// naming both files when the directory has neither; the reader's errors
// (naming the file) otherwise.
absl::StatusOr<Llama2cTokenizer> LoadModelTokenizer(Env* env, const std::string& model_dir,
                                                    int64_t vocab_size);

// IsModelTokenizerFile: whether `path`, relative to a model directory, is a
// file LoadModelTokenizer reads.
bool IsModelTokenizerFile(absl::string_view path);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_MODEL_TOKENIZER_H_
