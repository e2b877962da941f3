#include "core/model/sentencepiece_model.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/model/protobuf_wire_reader.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// Field numbers of sentencepiece_model.proto.
namespace model_field {
constexpr uint32_t kPieces = 1;
constexpr uint32_t kTrainerSpec = 2;
constexpr uint32_t kNormalizerSpec = 3;
}  // namespace model_field
namespace piece_field {
constexpr uint32_t kPiece = 1;
constexpr uint32_t kScore = 2;
constexpr uint32_t kType = 3;
}  // namespace piece_field
namespace trainer_field {
constexpr uint32_t kModelType = 3;
constexpr uint32_t kTreatWhitespaceAsSuffix = 24;
constexpr uint32_t kByteFallback = 35;
constexpr uint32_t kUnkId = 40;
constexpr uint32_t kBosId = 41;
constexpr uint32_t kEosId = 42;
constexpr uint32_t kPadId = 43;
}  // namespace trainer_field
namespace normalizer_field {
constexpr uint32_t kName = 1;
constexpr uint32_t kPrecompiledCharsmap = 2;
constexpr uint32_t kAddDummyPrefix = 3;
constexpr uint32_t kRemoveExtraWhitespaces = 4;
constexpr uint32_t kEscapeWhitespaces = 5;
}  // namespace normalizer_field

constexpr WireFieldName kModelFieldNames[] = {{model_field::kPieces, "pieces"},
                                              {model_field::kTrainerSpec, "trainer_spec"},
                                              {model_field::kNormalizerSpec, "normalizer_spec"}};
constexpr WireFieldName kPieceFieldNames[] = {
    {piece_field::kPiece, "piece"}, {piece_field::kScore, "score"}, {piece_field::kType, "type"}};
constexpr WireFieldName kTrainerFieldNames[] = {
    {trainer_field::kModelType, "model_type"},
    {trainer_field::kTreatWhitespaceAsSuffix, "treat_whitespace_as_suffix"},
    {trainer_field::kByteFallback, "byte_fallback"},
    {trainer_field::kUnkId, "unk_id"},
    {trainer_field::kBosId, "bos_id"},
    {trainer_field::kEosId, "eos_id"},
    {trainer_field::kPadId, "pad_id"}};
constexpr WireFieldName kNormalizerFieldNames[] = {
    {normalizer_field::kName, "name"},
    {normalizer_field::kPrecompiledCharsmap, "precompiled_charsmap"},
    {normalizer_field::kAddDummyPrefix, "add_dummy_prefix"},
    {normalizer_field::kRemoveExtraWhitespaces, "remove_extra_whitespaces"},
    {normalizer_field::kEscapeWhitespaces, "escape_whitespaces"}};

absl::Status UndefinedEnum(absl::string_view name, const WireField& field, int32_t value) {
  return absl::InvalidArgumentError(absl::StrCat(name, " at byte offset ", field.offset, ": value ",
                                                 value,
                                                 " is not defined in sentencepiece_model.proto"));
}

// Reads a field into `target` (keeping where it was) with a typed getter.
template <typename T, typename Getter>
absl::Status ReadInto(ProtoValue<T>& target, const WireField& field, const std::string& name,
                      Getter getter) {
  CATQ_ASSIGN_OR_RETURN(auto value, getter(field, name));
  target.value = T(value);
  target.offset = static_cast<int64_t>(field.offset);
  return absl::OkStatus();
}

absl::Status ParsePieceField(const WireField& field, const std::string& prefix,
                             SentencePiece& piece) {
  switch (field.number) {
    case piece_field::kPiece: {
      const std::string name = prefix + ".piece";
      CATQ_ASSIGN_OR_RETURN(absl::string_view text, WireBytes(field, name));
      if (text.size() > kMaxSentencePieceBytes) {
        return absl::InvalidArgumentError(absl::StrCat(name, " at byte offset ", field.offset, ": ",
                                                       text.size(), " bytes, more than ",
                                                       kMaxSentencePieceBytes));
      }
      piece.piece = std::string(text);
      return absl::OkStatus();
    }
    case piece_field::kScore: {
      CATQ_ASSIGN_OR_RETURN(piece.score, WireFloat(field, prefix + ".score"));
      return absl::OkStatus();
    }
    case piece_field::kType: {
      const std::string name = prefix + ".type";
      CATQ_ASSIGN_OR_RETURN(int32_t type, WireInt32(field, name));
      if (type < 1 || type > 6) return UndefinedEnum(name, field, type);
      piece.type = static_cast<SentencePieceType>(type);
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

absl::StatusOr<SentencePiece> ParsePiece(const WireField& message, const std::string& prefix) {
  SentencePiece piece;
  piece.offset = message.offset;
  ProtobufWireReader reader(message.bytes, message.bytes_offset, prefix, kPieceFieldNames);
  while (true) {
    CATQ_ASSIGN_OR_RETURN(std::optional<WireField> field, reader.Next());
    if (!field) break;
    CATQ_RETURN_IF_ERROR(ParsePieceField(*field, prefix, piece));
  }
  if (piece.piece.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ".piece at byte offset ", message.offset,
                                                   ": empty or absent (a piece needs text)"));
  }
  return piece;
}

absl::Status ParseTrainerField(const WireField& field, const std::string& prefix,
                               SentencePieceTrainerSpec& spec) {
  switch (field.number) {
    case trainer_field::kModelType: {
      const std::string name = prefix + ".model_type";
      CATQ_ASSIGN_OR_RETURN(int32_t type, WireInt32(field, name));
      if (type < 1 || type > 4) return UndefinedEnum(name, field, type);
      spec.model_type = {static_cast<SentencePieceModelType>(type),
                         static_cast<int64_t>(field.offset)};
      return absl::OkStatus();
    }
    case trainer_field::kTreatWhitespaceAsSuffix:
      return ReadInto(spec.treat_whitespace_as_suffix, field,
                      prefix + ".treat_whitespace_as_suffix", WireBool);
    case trainer_field::kByteFallback:
      return ReadInto(spec.byte_fallback, field, prefix + ".byte_fallback", WireBool);
    case trainer_field::kUnkId:
      return ReadInto(spec.unk_id, field, prefix + ".unk_id", WireInt32);
    case trainer_field::kBosId:
      return ReadInto(spec.bos_id, field, prefix + ".bos_id", WireInt32);
    case trainer_field::kEosId:
      return ReadInto(spec.eos_id, field, prefix + ".eos_id", WireInt32);
    case trainer_field::kPadId:
      return ReadInto(spec.pad_id, field, prefix + ".pad_id", WireInt32);
    default:
      return absl::OkStatus();
  }
}

absl::Status ParseNormalizerField(const WireField& field, const std::string& prefix,
                                  SentencePieceNormalizerSpec& spec) {
  switch (field.number) {
    case normalizer_field::kName:
      return ReadInto(spec.name, field, prefix + ".name", WireBytes);
    case normalizer_field::kPrecompiledCharsmap:
      return ReadInto(spec.precompiled_charsmap, field, prefix + ".precompiled_charsmap",
                      WireBytes);
    case normalizer_field::kAddDummyPrefix:
      return ReadInto(spec.add_dummy_prefix, field, prefix + ".add_dummy_prefix", WireBool);
    case normalizer_field::kRemoveExtraWhitespaces:
      return ReadInto(spec.remove_extra_whitespaces, field, prefix + ".remove_extra_whitespaces",
                      WireBool);
    case normalizer_field::kEscapeWhitespaces:
      return ReadInto(spec.escape_whitespaces, field, prefix + ".escape_whitespaces", WireBool);
    default:
      return absl::OkStatus();
  }
}

// Parses the message in `message` field by field with `parse_field`; a
// message given twice merges into the same spec, as protobuf merges it.
template <typename Spec, typename ParseField>
absl::Status ParseSpec(const WireField& message, const std::string& prefix,
                       absl::Span<const WireFieldName> names, Spec& spec, ParseField parse_field) {
  CATQ_RETURN_IF_ERROR(WireBytes(message, prefix).status());
  ProtobufWireReader reader(message.bytes, message.bytes_offset, prefix, names);
  while (true) {
    CATQ_ASSIGN_OR_RETURN(std::optional<WireField> field, reader.Next());
    if (!field) return absl::OkStatus();
    CATQ_RETURN_IF_ERROR(parse_field(*field, prefix, spec));
  }
}

absl::Status ParseModelField(const WireField& field, const std::string& file,
                             SentencePieceModel& model) {
  switch (field.number) {
    case model_field::kPieces: {
      const std::string prefix = absl::StrCat(file, ": pieces[", model.pieces.size(), "]");
      CATQ_RETURN_IF_ERROR(WireBytes(field, prefix).status());
      if (model.pieces.size() >= kMaxSentencePieces) {
        return absl::InvalidArgumentError(absl::StrCat(prefix, " at byte offset ", field.offset,
                                                       ": more than ", kMaxSentencePieces,
                                                       " pieces"));
      }
      CATQ_ASSIGN_OR_RETURN(SentencePiece piece, ParsePiece(field, prefix));
      model.pieces.push_back(std::move(piece));
      return absl::OkStatus();
    }
    case model_field::kTrainerSpec:
      if (model.trainer_spec_offset < 0) {
        model.trainer_spec_offset = static_cast<int64_t>(field.offset);
      }
      return ParseSpec(field, file + ": trainer_spec", kTrainerFieldNames, model.trainer_spec,
                       ParseTrainerField);
    case model_field::kNormalizerSpec:
      if (model.normalizer_spec_offset < 0) {
        model.normalizer_spec_offset = static_cast<int64_t>(field.offset);
      }
      return ParseSpec(field, file + ": normalizer_spec", kNormalizerFieldNames,
                       model.normalizer_spec, ParseNormalizerField);
    default:
      return absl::OkStatus();
  }
}

}  // namespace

absl::StatusOr<SentencePieceModel> ParseSentencePieceModel(absl::string_view bytes,
                                                           absl::string_view file_name) {
  const std::string file(file_name);
  if (bytes.size() > kMaxSentencePieceModelBytes) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", bytes.size(),
                                                   " bytes, more than a SentencePiece model's ",
                                                   kMaxSentencePieceModelBytes));
  }
  SentencePieceModel model;
  ProtobufWireReader reader(bytes, 0, file, kModelFieldNames);
  while (true) {
    CATQ_ASSIGN_OR_RETURN(std::optional<WireField> field, reader.Next());
    if (!field) break;
    CATQ_RETURN_IF_ERROR(ParseModelField(*field, file, model));
  }
  if (model.pieces.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": pieces (field 1) at byte offset 0..",
                                                   bytes.size(), ": none in the file"));
  }
  return model;
}

}  // namespace catq
