// File: core/model/sentencepiece_tokenizer.h
//
// A SentencePiece model (sentencepiece_model.h) as a Llama2cTokenizer. A
// Llama tokenizer.model is a BPE model with byte fallback, the identity
// normalizer, a dummy prefix and escaped whitespace: SentencePiece encodes
// with it exactly as llama2.c's encoder does with the same pieces and scores
// (llama2.c's tokenizer.bin is such a model, exported), given that
//   - U+2581 ("▁", SentencePiece's space) in a piece becomes ' ', and the
//     text is normalized as sentencepiece_normalizer.h says;
//   - only NORMAL pieces may come out of a merge (SentencePiece keeps
//     control, unknown and byte pieces out of its merge table).
// (One difference remains, for hand-made files only: SentencePiece lets a
// character missing from the vocabulary merge into a piece that contains it,
// where this encoder has already split it into byte pieces. A trained BPE
// vocabulary holds every character of its pieces, so the two agree on it.)
// What that encoder cannot reproduce is refused, naming the field: a model
// type other than BPE, no byte fallback, whitespace as suffix, a normalizer
// other than identity (a name other than "identity", a precompiled charsmap,
// remove_extra_whitespaces, no add_dummy_prefix or escape_whitespaces),
// USER_DEFINED and UNUSED pieces (matched before, or split after, the merges
// in SentencePiece), and special ids other than llama2.c's (unk 0, bos 1,
// eos 2, byte pieces <0x00>..<0xFF> at 3..258).
//
//   CATQ_ASSIGN_OR_RETURN(Llama2cTokenizer tok,
//                         LoadSentencePieceTokenizer(env, dir + "/tokenizer.model", 32000));
//
// Thread-safety: pure functions (Load as thread-safe as `env`).
#ifndef CATQ_CORE_MODEL_SENTENCEPIECE_TOKENIZER_H_
#define CATQ_CORE_MODEL_SENTENCEPIECE_TOKENIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/io/env.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/model/sentencepiece_model.h"

namespace catq {

// TokenizerFromSentencePiece: as above. InvalidArgument, prefixed with
// `file_name`, naming the field and its byte offset (or that it is absent),
// also when the number of pieces is not the model's `vocab_size`, or a piece
// is duplicated, holds a plain space, or a NORMAL piece has a score that is
// not finite or not above -1e10 (below which llama2.c's encoder never merges).
absl::StatusOr<Llama2cTokenizer> TokenizerFromSentencePiece(const SentencePieceModel& model,
                                                            int64_t vocab_size,
                                                            absl::string_view file_name);

// ParseSentencePieceTokenizer: ParseSentencePieceModel, then the above.
absl::StatusOr<Llama2cTokenizer> ParseSentencePieceTokenizer(absl::string_view bytes,
                                                             int64_t vocab_size,
                                                             absl::string_view file_name);

// LoadSentencePieceTokenizer: the file at `path`; Env's errors otherwise.
absl::StatusOr<Llama2cTokenizer> LoadSentencePieceTokenizer(Env* env, const std::string& path,
                                                            int64_t vocab_size);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_SENTENCEPIECE_TOKENIZER_H_
