#include "core/model/protobuf_wire_reader.h"

#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// A varint holds at most 64 bits: 10 bytes, the last one 0 or 1.
constexpr int kMaxVarintBytes = 10;
constexpr uint32_t kMaxFieldNumber = (1u << 29) - 1;
// Nested groups deeper than this are refused rather than walked.
constexpr size_t kMaxGroupDepth = 64;

const char* WireTypeName(WireType type) {
  switch (type) {
    case WireType::kVarint:
      return "0 (varint)";
    case WireType::kFixed64:
      return "1 (64-bit)";
    case WireType::kLengthDelimited:
      return "2 (length-delimited)";
    case WireType::kStartGroup:
      return "3 (start group)";
    case WireType::kEndGroup:
      return "4 (end group)";
    case WireType::kFixed32:
      return "5 (32-bit)";
  }
  return "unknown";
}

absl::Status CheckWireType(const WireField& field, WireType expected, absl::string_view name) {
  if (field.type == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      name, " (field ", field.number, ") at byte offset ", field.offset, ": wire type ",
      WireTypeName(field.type), ", expected ", WireTypeName(expected)));
}

}  // namespace

ProtobufWireReader::ProtobufWireReader(absl::string_view bytes, size_t base_offset,
                                       std::string context, absl::Span<const WireFieldName> names)
    : bytes_(bytes), base_offset_(base_offset), context_(std::move(context)), names_(names) {}

std::string ProtobufWireReader::FieldName(uint32_t number) const {
  for (const WireFieldName& name : names_) {
    if (name.number == number) return absl::StrCat(name.name, " (field ", number, ")");
  }
  return absl::StrCat("field ", number);
}

absl::Status ProtobufWireReader::Error(size_t at, absl::string_view what) const {
  return absl::InvalidArgumentError(
      absl::StrCat(context_, " at byte offset ", base_offset_ + at, ": ", what));
}

absl::StatusOr<uint64_t> ProtobufWireReader::ReadVarint(absl::string_view what) {
  const size_t start = pos_;
  uint64_t value = 0;
  for (int i = 0; i < kMaxVarintBytes; ++i) {
    if (pos_ >= bytes_.size()) {
      return Error(start, absl::StrCat("truncated varint (", what, ")"));
    }
    const uint8_t byte = static_cast<uint8_t>(bytes_[pos_++]);
    if (i == kMaxVarintBytes - 1 && byte > 1) {
      return Error(start, absl::StrCat("varint longer than 64 bits (", what, ")"));
    }
    value |= static_cast<uint64_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) return value;
  }
  return Error(start, absl::StrCat("varint longer than 64 bits (", what, ")"));
}

absl::StatusOr<WireField> ProtobufWireReader::ReadField() {
  WireField field;
  field.offset = base_offset_ + pos_;
  const size_t tag_at = pos_;
  CATQ_ASSIGN_OR_RETURN(uint64_t tag, ReadVarint("tag"));
  const uint64_t number = tag >> 3;
  const uint64_t type = tag & 7;
  if (number == 0 || number > kMaxFieldNumber) {
    return Error(tag_at, absl::StrCat("field number ", number, " outside 1..", kMaxFieldNumber));
  }
  if (type > 5) return Error(tag_at, absl::StrCat("wire type ", type, " does not exist"));
  field.number = static_cast<uint32_t>(number);
  field.type = static_cast<WireType>(type);
  CATQ_RETURN_IF_ERROR(ReadValue(field));
  return field;
}

absl::Status ProtobufWireReader::ReadValue(WireField& field) {
  const size_t value_at = pos_;
  const std::string what = FieldName(field.number);
  switch (field.type) {
    case WireType::kVarint: {
      CATQ_ASSIGN_OR_RETURN(field.varint, ReadVarint(what));
      return absl::OkStatus();
    }
    case WireType::kFixed64:
    case WireType::kFixed32: {
      const size_t size = field.type == WireType::kFixed64 ? 8 : 4;
      if (bytes_.size() - pos_ < size) {
        return Error(value_at, absl::StrCat(what, ": ", size, "-byte value runs past the end (",
                                            bytes_.size() - pos_, " bytes left)"));
      }
      uint64_t value = 0;
      std::memcpy(&value, bytes_.data() + pos_, size);  // Little-endian, as is the host.
      field.fixed = value;
      pos_ += size;
      return absl::OkStatus();
    }
    case WireType::kLengthDelimited: {
      CATQ_ASSIGN_OR_RETURN(uint64_t length, ReadVarint(absl::StrCat(what, " length")));
      if (length > bytes_.size() - pos_) {
        return Error(value_at, absl::StrCat(what, ": length ", length, " runs past the end (",
                                            bytes_.size() - pos_, " bytes left)"));
      }
      field.bytes_offset = base_offset_ + pos_;
      field.bytes = bytes_.substr(pos_, static_cast<size_t>(length));
      pos_ += static_cast<size_t>(length);
      return absl::OkStatus();
    }
    case WireType::kStartGroup:
    case WireType::kEndGroup:
      return absl::OkStatus();  // No value of their own.
  }
  return absl::OkStatus();
}

absl::Status ProtobufWireReader::SkipGroup(const WireField& start) {
  std::vector<uint32_t> open = {start.number};
  while (!open.empty()) {
    if (pos_ >= bytes_.size()) {
      return Error(start.offset - base_offset_,
                   absl::StrCat("group ", start.number, " has no end-group tag"));
    }
    const size_t at = pos_;
    CATQ_ASSIGN_OR_RETURN(WireField field, ReadField());
    if (field.type == WireType::kStartGroup) {
      if (open.size() >= kMaxGroupDepth) {
        return Error(at, absl::StrCat("groups nested deeper than ", kMaxGroupDepth));
      }
      open.push_back(field.number);
    } else if (field.type == WireType::kEndGroup) {
      if (field.number != open.back()) {
        return Error(at,
                     absl::StrCat("end of group ", field.number, " inside group ", open.back()));
      }
      open.pop_back();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<WireField>> ProtobufWireReader::Next() {
  while (pos_ < bytes_.size()) {
    const size_t at = pos_;
    CATQ_ASSIGN_OR_RETURN(WireField field, ReadField());
    if (field.type == WireType::kEndGroup) {
      return Error(at, absl::StrCat("end of group ", field.number, " that was never started"));
    }
    if (field.type != WireType::kStartGroup) return field;
    CATQ_RETURN_IF_ERROR(SkipGroup(field));
  }
  return std::nullopt;
}

absl::StatusOr<uint64_t> WireVarint(const WireField& field, absl::string_view name) {
  CATQ_RETURN_IF_ERROR(CheckWireType(field, WireType::kVarint, name));
  return field.varint;
}

absl::StatusOr<int32_t> WireInt32(const WireField& field, absl::string_view name) {
  CATQ_ASSIGN_OR_RETURN(uint64_t value, WireVarint(field, name));
  return static_cast<int32_t>(static_cast<uint32_t>(value));
}

absl::StatusOr<bool> WireBool(const WireField& field, absl::string_view name) {
  CATQ_ASSIGN_OR_RETURN(uint64_t value, WireVarint(field, name));
  return value != 0;
}

absl::StatusOr<float> WireFloat(const WireField& field, absl::string_view name) {
  CATQ_RETURN_IF_ERROR(CheckWireType(field, WireType::kFixed32, name));
  const uint32_t bits = static_cast<uint32_t>(field.fixed);
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

absl::StatusOr<absl::string_view> WireBytes(const WireField& field, absl::string_view name) {
  CATQ_RETURN_IF_ERROR(CheckWireType(field, WireType::kLengthDelimited, name));
  return field.bytes;
}

}  // namespace catq
