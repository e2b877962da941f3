// File: core/tensor/internal/header_sax.h
//
// HeaderSaxHandler turns nlohmann SAX events into TensorInfo records, checking
// the structure of a safetensors header as the events arrive. Streaming keeps
// memory proportional to the tensors found (no generic JSON tree, which a
// hostile 100 MB header could inflate twenty-fold) and stops at the first
// error. Unexpected nesting fails at once, so depth is bounded by 4.
//
//   HeaderSaxHandler handler;
//   nlohmann::json::sax_parse(begin, end, &handler);
//   if (!handler.status().ok()) return handler.status();
//   std::vector<TensorInfo> tensors = handler.TakeTensors();  // JSON order
//
// Checks here: one object; "__metadata__" an object of strings; each tensor
// entry an object with exactly dtype (known name), shape (array of at most
// kMaxSafetensorsRank integers in [0, INT64_MAX]) and data_offsets (array of
// two unsigned integers); no duplicate keys inside an entry or the metadata.
// Sizes, offsets and duplicate tensor names are checked by the caller.
//
// Not thread-safe; use one handler per parse.
#ifndef CATQ_CORE_TENSOR_INTERNAL_HEADER_SAX_H_
#define CATQ_CORE_TENSOR_INTERNAL_HEADER_SAX_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/tensor/safetensors_header.h"
#include "nlohmann/json.hpp"

namespace catq::tensor_internal {

class HeaderSaxHandler : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override;
  bool boolean(bool value) override;
  bool number_integer(number_integer_t value) override;
  bool number_unsigned(number_unsigned_t value) override;
  bool number_float(number_float_t value, const string_t& text) override;
  bool string(string_t& value) override;
  bool binary(binary_t& value) override;
  bool start_object(std::size_t elements) override;
  bool key(string_t& value) override;
  bool end_object() override;
  bool start_array(std::size_t elements) override;
  bool end_array() override;
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& error) override;

  // status: the first error, or OK.
  const absl::Status& status() const { return status_; }
  // complete: the root object was closed (a parse that returns true has).
  bool complete() const { return level_ == Level::kDone; }
  std::vector<TensorInfo> TakeTensors() { return std::move(tensors_); }
  std::map<std::string, std::string> TakeMetadata() { return std::move(metadata_); }

 private:
  // Where the next event lands.
  enum class Level { kTop, kRoot, kMetadata, kTensor, kShape, kOffsets, kDone };
  enum class Field { kNone, kDType, kShape, kOffsets };
  enum class Kind { kNull, kBool, kInteger, kUnsigned, kFloat, kString, kObject, kArray };

  // A value event, reduced to what the checks need.
  struct Value {
    Kind kind;
    int64_t signed_value = 0;     // kInteger (JSON numbers with a minus sign).
    uint64_t unsigned_value = 0;  // kUnsigned.
    absl::string_view text = {};  // kBool, kFloat, kString: as written or decoded.
  };

  bool OnValue(const Value& value);
  bool OnRootValue(const Value& value);
  bool OnMetadataValue(const Value& value);
  bool OnFieldValue(const Value& value);
  bool OnArrayElement(const Value& value);
  bool EndTensor();
  bool EndOffsets();
  bool Fail(std::string message);
  // TensorContext: `tensor "name"` for messages.
  std::string TensorContext() const;
  static std::string Describe(const Value& value);
  static absl::string_view FieldName(Field field);

  Level level_ = Level::kTop;
  std::string key_;  // The current key of the root or metadata object.
  bool seen_metadata_ = false;
  // The tensor entry being read.
  TensorInfo tensor_;
  Field field_ = Field::kNone;
  bool has_dtype_ = false, has_shape_ = false, has_offsets_ = false;
  size_t offsets_count_ = 0;

  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  absl::Status status_;
};

}  // namespace catq::tensor_internal

#endif  // CATQ_CORE_TENSOR_INTERNAL_HEADER_SAX_H_
