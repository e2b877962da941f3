#include "core/model/sentencepiece_tokenizer.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

constexpr absl::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581
// llama2.c's encoder never merges into a piece scoring at or below this.
constexpr float kNoMergeScore = -1e10f;

std::string Where(int64_t offset) {
  if (offset < 0) return " (absent, so the proto2 default)";
  return absl::StrCat(" at byte offset ", offset);
}

template <typename T>
absl::Status Refuse(absl::string_view file, absl::string_view field, const ProtoValue<T>& value,
                    absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": ", field, Where(value.offset), ": ", why));
}

const char* ModelTypeName(SentencePieceModelType type) {
  switch (type) {
    case SentencePieceModelType::kUnigram:
      return "UNIGRAM";
    case SentencePieceModelType::kBpe:
      return "BPE";
    case SentencePieceModelType::kWord:
      return "WORD";
    case SentencePieceModelType::kChar:
      return "CHAR";
  }
  return "unknown";
}

absl::Status CheckSpecialId(absl::string_view file, absl::string_view field,
                            const ProtoValue<int32_t>& id, int32_t expected) {
  if (id.value == expected) return absl::OkStatus();
  return Refuse(
      file, field, id,
      absl::StrCat(id.value, "; catq's encoder needs ", expected, " (llama2.c's special ids)"));
}

absl::Status CheckTrainerSpec(const SentencePieceTrainerSpec& spec, absl::string_view file) {
  if (spec.model_type.value != SentencePieceModelType::kBpe) {
    return Refuse(
        file, "trainer_spec.model_type", spec.model_type,
        absl::StrCat(ModelTypeName(spec.model_type.value), "; catq encodes only BPE models"));
  }
  if (!spec.byte_fallback.value) {
    return Refuse(file, "trainer_spec.byte_fallback", spec.byte_fallback,
                  "false; catq encodes unknown characters only by byte fallback");
  }
  if (spec.treat_whitespace_as_suffix.value) {
    return Refuse(file, "trainer_spec.treat_whitespace_as_suffix", spec.treat_whitespace_as_suffix,
                  "true; catq puts the dummy space in front");
  }
  CATQ_RETURN_IF_ERROR(CheckSpecialId(file, "trainer_spec.unk_id", spec.unk_id, 0));
  CATQ_RETURN_IF_ERROR(
      CheckSpecialId(file, "trainer_spec.bos_id", spec.bos_id, Llama2cTokenizer::kBos));
  return CheckSpecialId(file, "trainer_spec.eos_id", spec.eos_id, Llama2cTokenizer::kEos);
}

absl::Status CheckNormalizerSpec(const SentencePieceNormalizerSpec& spec, absl::string_view file) {
  if (spec.name.value != "identity") {
    return Refuse(
        file, "normalizer_spec.name", spec.name,
        absl::StrCat("\"", spec.name.value, "\"; catq applies only the identity normalizer"));
  }
  if (!spec.precompiled_charsmap.value.empty()) {
    return Refuse(file, "normalizer_spec.precompiled_charsmap", spec.precompiled_charsmap,
                  "not empty; catq applies no normalization rules");
  }
  if (!spec.add_dummy_prefix.value) {
    return Refuse(file, "normalizer_spec.add_dummy_prefix", spec.add_dummy_prefix,
                  "false; catq's encoder always adds the dummy prefix");
  }
  if (spec.remove_extra_whitespaces.value) {
    return Refuse(file, "normalizer_spec.remove_extra_whitespaces", spec.remove_extra_whitespaces,
                  "true; catq keeps whitespace as it is");
  }
  if (!spec.escape_whitespaces.value) {
    return Refuse(file, "normalizer_spec.escape_whitespaces", spec.escape_whitespaces,
                  "false; catq reads pieces with U+2581 for a space");
  }
  return absl::OkStatus();
}

absl::Status PieceError(absl::string_view file, size_t index, const SentencePiece& piece,
                        absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": pieces[", index, "] (\"", piece.piece,
                                                 "\") at byte offset ", piece.offset, ": ", why));
}

// The type piece `index` must have, where the encoder fixes it.
absl::Status CheckPieceType(absl::string_view file, size_t index, const SentencePiece& piece) {
  const SentencePieceType type = piece.type;
  const bool byte_id = index >= static_cast<size_t>(Llama2cTokenizer::kByteFallbackOffset) &&
                       index < static_cast<size_t>(Llama2cTokenizer::kByteFallbackOffset) + 256;
  if (index == 0 && type != SentencePieceType::kUnknown) {
    return PieceError(file, index, piece, "the unknown piece (unk_id 0) must have type UNKNOWN");
  }
  if ((index == 1 || index == 2) && type != SentencePieceType::kControl) {
    return PieceError(file, index, piece, "bos and eos pieces must have type CONTROL");
  }
  if (byte_id != (type == SentencePieceType::kByte)) {
    return PieceError(file, index, piece,
                      "ids 3..258 must be the BYTE pieces <0x00>..<0xFF>, and only they");
  }
  if (type == SentencePieceType::kUserDefined || type == SentencePieceType::kUnused) {
    return PieceError(file, index, piece,
                      "USER_DEFINED and UNUSED pieces are not supported by catq's encoder");
  }
  if (type == SentencePieceType::kNormal &&
      !(std::isfinite(piece.score) && piece.score > kNoMergeScore)) {
    return PieceError(file, index, piece,
                      absl::StrCat("score ", piece.score,
                                   " of a NORMAL piece is not finite or "
                                   "not above -1e10"));
  }
  if (piece.piece.find(' ') != std::string::npos) {
    return PieceError(file, index, piece, "a plain space, which escaped text never holds");
  }
  return absl::OkStatus();
}

absl::StatusOr<Llama2cTokenizer::Vocabulary> ConvertPieces(const SentencePieceModel& model,
                                                           absl::string_view file) {
  Llama2cTokenizer::Vocabulary vocabulary;
  vocabulary.sentencepiece_normalization = true;
  absl::flat_hash_map<std::string, size_t> seen;
  for (size_t i = 0; i < model.pieces.size(); ++i) {
    const SentencePiece& piece = model.pieces[i];
    CATQ_RETURN_IF_ERROR(CheckPieceType(file, i, piece));
    std::string text = absl::StrReplaceAll(piece.piece, {{kEscapedSpace, " "}});
    auto [it, inserted] = seen.try_emplace(text, i);
    if (!inserted) {
      return PieceError(file, i, piece, absl::StrCat("the same text as pieces[", it->second, "]"));
    }
    vocabulary.pieces.push_back(std::move(text));
    vocabulary.scores.push_back(piece.score);
    vocabulary.merge_targets.push_back(piece.type == SentencePieceType::kNormal);
  }
  return vocabulary;
}

}  // namespace

absl::StatusOr<Llama2cTokenizer> TokenizerFromSentencePiece(const SentencePieceModel& model,
                                                            int64_t vocab_size,
                                                            absl::string_view file_name) {
  if (static_cast<int64_t>(model.pieces.size()) != vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_name, ": pieces (field 1): ", model.pieces.size(), " pieces (the last at byte offset ",
        model.pieces.empty() ? 0 : model.pieces.back().offset, "), but the model's vocab_size is ",
        vocab_size, "; does the tokenizer belong to this model?"));
  }
  CATQ_RETURN_IF_ERROR(CheckTrainerSpec(model.trainer_spec, file_name));
  CATQ_RETURN_IF_ERROR(CheckNormalizerSpec(model.normalizer_spec, file_name));
  CATQ_ASSIGN_OR_RETURN(Llama2cTokenizer::Vocabulary vocabulary, ConvertPieces(model, file_name));
  return Llama2cTokenizer::FromVocabulary(std::move(vocabulary), file_name);
}

absl::StatusOr<Llama2cTokenizer> ParseSentencePieceTokenizer(absl::string_view bytes,
                                                             int64_t vocab_size,
                                                             absl::string_view file_name) {
  CATQ_ASSIGN_OR_RETURN(SentencePieceModel model, ParseSentencePieceModel(bytes, file_name));
  return TokenizerFromSentencePiece(model, vocab_size, file_name);
}

absl::StatusOr<Llama2cTokenizer> LoadSentencePieceTokenizer(Env* env, const std::string& path,
                                                            int64_t vocab_size) {
  CATQ_ASSIGN_OR_RETURN(uint64_t size, env->GetFileSize(path));
  if (size > kMaxSentencePieceModelBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", size,
                                                   " bytes, more than a SentencePiece model's ",
                                                   kMaxSentencePieceModelBytes));
  }
  CATQ_ASSIGN_OR_RETURN(std::string bytes, env->ReadFile(path));
  return ParseSentencePieceTokenizer(bytes, vocab_size, path);
}

}  // namespace catq
