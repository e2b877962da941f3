// File: core/model/llama2c_format.h
//
// Andrej Karpathy's llama2.c checkpoint and tokenizer files (the legacy,
// version-0 export), described and validated. Import into a Hugging Face
// directory is in llama2c_import.h.
//
// Checkpoint (little-endian): a header of 7 int32
//   offset  0 dim, 4 hidden_dim, 8 n_layers, 12 n_heads, 16 n_kv_heads,
//          20 vocab_size (negative: an unshared classifier follows), 24 seq_len
// then float32 tensors, each row-major [out, in], per-layer ones stacked over
// layers: token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim],
// wk [L, kv_dim, dim], wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim],
// w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim],
// rms_final [dim], freq_cis_real and freq_cis_imag [seq_len, head_dim/2]
// (unused), then wcls [vocab, dim] only when vocab_size was negative.
// kv_dim = dim * n_kv_heads / n_heads. wq and wk rows are in interleaved-RoPE
// order (see rope_permutation.h).
//
// Tokenizer: int32 max_token_length, then vocab_size entries of
// {float32 score, int32 len, len bytes}, nothing after.
//
//   CATQ_ASSIGN_OR_RETURN(Llama2cHeader header, ParseLlama2cHeader(bytes, "stories260K.bin"));
//   Llama2cLayout layout = ComputeLlama2cLayout(header);
//   uint64_t wq_of_layer_2 = layout.wq.LayerOffset(2);  // byte offset in the file
//
// Errors: a bad header value is InvalidArgument naming the field and its
// offset; a file of the wrong length or a truncated tokenizer is DataLoss with
// the byte counts or offset. Thread-safety: pure functions.
#ifndef CATQ_CORE_MODEL_LLAMA2C_FORMAT_H_
#define CATQ_CORE_MODEL_LLAMA2C_FORMAT_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace catq {

inline constexpr uint64_t kLlama2cHeaderBytes = 28;
// The magic number that starts llama2.c's versioned (v1+) exports, which catq
// does not read: the int32 0x616b3432, "ak42".
inline constexpr uint32_t kLlama2cVersionedMagic = 0x616b3432;

struct Llama2cHeader {
  int64_t dim = 0;
  int64_t hidden_dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t vocab_size = 0;  // Positive; the sign is in shared_classifier.
  int64_t seq_len = 0;
  bool shared_classifier = true;  // The header's vocab_size was positive.

  int64_t head_dim() const { return dim / n_heads; }
  int64_t kv_dim() const { return n_kv_heads * head_dim(); }
};

// One tensor of the file: `layers` consecutive slices of `floats_per_layer`
// float32 each (layers is 1 for a global tensor), starting at byte `offset`.
struct Llama2cSection {
  const char* name = "";
  uint64_t offset = 0;
  uint64_t floats_per_layer = 0;
  int64_t layers = 1;

  uint64_t LayerBytes() const { return floats_per_layer * sizeof(float); }
  uint64_t LayerOffset(int64_t layer) const {
    return offset + static_cast<uint64_t>(layer) * LayerBytes();
  }
  uint64_t end() const { return LayerOffset(layers); }
};

struct Llama2cLayout {
  Llama2cSection token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
      freq_cis_real, freq_cis_imag;
  Llama2cSection wcls;       // Empty (floats_per_layer 0) when the classifier is shared.
  uint64_t total_bytes = 0;  // The exact length the file must have.
};

// ParseLlama2cHeader
//
// Reads and checks the 28-byte header at the start of `bytes` (the file or its
// first bytes). Refuses: fewer than 28 bytes (DataLoss); the versioned magic;
// a non-positive size, a zero vocab_size, any size above 2^24; dim not
// divisible by n_heads, n_heads not divisible by n_kv_heads, an odd head_dim.
// `file_name` prefixes every message.
absl::StatusOr<Llama2cHeader> ParseLlama2cHeader(absl::string_view bytes,
                                                 absl::string_view file_name);

// ComputeLlama2cLayout: the byte offset of every tensor. REQUIRES: a header
// ParseLlama2cHeader accepted.
Llama2cLayout ComputeLlama2cLayout(const Llama2cHeader& header);

// CheckLlama2cFileSize
//
// DataLoss unless `file_size` is exactly layout.total_bytes, e.g.
// "stories260K.bin: needs 1056540 bytes for the header's shapes, file has 1000".
absl::Status CheckLlama2cFileSize(const Llama2cLayout& layout, uint64_t file_size,
                                  absl::string_view file_name);

// ValidateLlama2cTokenizer
//
// Walks the whole tokenizer file: max_token_length positive; exactly
// `vocab_size` entries, each with a finite score and 1 <= len <=
// max_token_length; no bytes left over. DataLoss with the token index and
// byte offset where it fails, InvalidArgument for bad values.
absl::Status ValidateLlama2cTokenizer(absl::string_view bytes, int64_t vocab_size,
                                      absl::string_view file_name);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_LLAMA2C_FORMAT_H_
