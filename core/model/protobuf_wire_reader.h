// File: core/model/protobuf_wire_reader.h
//
// A bounds-checked reader of the protobuf wire format, for the one protobuf
// file catq reads without generated code (SentencePiece's tokenizer.model;
// see sentencepiece_model.h for why). A message is a sequence of fields, each
// a varint tag (field number << 3 | wire type) and a value: a varint (wire
// type 0), 8 bytes (1), a varint length and that many bytes (2), or 4 bytes
// (5). Groups (3 and 4, deprecated) are skipped whole. Every error is
// InvalidArgument naming the context (file and field path) and the byte
// offset in the file, so nested messages keep their absolute offsets.
//
//   ProtobufWireReader reader(bytes, /*base_offset=*/0, "tokenizer.model");
//   while (true) {
//     CATQ_ASSIGN_OR_RETURN(std::optional<WireField> field, reader.Next());
//     if (!field) break;
//     if (field->number == 2) {
//       CATQ_ASSIGN_OR_RETURN(float score, WireFloat(*field, "tokenizer.model: score"));
//     }
//   }
//
// Thread-safety: a reader is not shared; the free functions are pure.
#ifndef CATQ_CORE_MODEL_PROTOBUF_WIRE_READER_H_
#define CATQ_CORE_MODEL_PROTOBUF_WIRE_READER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace catq {

enum class WireType : uint8_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

// One field as read: its number, wire type and raw value.
struct WireField {
  uint32_t number = 0;
  WireType type = WireType::kVarint;
  size_t offset = 0;        // Of the tag, in the file.
  uint64_t varint = 0;      // kVarint.
  uint64_t fixed = 0;       // kFixed32 (low 32 bits) and kFixed64.
  absl::string_view bytes;  // kLengthDelimited.
  size_t bytes_offset = 0;  // Of `bytes`, in the file.
};

// A field's name in the message, for errors about its bytes.
struct WireFieldName {
  uint32_t number;
  const char* name;
};

class ProtobufWireReader {
 public:
  // `bytes` holds one message, which starts at `base_offset` in the file;
  // `context` (e.g. "tokenizer.model: trainer_spec") prefixes every error,
  // which names a field by `names` when listed there ("pieces (field 1)"),
  // else by number.
  ProtobufWireReader(absl::string_view bytes, size_t base_offset, std::string context,
                     absl::Span<const WireFieldName> names = {});

  // Next: the next field, or nullopt at the end of the message. Errors: a
  // truncated or over-long varint, a tag with field number 0 or wire type 6
  // or 7, a length or fixed value past the end, an unbalanced group.
  absl::StatusOr<std::optional<WireField>> Next();

 private:
  absl::StatusOr<uint64_t> ReadVarint(absl::string_view what);
  absl::StatusOr<WireField> ReadField();
  absl::Status ReadValue(WireField& field);
  absl::Status SkipGroup(const WireField& start);
  absl::Status Error(size_t at, absl::string_view what) const;
  std::string FieldName(uint32_t number) const;

  absl::string_view bytes_;
  size_t pos_ = 0;
  size_t base_offset_;
  std::string context_;
  absl::Span<const WireFieldName> names_;
};

// The typed values of a field. `name` is the field's full name in errors
// (e.g. "tokenizer.model: pieces[3].score"); each refuses a wire type other
// than the one its protobuf type is written with.
absl::StatusOr<uint64_t> WireVarint(const WireField& field, absl::string_view name);
// WireInt32: int32 and enum fields, which protobuf writes sign-extended to 64
// bits and reads back truncated to 32.
absl::StatusOr<int32_t> WireInt32(const WireField& field, absl::string_view name);
absl::StatusOr<bool> WireBool(const WireField& field, absl::string_view name);
absl::StatusOr<float> WireFloat(const WireField& field, absl::string_view name);
absl::StatusOr<absl::string_view> WireBytes(const WireField& field, absl::string_view name);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_PROTOBUF_WIRE_READER_H_
