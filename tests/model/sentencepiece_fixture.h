// File: tests/model/sentencepiece_fixture.h
//
// Writes SentencePiece model files (tokenizer.model) for tests: a minimal
// protobuf wire writer and a serializer of the ModelProto fields catq reads
// (core/model/sentencepiece_model.h), and the model a llama2.c tokenizer file
// was exported from (tok512.bin: same pieces and scores, "<unk>" UNKNOWN,
// "<s>" and "</s>" CONTROL, "<0xNN>" BYTE, ' ' written as U+2581).
//
//   std::string model = SentencePieceModelFromLlama2c(ReadTestFile(tok512), 512);
//
// Thread-safety: pure functions.
#ifndef CATQ_TESTS_MODEL_SENTENCEPIECE_FIXTURE_H_
#define CATQ_TESTS_MODEL_SENTENCEPIECE_FIXTURE_H_

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"

namespace catq::testing {

inline void AppendVarint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

inline void AppendTag(std::string& out, uint32_t field, int wire_type) {
  AppendVarint(out, (uint64_t{field} << 3) | static_cast<uint64_t>(wire_type));
}

// An int32 or enum field: negative values sign-extended to 10 bytes.
inline void AppendVarintField(std::string& out, uint32_t field, int64_t value) {
  AppendTag(out, field, 0);
  AppendVarint(out, static_cast<uint64_t>(value));
}

inline void AppendBytesField(std::string& out, uint32_t field, absl::string_view bytes) {
  AppendTag(out, field, 2);
  AppendVarint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}

inline void AppendFloatField(std::string& out, uint32_t field, float value) {
  AppendTag(out, field, 5);
  char bytes[4];
  std::memcpy(bytes, &value, 4);
  out.append(bytes, 4);
}

// SentencePiece.Type values.
enum SpType : int {
  kSpNormal = 1,
  kSpUnknown = 2,
  kSpControl = 3,
  kSpUserDefined = 4,
  kSpUnused = 5,
  kSpByte = 6
};

struct SpPiece {
  std::string piece;
  float score = 0.0f;
  int type = kSpNormal;
};

// The specs as Llama's tokenizer.model sets them; tests change one field.
struct SpSpecs {
  int model_type = 2;  // BPE
  bool byte_fallback = true;
  std::string normalizer_name = "identity";
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = false;
  bool escape_whitespaces = true;
  int32_t pad_id = -1;
};

inline std::string SerializeSpPiece(const SpPiece& piece) {
  std::string out;
  AppendBytesField(out, 1, piece.piece);
  AppendFloatField(out, 2, piece.score);
  if (piece.type != kSpNormal) AppendVarintField(out, 3, piece.type);
  return out;
}

inline std::string SerializeTrainerSpec(const SpSpecs& specs) {
  std::string out;
  AppendVarintField(out, 3, specs.model_type);
  AppendVarintField(out, 4, 0);  // vocab_size, which the encoder ignores.
  AppendVarintField(out, 35, specs.byte_fallback);
  AppendVarintField(out, 40, 0);
  AppendVarintField(out, 41, 1);
  AppendVarintField(out, 42, 2);
  AppendVarintField(out, 43, specs.pad_id);
  return out;
}

inline std::string SerializeNormalizerSpec(const SpSpecs& specs) {
  std::string out;
  AppendBytesField(out, 1, specs.normalizer_name);
  AppendVarintField(out, 3, specs.add_dummy_prefix);
  AppendVarintField(out, 4, specs.remove_extra_whitespaces);
  AppendVarintField(out, 5, specs.escape_whitespaces);
  return out;
}

// A ModelProto: the pieces, then trainer_spec and normalizer_spec.
inline std::string SerializeSentencePieceModel(const std::vector<SpPiece>& pieces,
                                               const SpSpecs& specs = {}) {
  std::string out;
  for (const SpPiece& piece : pieces) AppendBytesField(out, 1, SerializeSpPiece(piece));
  AppendBytesField(out, 2, SerializeTrainerSpec(specs));
  AppendBytesField(out, 3, SerializeNormalizerSpec(specs));
  return out;
}

// <unk>, <s>, </s> and the 256 byte pieces, all scored 0, then `normal`.
inline std::vector<SpPiece> SpVocabulary(const std::vector<SpPiece>& normal) {
  std::vector<SpPiece> pieces = {
      {"<unk>", 0.0f, kSpUnknown}, {"<s>", 0.0f, kSpControl}, {"</s>", 0.0f, kSpControl}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    pieces.push_back({name, 0.0f, kSpByte});
  }
  pieces.insert(pieces.end(), normal.begin(), normal.end());
  return pieces;
}

// The pieces of a llama2.c tokenizer file of `vocab` entries, as the
// SentencePiece model it was exported from holds them.
inline std::vector<SpPiece> SpPiecesFromLlama2c(absl::string_view tokenizer_bin, int64_t vocab) {
  std::vector<SpPiece> pieces;
  size_t at = 4;  // max_token_length
  for (int64_t i = 0; i < vocab && at + 8 <= tokenizer_bin.size(); ++i) {
    SpPiece piece;
    int32_t length;
    std::memcpy(&piece.score, tokenizer_bin.data() + at, 4);
    std::memcpy(&length, tokenizer_bin.data() + at + 4, 4);
    at += 8;
    piece.piece = std::string(tokenizer_bin.substr(at, static_cast<size_t>(length)));
    at += static_cast<size_t>(length);
    const bool byte = piece.piece.size() == 6 && piece.piece.rfind("<0x", 0) == 0;
    if (i == 0) {
      piece.type = kSpUnknown;
    } else if (i == 1 || i == 2) {
      piece.piece = i == 1 ? "<s>" : "</s>";  // llama2.c exports "\n<s>\n", "\n</s>\n".
      piece.type = kSpControl;
    } else if (byte) {
      piece.type = kSpByte;
    } else {
      piece.piece = absl::StrReplaceAll(piece.piece, {{" ", "\xE2\x96\x81"}});
    }
    pieces.push_back(std::move(piece));
  }
  return pieces;
}

inline std::string SentencePieceModelFromLlama2c(absl::string_view tokenizer_bin, int64_t vocab) {
  return SerializeSentencePieceModel(SpPiecesFromLlama2c(tokenizer_bin, vocab));
}

}  // namespace catq::testing

#endif  // CATQ_TESTS_MODEL_SENTENCEPIECE_FIXTURE_H_
