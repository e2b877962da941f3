#include "core/model/llama2c_tokenizer.h"

#include <cstring>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/model/llama2c_format.h"
#include "core/model/sentencepiece_normalizer.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// llama2.c starts its search for the best merge at this score, so a pair
// scoring at or below it never merges.
constexpr float kNoMergeScore = -1e10f;

// Byte fallback covers ids 3..258.
constexpr int64_t kMinVocab = Llama2cTokenizer::kByteFallbackOffset + 256;

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// ByteFallbackValue: b when `piece` is "<0xHH>", else -1.
int ByteFallbackValue(absl::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = HexDigit(piece[3]), lo = HexDigit(piece[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

// One token of the sequence being merged, in a doubly linked list so that a
// merge is O(1). `index` orders nodes left to right: a merged node keeps the
// index of its left part.
struct Node {
  int32_t id;
  int32_t prev;  // -1 at the start.
  int32_t next;  // -1 at the end.
  bool alive;
};

// A candidate merge of node `left` with its successor, valid while both still
// hold the ids they had when it was queued.
struct Candidate {
  float score;
  int32_t left;
  int32_t left_id;
  int32_t right_id;
  int32_t merged_id;
};

// The heap's order: the highest score first, then the leftmost pair, exactly
// the pair llama2.c's left-to-right scan with a strict `>` picks.
struct CandidateLess {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  }
};

}  // namespace

Llama2cTokenizer::Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores)
    : pieces_(std::move(pieces)), scores_(std::move(scores)) {
  ids_.reserve(pieces_.size());
  for (size_t i = 0; i < pieces_.size(); ++i) {
    ids_.try_emplace(pieces_[i], static_cast<int32_t>(i));
  }
  dummy_prefix_id_ = Find(" ");
}

absl::StatusOr<Llama2cTokenizer> Llama2cTokenizer::Parse(absl::string_view bytes,
                                                         int64_t vocab_size,
                                                         absl::string_view file_name) {
  CATQ_RETURN_IF_ERROR(ValidateLlama2cTokenizer(bytes, vocab_size, file_name));
  if (vocab_size < kMinVocab) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": vocab_size ", vocab_size, " is below ", kMinVocab,
                     ", too small for byte-fallback tokens <0x00>..<0xFF> at ids 3..258"));
  }
  std::vector<std::string> pieces;
  std::vector<float> scores;
  pieces.reserve(static_cast<size_t>(vocab_size));
  scores.reserve(static_cast<size_t>(vocab_size));
  // The layout was validated above, so the reads below stay in bounds.
  size_t at = 4;
  for (int64_t i = 0; i < vocab_size; ++i) {
    float score;
    int32_t len;
    std::memcpy(&score, bytes.data() + at, sizeof(score));
    std::memcpy(&len, bytes.data() + at + 4, sizeof(len));
    at += 8;
    pieces.emplace_back(bytes.substr(at, static_cast<size_t>(len)));
    scores.push_back(score);
    at += static_cast<size_t>(len);
  }
  Llama2cTokenizer tokenizer(std::move(pieces), std::move(scores));
  if (tokenizer.dummy_prefix_id_ < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_name, ": no piece \" \", which llama2.c's encoder prepends as the dummy prefix"));
  }
  return tokenizer;
}

absl::StatusOr<Llama2cTokenizer> Llama2cTokenizer::Load(Env* env, const std::string& path,
                                                        int64_t vocab_size) {
  CATQ_ASSIGN_OR_RETURN(std::string bytes, env->ReadFile(path));
  return Parse(bytes, vocab_size, path);
}

absl::StatusOr<Llama2cTokenizer> Llama2cTokenizer::FromVocabulary(Vocabulary vocabulary,
                                                                  absl::string_view source) {
  const size_t size = vocabulary.pieces.size();
  if (vocabulary.scores.size() != size || vocabulary.merge_targets.size() != size) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", size, " pieces, ", vocabulary.scores.size(), " scores and ",
                     vocabulary.merge_targets.size(), " merge flags"));
  }
  if (static_cast<int64_t>(size) < kMinVocab) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", size, " pieces, below ", kMinVocab,
                     ", too few for byte-fallback tokens <0x00>..<0xFF> at ids 3..258"));
  }
  for (int b = 0; b < 256; ++b) {
    const std::string& piece = vocabulary.pieces[static_cast<size_t>(b + kByteFallbackOffset)];
    if (ByteFallbackValue(piece) != b) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": piece ", b + kByteFallbackOffset, " is \"", piece,
                       "\", not the byte-fallback piece of byte ", b));
    }
  }
  Llama2cTokenizer tokenizer(std::move(vocabulary.pieces), std::move(vocabulary.scores));
  if (tokenizer.dummy_prefix_id_ < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no piece \" \" (U+2581 in SentencePiece), the dummy prefix"));
  }
  tokenizer.merge_targets_ = std::move(vocabulary.merge_targets);
  tokenizer.sentencepiece_normalization_ = vocabulary.sentencepiece_normalization;
  return tokenizer;
}

int32_t Llama2cTokenizer::Find(absl::string_view piece) const {
  auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

std::vector<int32_t> Llama2cTokenizer::Encode(absl::string_view text, bool add_bos,
                                              bool add_eos) const {
  if (!sentencepiece_normalization_) return EncodeNormalized(text, add_bos, add_eos);
  return EncodeNormalized(NormalizeForSentencePiece(text), add_bos, add_eos);
}

std::vector<int32_t> Llama2cTokenizer::EncodeNormalized(absl::string_view text, bool add_bos,
                                                        bool add_eos) const {
  // BOS takes part in the merges, as in llama2.c (no vocabulary merges it in
  // practice); EOS is appended after them.
  std::vector<int32_t> ids;
  if (add_bos) ids.push_back(kBos);
  if (!text.empty()) ids.push_back(dummy_prefix_id_);
  // Characters as llama2.c cuts them: a byte that is not a continuation byte
  // starts a character, which takes following continuation bytes up to four
  // bytes in all.
  size_t start = 0;
  while (start < text.size()) {
    size_t end = start + 1;
    while (end < text.size() && IsContinuationByte(text[end]) && end - start < 4) ++end;
    const absl::string_view character = text.substr(start, end - start);
    const int32_t id = Find(character);
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (char c : character) {
        ids.push_back(static_cast<int32_t>(static_cast<unsigned char>(c)) + kByteFallbackOffset);
      }
    }
    start = end;
  }

  std::vector<Node> nodes(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    nodes[i] = {ids[i], static_cast<int32_t>(i) - 1,
                i + 1 < ids.size() ? static_cast<int32_t>(i + 1) : -1, true};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, CandidateLess> heap;
  std::string pair;
  auto push_candidate = [&](int32_t left) {
    if (left < 0 || nodes[left].next < 0) return;
    const Node& l = nodes[left];
    const Node& r = nodes[l.next];
    pair.assign(pieces_[l.id]);
    pair.append(pieces_[r.id]);
    const int32_t merged = Find(pair);
    if (merged < 0 || !IsMergeTarget(merged) || !(scores_[merged] > kNoMergeScore)) return;
    heap.push({scores_[merged], left, l.id, r.id, merged});
  };
  for (size_t i = 0; i + 1 < nodes.size(); ++i) push_candidate(static_cast<int32_t>(i));
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Node& l = nodes[c.left];
    // Stale: one side was merged into something else since it was queued.
    if (!l.alive || l.id != c.left_id || l.next < 0 || nodes[l.next].id != c.right_id) continue;
    Node& r = nodes[l.next];
    l.id = c.merged_id;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) nodes[r.next].prev = c.left;
    push_candidate(l.prev);
    push_candidate(c.left);
  }

  std::vector<int32_t> out;
  out.reserve(nodes.size() + 1);
  for (int32_t i = nodes.empty() ? -1 : 0; i >= 0; i = nodes[i].next) out.push_back(nodes[i].id);
  if (add_eos) out.push_back(kEos);
  return out;
}

absl::StatusOr<std::string> Llama2cTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string text;
  bool at_start = true;  // At the start of `ids` or right after a BOS.
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token ", i, " is ", id, ", outside the vocabulary [0, ", vocab_size(), ")"));
    }
    if (id == kBos) {
      at_start = true;
      continue;
    }
    if (id == kEos) continue;
    absl::string_view piece = Piece(id);
    const int byte = ByteFallbackValue(piece);
    if (byte >= 0) {
      text.push_back(static_cast<char>(byte));
    } else {
      if (at_start && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
      text.append(piece.data(), piece.size());
    }
    at_start = false;
  }
  return text;
}

}  // namespace catq
