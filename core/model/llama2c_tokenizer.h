// File: core/model/llama2c_tokenizer.h
//
// The tokenizer of llama2.c models (`tokenizer.bin`, e.g. stories260K's
// tok512.bin; the file layout is in llama2c_format.h): a vocabulary of byte
// strings with merge scores. Encode reproduces llama2.c's `encode` in run.c
// token for token:
//   1. with add_bos, BOS (1) first;
//   2. unless the text is empty, the dummy prefix: the id of the piece " "
//      (SentencePiece's add_dummy_prefix, which llama2.c mimics this way);
//   3. each UTF-8 character (a lead byte and up to three continuation bytes)
//      becomes its piece, or when the vocabulary lacks it, one byte-fallback
//      token per byte, id = byte + 3 (the pieces "<0x00>".."<0xFF>");
//   4. repeatedly, the adjacent pair whose concatenated text is a piece with
//      the highest score (the leftmost such pair on ties; only scores above
//      -1e10) is replaced by that piece, until no pair merges;
//   5. with add_eos, EOS (2) last.
// llama2.c rescans the whole sequence for every merge (quadratic); Encode
// keeps the candidate pairs in a heap instead, which picks the same pair at
// every step, so that long documents stay cheap. A tokenizer made by
// FromVocabulary (SentencePiece's tokenizer.model) encodes the same way, after
// SentencePiece's normalization of the text and with merges only into the
// pieces it marks as merge targets.
//
//   CATQ_ASSIGN_OR_RETURN(Llama2cTokenizer tok,
//                         Llama2cTokenizer::Load(env, dir + "/tokenizer.bin", config.vocab_size));
//   std::vector<int32_t> ids = tok.Encode("Once upon a time", /*add_bos=*/true);
//   CATQ_ASSIGN_OR_RETURN(std::string text, tok.Decode(ids));  // "Once upon a time"
//
// Thread-safety: immutable after construction; all methods are thread-safe.
#ifndef CATQ_CORE_MODEL_LLAMA2C_TOKENIZER_H_
#define CATQ_CORE_MODEL_LLAMA2C_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/io/env.h"

namespace catq {

class Llama2cTokenizer {
 public:
  static constexpr int32_t kBos = 1;
  static constexpr int32_t kEos = 2;
  // The id of the byte-fallback token for byte b is b + kByteFallbackOffset
  // (after <unk>, <s> and </s>).
  static constexpr int32_t kByteFallbackOffset = 3;

  // Llama2cTokenizer::Parse
  //
  // Reads a tokenizer file's bytes holding `vocab_size` entries (the file does
  // not record its own size: it comes from the model). Refuses what
  // ValidateLlama2cTokenizer refuses, and, InvalidArgument, a vocabulary of
  // fewer than 259 entries (byte fallback needs ids 3..258) or one without
  // the piece " " (the dummy prefix). `file_name` prefixes every message.
  static absl::StatusOr<Llama2cTokenizer> Parse(absl::string_view bytes, int64_t vocab_size,
                                                absl::string_view file_name);

  // Llama2cTokenizer::Load: Parse of the file at `path`; Env's errors otherwise.
  static absl::StatusOr<Llama2cTokenizer> Load(Env* env, const std::string& path,
                                               int64_t vocab_size);

  // The vocabulary of a tokenizer read from another format (SentencePiece's
  // tokenizer.model: sentencepiece_tokenizer.h), encoded the same way.
  struct Vocabulary {
    std::vector<std::string> pieces;
    std::vector<float> scores;
    // merge_targets[i]: whether a merge may produce piece i. SentencePiece
    // never merges into its control, unknown and byte pieces; llama2.c's
    // files merge into any piece.
    std::vector<bool> merge_targets;
    // Whether Encode first normalizes text as SentencePiece's identity
    // normalizer does (sentencepiece_normalizer.h).
    bool sentencepiece_normalization = false;
  };

  // Llama2cTokenizer::FromVocabulary
  //
  // InvalidArgument, prefixed with `source`, when the three vectors differ in
  // size, or there are fewer than 259 pieces, pieces 3..258 are not
  // "<0x00>".."<0xFF>" in order (byte fallback emits those ids), or no piece
  // is " " (the dummy prefix).
  static absl::StatusOr<Llama2cTokenizer> FromVocabulary(Vocabulary vocabulary,
                                                         absl::string_view source);

  int64_t vocab_size() const { return static_cast<int64_t>(pieces_.size()); }
  // Piece: the stored text of token `id` (e.g. " the", "<0x0A>", "\n<s>\n").
  // REQUIRES: 0 <= id < vocab_size().
  absl::string_view Piece(int32_t id) const { return pieces_[static_cast<size_t>(id)]; }
  float Score(int32_t id) const { return scores_[static_cast<size_t>(id)]; }
  // Find: the id of the piece with exactly this text, or -1.
  int32_t Find(absl::string_view piece) const;

  // Encode: as in the file comment. Never fails: byte fallback covers every
  // byte (a NUL byte, which ends llama2.c's C string, is encoded as <0x00>).
  std::vector<int32_t> Encode(absl::string_view text, bool add_bos = false,
                              bool add_eos = false) const;

  // Decode
  //
  // The text of `ids`: BOS and EOS give nothing, a byte-fallback token its
  // byte, any other token its piece. The first piece after a BOS, or at the
  // start of `ids`, loses one leading space (the dummy prefix), as
  // SentencePiece decodes; so Decode(Encode(t)) == t for any t. InvalidArgument
  // naming the position for an id outside [0, vocab_size()).
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const;

 private:
  Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores);

  std::vector<int32_t> EncodeNormalized(absl::string_view text, bool add_bos, bool add_eos) const;
  bool IsMergeTarget(int32_t id) const {
    return merge_targets_.empty() || merge_targets_[static_cast<size_t>(id)];
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  // Empty: every piece may come out of a merge.
  std::vector<bool> merge_targets_;
  bool sentencepiece_normalization_ = false;
  // Piece text -> id. The lowest id wins should a piece occur twice.
  absl::flat_hash_map<std::string, int32_t> ids_;
  int32_t dummy_prefix_id_ = -1;
};

}  // namespace catq

#endif  // CATQ_CORE_MODEL_LLAMA2C_TOKENIZER_H_
