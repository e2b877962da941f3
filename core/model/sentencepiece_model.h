// File: core/model/sentencepiece_model.h
//
// SentencePiece's model file (`tokenizer.model` of Hugging Face Llama models):
// a serialized `sentencepiece.ModelProto` (proto2, sentencepiece_model.proto),
// read with catq's own wire reader (protobuf_wire_reader.h) rather than
// libsentencepiece, whose generated code aborts in a process that links
// another protobuf version (as catq does through gRPC). Only the fields that
// decide how text is encoded are kept:
//
//   ModelProto       pieces = 1 (repeated), trainer_spec = 2, normalizer_spec = 3
//   SentencePiece    piece = 1, score = 2, type = 3 (default NORMAL)
//   TrainerSpec      model_type = 3 (default UNIGRAM), treat_whitespace_as_suffix = 24,
//                    byte_fallback = 35, unk_id = 40 (0), bos_id = 41 (1),
//                    eos_id = 42 (2), pad_id = 43 (-1)
//   NormalizerSpec   name = 1, precompiled_charsmap = 2, add_dummy_prefix = 3 (true),
//                    remove_extra_whitespaces = 4 (true), escape_whitespaces = 5 (true)
//
// Other fields, of any wire type, are skipped. An absent field has its proto2
// default; a repeated singular field keeps its last value and a repeated
// message is merged, as protobuf does. Turning the model into a tokenizer,
// and refusing what catq cannot encode, is sentencepiece_tokenizer.h's job.
//
//   CATQ_ASSIGN_OR_RETURN(SentencePieceModel model,
//                         ParseSentencePieceModel(bytes, "tokenizer.model"));
//
// Thread-safety: pure functions.
#ifndef CATQ_CORE_MODEL_SENTENCEPIECE_MODEL_H_
#define CATQ_CORE_MODEL_SENTENCEPIECE_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace catq {

// Larger files are refused before parsing (Llama's is 0.5 MB; vocabularies
// of 256k pieces take a few MB).
inline constexpr size_t kMaxSentencePieceModelBytes = size_t{64} << 20;
inline constexpr size_t kMaxSentencePieces = size_t{1} << 21;
inline constexpr size_t kMaxSentencePieceBytes = 4096;

// A field's value and the byte offset of its tag in the file; offset -1 when
// the file leaves the field out and `value` is the proto2 default.
template <typename T>
struct ProtoValue {
  T value;
  int64_t offset = -1;
};

enum class SentencePieceType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct SentencePiece {
  std::string piece;
  float score = 0.0f;
  SentencePieceType type = SentencePieceType::kNormal;
  size_t offset = 0;  // Of the piece's message in the file.
};

enum class SentencePieceModelType : int32_t {
  kUnigram = 1,
  kBpe = 2,
  kWord = 3,
  kChar = 4,
};

struct SentencePieceTrainerSpec {
  ProtoValue<SentencePieceModelType> model_type{SentencePieceModelType::kUnigram};
  ProtoValue<bool> treat_whitespace_as_suffix{false};
  ProtoValue<bool> byte_fallback{false};
  ProtoValue<int32_t> unk_id{0};
  ProtoValue<int32_t> bos_id{1};
  ProtoValue<int32_t> eos_id{2};
  ProtoValue<int32_t> pad_id{-1};
};

struct SentencePieceNormalizerSpec {
  ProtoValue<std::string> name{""};
  ProtoValue<std::string> precompiled_charsmap{""};
  ProtoValue<bool> add_dummy_prefix{true};
  ProtoValue<bool> remove_extra_whitespaces{true};
  ProtoValue<bool> escape_whitespaces{true};
};

struct SentencePieceModel {
  std::vector<SentencePiece> pieces;
  SentencePieceTrainerSpec trainer_spec;
  SentencePieceNormalizerSpec normalizer_spec;
  // Of the first trainer_spec / normalizer_spec field, -1 when absent.
  int64_t trainer_spec_offset = -1;
  int64_t normalizer_spec_offset = -1;
};

// ParseSentencePieceModel
//
// The fields above from `bytes`. InvalidArgument, prefixed with `file_name`
// and naming the field and the byte offset, for malformed wire format (a
// truncated varint, a length past the end, a known field with the wrong wire
// type), an enum value the proto does not define, a file over
// kMaxSentencePieceModelBytes, more than kMaxSentencePieces pieces, a piece
// that is empty or longer than kMaxSentencePieceBytes, and a file without
// pieces.
absl::StatusOr<SentencePieceModel> ParseSentencePieceModel(absl::string_view bytes,
                                                           absl::string_view file_name);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_SENTENCEPIECE_MODEL_H_
