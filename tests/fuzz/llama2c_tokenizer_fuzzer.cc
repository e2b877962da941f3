// Fuzz target for the llama2.c tokenizer file (tokenizer.bin of an upload,
// tok512.bin of `catq import-llama2c`). The first two bytes choose the
// vocabulary size the model would give (259..1282), the rest is the file. An
// accepted tokenizer encodes any text (the file's tail) to ids in range and
// decodes those ids and any other in-range ids. (Decode(Encode(t)) == t holds
// for vocabularies like llama2.c's, not for every file Parse accepts: one
// whose merges spell "<0x41>" decodes it as "A", as llama2.c would; the
// tokenizer's unit tests check the round trip on tok512.bin.)

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/model/llama2c_tokenizer.h"
#include "tests/fuzz/fuzz_check.h"

namespace {
constexpr char kName[] = "llama2c_tokenizer_fuzzer";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using catq::fuzzing::CheckRejection;
  using catq::fuzzing::Violation;
  if (size < 2) return 0;
  const int64_t vocab_size = 259 + ((data[0] | (data[1] << 8)) % 1024);
  const absl::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  absl::StatusOr<catq::Llama2cTokenizer> tokenizer =
      catq::Llama2cTokenizer::Parse(bytes, vocab_size, "tokenizer.bin");
  if (!tokenizer.ok()) {
    CheckRejection(kName, tokenizer.status());
    return 0;
  }
  if (tokenizer->vocab_size() != vocab_size) Violation(kName, "vocabulary size differs");
  // The file's tail doubles as text (any bytes, invalid UTF-8 included).
  const absl::string_view text = bytes.substr(bytes.size() > 256 ? bytes.size() - 256 : 0);
  const std::vector<int32_t> ids = tokenizer->Encode(text, /*add_bos=*/true);
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size) Violation(kName, absl::StrCat("Encode gave id ", id));
  }
  absl::StatusOr<std::string> decoded = tokenizer->Decode(ids);
  if (!decoded.ok())
    Violation(kName, "Decode refused Encode's ids: " + decoded.status().ToString());
  std::vector<int32_t> any;
  for (size_t i = 0; i + 1 < text.size(); i += 2) {
    any.push_back(static_cast<int32_t>(
        (static_cast<unsigned char>(text[i]) << 8 | static_cast<unsigned char>(text[i + 1])) %
        vocab_size));
  }
  if (!tokenizer->Decode(any).ok()) Violation(kName, "Decode refused in-range ids");
  return 0;
}
