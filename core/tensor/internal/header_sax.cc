#include "core/tensor/internal/header_sax.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/tensor/internal/text.h"

namespace catq::tensor_internal {
namespace {

constexpr absl::string_view kMetadataKey = "__metadata__";

}  // namespace

// Scalar and container events all funnel into OnValue, so that each level
// decides in one place what it accepts.
bool HeaderSaxHandler::null() { return OnValue({Kind::kNull}); }
bool HeaderSaxHandler::boolean(bool value) {
  return OnValue({Kind::kBool, 0, 0, value ? "true" : "false"});
}
bool HeaderSaxHandler::number_integer(number_integer_t value) {
  return OnValue({Kind::kInteger, value});
}
bool HeaderSaxHandler::number_unsigned(number_unsigned_t value) {
  return OnValue({Kind::kUnsigned, 0, value});
}
bool HeaderSaxHandler::number_float(number_float_t, const string_t& text) {
  return OnValue({Kind::kFloat, 0, 0, text});
}
bool HeaderSaxHandler::string(string_t& value) { return OnValue({Kind::kString, 0, 0, value}); }
bool HeaderSaxHandler::binary(binary_t&) { return Fail("header holds binary data"); }
bool HeaderSaxHandler::start_object(std::size_t) { return OnValue({Kind::kObject}); }
bool HeaderSaxHandler::start_array(std::size_t) { return OnValue({Kind::kArray}); }

bool HeaderSaxHandler::key(string_t& value) {
  switch (level_) {
    case Level::kRoot:
      if (value == kMetadataKey) {
        if (seen_metadata_) return Fail("duplicate key \"__metadata__\"");
        seen_metadata_ = true;
      }
      key_ = value;
      return true;
    case Level::kMetadata:
      if (metadata_.count(value) != 0) {
        return Fail(absl::StrCat("__metadata__: duplicate key ", Quote(value)));
      }
      key_ = value;
      return true;
    case Level::kTensor: {
      Field field = Field::kNone;
      bool* seen = nullptr;
      if (value == "dtype") {
        field = Field::kDType;
        seen = &has_dtype_;
      } else if (value == "shape") {
        field = Field::kShape;
        seen = &has_shape_;
      } else if (value == "data_offsets") {
        field = Field::kOffsets;
        seen = &has_offsets_;
      } else {
        return Fail(absl::StrCat(TensorContext(), ": unknown field ", Quote(value)));
      }
      if (*seen) return Fail(absl::StrCat(TensorContext(), ": duplicate field \"", value, "\""));
      *seen = true;
      field_ = field;
      return true;
    }
    default:
      return Fail("unexpected key");  // The parser never sends keys elsewhere.
  }
}

bool HeaderSaxHandler::end_object() {
  switch (level_) {
    case Level::kRoot:
      level_ = Level::kDone;
      return true;
    case Level::kMetadata:
      level_ = Level::kRoot;
      return true;
    case Level::kTensor:
      return EndTensor();
    default:
      return Fail("unexpected end of object");
  }
}

bool HeaderSaxHandler::end_array() {
  switch (level_) {
    case Level::kShape:
      level_ = Level::kTensor;
      return true;
    case Level::kOffsets:
      return EndOffsets();
    default:
      return Fail("unexpected end of array");
  }
}

bool HeaderSaxHandler::parse_error(std::size_t, const std::string&,
                                   const nlohmann::detail::exception& error) {
  // error.what() gives line, column and the last token read.
  return Fail(absl::StrCat("header is not valid JSON: ", error.what()));
}

bool HeaderSaxHandler::OnValue(const Value& value) {
  switch (level_) {
    case Level::kTop:
      if (value.kind != Kind::kObject) {
        return Fail(absl::StrCat("header must be a JSON object, got ", Describe(value)));
      }
      level_ = Level::kRoot;
      return true;
    case Level::kRoot:
      return OnRootValue(value);
    case Level::kMetadata:
      return OnMetadataValue(value);
    case Level::kTensor:
      return OnFieldValue(value);
    case Level::kShape:
    case Level::kOffsets:
      return OnArrayElement(value);
    case Level::kDone:
      break;
  }
  return Fail("unexpected value after the header object");
}

bool HeaderSaxHandler::OnRootValue(const Value& value) {
  if (key_ == kMetadataKey) {
    if (value.kind != Kind::kObject) {
      return Fail(absl::StrCat("__metadata__ must be an object, got ", Describe(value)));
    }
    level_ = Level::kMetadata;
    return true;
  }
  if (value.kind != Kind::kObject) {
    return Fail(
        absl::StrCat("tensor ", Quote(key_), ": entry must be an object, got ", Describe(value)));
  }
  tensor_ = TensorInfo();
  tensor_.name = std::move(key_);
  has_dtype_ = has_shape_ = has_offsets_ = false;
  offsets_count_ = 0;
  level_ = Level::kTensor;
  return true;
}

bool HeaderSaxHandler::OnMetadataValue(const Value& value) {
  if (value.kind != Kind::kString) {
    return Fail(absl::StrCat("__metadata__ ", Quote(key_), ": value must be a string, got ",
                             Describe(value)));
  }
  metadata_.emplace(std::move(key_), std::string(value.text));
  return true;
}

bool HeaderSaxHandler::OnFieldValue(const Value& value) {
  switch (field_) {
    case Field::kDType: {
      if (value.kind != Kind::kString) {
        return Fail(
            absl::StrCat(TensorContext(), ": dtype must be a string, got ", Describe(value)));
      }
      absl::StatusOr<DType> dtype = ParseDType(value.text);
      if (!dtype.ok()) return Fail(absl::StrCat(TensorContext(), ": ", dtype.status().message()));
      tensor_.dtype = *dtype;
      return true;
    }
    case Field::kShape:
    case Field::kOffsets:
      if (value.kind != Kind::kArray) {
        return Fail(absl::StrCat(TensorContext(), ": ", FieldName(field_),
                                 " must be an array, got ", Describe(value)));
      }
      level_ = field_ == Field::kShape ? Level::kShape : Level::kOffsets;
      return true;
    case Field::kNone:
      break;
  }
  return Fail("value without a key");  // The parser never sends one.
}

bool HeaderSaxHandler::OnArrayElement(const Value& value) {
  const bool is_shape = level_ == Level::kShape;
  const size_t index = is_shape ? tensor_.shape.size() : offsets_count_;
  const std::string where = absl::StrCat(is_shape ? "shape[" : "data_offsets[", index, "]");
  // "-0" arrives as a signed zero; any other signed number is negative.
  const bool non_negative_integer =
      value.kind == Kind::kUnsigned || (value.kind == Kind::kInteger && value.signed_value == 0);
  if (!non_negative_integer) {
    return Fail(absl::StrCat(TensorContext(), ": ", where, " must be a non-negative integer, got ",
                             Describe(value)));
  }
  const uint64_t number = value.kind == Kind::kUnsigned ? value.unsigned_value : 0;
  if (is_shape) {
    if (index >= kMaxSafetensorsRank) {
      return Fail(absl::StrCat(TensorContext(), ": shape has more than ", kMaxSafetensorsRank,
                               " dimensions"));
    }
    if (number > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Fail(absl::StrCat(TensorContext(), ": ", where, " = ", number, " exceeds int64"));
    }
    tensor_.shape.push_back(static_cast<int64_t>(number));
    return true;
  }
  if (index >= 2) {
    return Fail(absl::StrCat(TensorContext(), ": data_offsets must have 2 entries, got more"));
  }
  (index == 0 ? tensor_.data_begin : tensor_.data_end) = number;
  ++offsets_count_;
  return true;
}

bool HeaderSaxHandler::EndOffsets() {
  if (offsets_count_ != 2) {
    return Fail(
        absl::StrCat(TensorContext(), ": data_offsets must have 2 entries, got ", offsets_count_));
  }
  level_ = Level::kTensor;
  return true;
}

bool HeaderSaxHandler::EndTensor() {
  const std::pair<bool, Field> fields[] = {
      {has_dtype_, Field::kDType}, {has_shape_, Field::kShape}, {has_offsets_, Field::kOffsets}};
  for (const auto& [present, field] : fields) {
    if (!present) {
      return Fail(absl::StrCat(TensorContext(), ": missing field \"", FieldName(field), "\""));
    }
  }
  tensors_.push_back(std::move(tensor_));
  tensor_ = TensorInfo();
  field_ = Field::kNone;
  level_ = Level::kRoot;
  return true;
}

bool HeaderSaxHandler::Fail(std::string message) {
  if (status_.ok()) status_ = absl::InvalidArgumentError(std::move(message));
  return false;  // Stops the parser.
}

absl::string_view HeaderSaxHandler::FieldName(Field field) {
  switch (field) {
    case Field::kDType:
      return "dtype";
    case Field::kShape:
      return "shape";
    case Field::kOffsets:
      return "data_offsets";
    case Field::kNone:
      break;
  }
  return "?";
}

std::string HeaderSaxHandler::TensorContext() const {
  return absl::StrCat("tensor ", Quote(tensor_.name));
}

std::string HeaderSaxHandler::Describe(const Value& value) {
  switch (value.kind) {
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return std::string(value.text);
    case Kind::kInteger:
      return absl::StrCat(value.signed_value);
    case Kind::kUnsigned:
      return absl::StrCat(value.unsigned_value);
    case Kind::kFloat:
      return absl::StrCat(value.text.substr(0, 40), value.text.size() > 40 ? "..." : "");
    case Kind::kString:
      return absl::StrCat("string ", Quote(value.text));
    case Kind::kObject:
      return "an object";
    case Kind::kArray:
      return "an array";
  }
  return "a value";
}

}  // namespace catq::tensor_internal
