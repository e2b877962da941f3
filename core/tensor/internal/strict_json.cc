#include "core/tensor/internal/strict_json.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/tensor/internal/text.h"

namespace catq::tensor_internal {
namespace {

using nlohmann::json;

// Builds the tree from SAX events, as nlohmann's own DOM parser does, but
// checks each key against the keys already in its object.
class StrictDomBuilder : public nlohmann::json_sax<json> {
 public:
  bool null() override { return Put(nullptr) != nullptr; }
  bool boolean(bool value) override { return Put(value) != nullptr; }
  bool number_integer(number_integer_t value) override { return Put(value) != nullptr; }
  bool number_unsigned(number_unsigned_t value) override { return Put(value) != nullptr; }
  bool number_float(number_float_t value, const string_t&) override {
    return Put(value) != nullptr;
  }
  bool string(string_t& value) override { return Put(std::move(value)) != nullptr; }
  bool binary(binary_t&) override { return Fail("binary values are not JSON"); }
  bool start_object(std::size_t) override { return Open(json::object()); }
  bool start_array(std::size_t) override { return Open(json::array()); }
  bool end_object() override { return Close(); }
  bool end_array() override { return Close(); }

  bool key(string_t& value) override {
    if (stack_.back()->contains(value)) {
      return Fail(absl::StrCat("duplicate key ", Quote(value)));
    }
    key_ = std::move(value);
    return true;
  }

  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& error) override {
    return Fail(absl::StrCat("not valid JSON: ", error.what()));
  }

  const absl::Status& status() const { return status_; }
  json TakeRoot() { return std::move(root_); }

 private:
  // Put: stores `value` where the parser is (root, array element or the
  // value of key_) and returns where it went. Pointers stay valid while the
  // value is open: objects are std::map nodes, and an array only grows after
  // its last element is closed.
  json* Put(json value) {
    if (stack_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    json* parent = stack_.back();
    if (parent->is_array()) {
      parent->push_back(std::move(value));
      return &parent->back();
    }
    json& slot = (*parent)[key_];
    slot = std::move(value);
    return &slot;
  }

  bool Open(json container) {
    if (stack_.size() >= static_cast<size_t>(kMaxJsonDepth)) {
      return Fail(absl::StrCat("nested deeper than ", kMaxJsonDepth, " levels"));
    }
    stack_.push_back(Put(std::move(container)));
    return true;
  }

  bool Close() {
    stack_.pop_back();
    return true;
  }

  bool Fail(std::string message) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(std::move(message));
    return false;
  }

  json root_;
  std::vector<json*> stack_;
  std::string key_;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<json> ParseStrictJson(absl::string_view text) {
  const size_t bad_byte = FindInvalidUtf8(text);
  if (bad_byte != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("not valid UTF-8 at byte ", bad_byte));
  }
  // nlohmann takes a NUL between tokens for the end of the input, which would
  // silently drop whatever follows; valid JSON never holds a raw NUL.
  const size_t nul = text.find('\0');
  if (nul != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON: NUL byte at byte ", nul));
  }
  StrictDomBuilder builder;
  bool parsed = false;
  try {
    parsed = json::sax_parse(text.begin(), text.end(), &builder);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!builder.status().ok()) return builder.status();
  if (!parsed) return absl::InvalidArgumentError("not valid JSON");
  return builder.TakeRoot();
}

}  // namespace catq::tensor_internal
