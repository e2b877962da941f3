// File: core/model/sentencepiece_normalizer.h
//
// What SentencePiece's "identity" normalizer does to text before encoding,
// with escape_whitespaces on and remove_extra_whitespaces off (Llama's
// tokenizer.model), written for a vocabulary whose U+2581 ("▁", SentencePiece's
// space) has been turned back into ' ' (sentencepiece_tokenizer.h):
//   - a byte that does not start a valid UTF-8 character (a stray
//     continuation byte, a truncated or overlong sequence, a surrogate, a
//     code point past U+10FFFF) becomes U+FFFD, one per byte;
//   - U+2581 in the text becomes ' ', since SentencePiece cannot tell it from
//     an escaped space either.
// Everything else is kept byte for byte. The dummy prefix is the encoder's.
//
// Thread-safety: pure function.
#ifndef CATQ_CORE_MODEL_SENTENCEPIECE_NORMALIZER_H_
#define CATQ_CORE_MODEL_SENTENCEPIECE_NORMALIZER_H_

#include <string>

#include "absl/strings/string_view.h"

namespace catq {

std::string NormalizeForSentencePiece(absl::string_view text);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_SENTENCEPIECE_NORMALIZER_H_
