// Fuzz target for SentencePiece's tokenizer.model (core/model/
// sentencepiece_model.h, read by catq's own protobuf wire reader, and
// sentencepiece_tokenizer.h). The input is the file. A parsed model has at
// least one piece, none empty or over the size cap, each at an offset inside
// the file. When it also converts to a tokenizer (with vocab_size = its piece
// count), the file's tail, as text, encodes to ids in range, where a control
// or unknown piece can only be a single character of the text (never the
// result of a merge), and the ids decode.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/model/sentencepiece_model.h"
#include "core/model/sentencepiece_tokenizer.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

constexpr char kName[] = "sentencepiece_model_fuzzer";

bool IsSingleCharacter(absl::string_view piece) {
  if (piece.empty() || piece.size() > 4) return false;
  for (size_t i = 1; i < piece.size(); ++i) {
    if ((static_cast<unsigned char>(piece[i]) & 0xC0) != 0x80) return false;
  }
  return true;
}

void CheckModel(const catq::SentencePieceModel& model, size_t size) {
  using catq::fuzzing::Violation;
  if (model.pieces.empty()) Violation(kName, "accepted a model without pieces");
  for (const catq::SentencePiece& piece : model.pieces) {
    if (piece.piece.empty() || piece.piece.size() > catq::kMaxSentencePieceBytes) {
      Violation(kName, absl::StrCat("piece of ", piece.piece.size(), " bytes"));
    }
    if (piece.offset >= size) Violation(kName, "piece offset outside the file");
  }
}

void CheckEncoding(const catq::Llama2cTokenizer& tokenizer, const catq::SentencePieceModel& model,
                   absl::string_view text) {
  using catq::fuzzing::Violation;
  const std::vector<int32_t> ids = tokenizer.Encode(text, /*add_bos=*/true);
  for (size_t i = 1; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= tokenizer.vocab_size()) Violation(kName, absl::StrCat("Encode gave ", id));
    const catq::SentencePieceType type = model.pieces[static_cast<size_t>(id)].type;
    const bool special =
        type == catq::SentencePieceType::kControl || type == catq::SentencePieceType::kUnknown;
    if (special && !IsSingleCharacter(tokenizer.Piece(id))) {
      Violation(kName, absl::StrCat("a merge produced control or unknown piece ", id));
    }
  }
  if (!tokenizer.Decode(ids).ok()) Violation(kName, "Decode refused Encode's ids");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using catq::fuzzing::CheckRejection;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<catq::SentencePieceModel> model =
      catq::ParseSentencePieceModel(bytes, "tokenizer.model");
  if (!model.ok()) {
    CheckRejection(kName, model.status());
    return 0;
  }
  CheckModel(*model, size);
  absl::StatusOr<catq::Llama2cTokenizer> tokenizer = catq::TokenizerFromSentencePiece(
      *model, static_cast<int64_t>(model->pieces.size()), "tokenizer.model");
  if (!tokenizer.ok()) {
    CheckRejection(kName, tokenizer.status());
    return 0;
  }
  // The file's tail doubles as text (any bytes, invalid UTF-8 included).
  CheckEncoding(*tokenizer, *model, bytes.substr(size > 256 ? size - 256 : 0));
  return 0;
}
