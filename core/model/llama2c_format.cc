#include "core/model/llama2c_format.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace catq {
namespace {

static_assert(std::endian::native == std::endian::little,
              "llama2.c files are little-endian; catq reads them in place");

// Sizes above this are refused: products of three of them stay far below 2^64.
constexpr int64_t kMaxDim = int64_t{1} << 24;

int32_t ReadInt32(absl::string_view bytes, uint64_t offset) {
  int32_t value;
  std::memcpy(&value, bytes.data() + offset, sizeof(value));
  return value;
}

float ReadFloat(absl::string_view bytes, uint64_t offset) {
  float value;
  std::memcpy(&value, bytes.data() + offset, sizeof(value));
  return value;
}

absl::Status BadField(absl::string_view file_name, absl::string_view field, uint64_t offset,
                      int64_t value, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(file_name, ": header field ", field, " (offset ",
                                                 offset, ") is ", value, ", ", why));
}

Llama2cSection Section(const char* name, uint64_t offset, uint64_t floats_per_layer,
                       int64_t layers = 1) {
  Llama2cSection section;
  section.name = name;
  section.offset = offset;
  section.floats_per_layer = floats_per_layer;
  section.layers = layers;
  return section;
}

}  // namespace

absl::StatusOr<Llama2cHeader> ParseLlama2cHeader(absl::string_view bytes,
                                                 absl::string_view file_name) {
  if (bytes.size() < kLlama2cHeaderBytes) {
    return absl::DataLossError(absl::StrCat(file_name, ": needs at least ", kLlama2cHeaderBytes,
                                            " bytes for the llama2.c header, file has ",
                                            bytes.size()));
  }
  if (static_cast<uint32_t>(ReadInt32(bytes, 0)) == kLlama2cVersionedMagic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: starts with the magic 0x%08x (\"ak42\") of llama2.c's versioned export; only the "
        "legacy (version 0) format is supported (export.py --version 0)",
        file_name, kLlama2cVersionedMagic));
  }
  struct Field {
    const char* name;
    int64_t* value;
  };
  Llama2cHeader h;
  int64_t raw_vocab = 0;
  const Field fields[] = {
      {"dim", &h.dim},         {"hidden_dim", &h.hidden_dim}, {"n_layers", &h.n_layers},
      {"n_heads", &h.n_heads}, {"n_kv_heads", &h.n_kv_heads}, {"vocab_size", &raw_vocab},
      {"seq_len", &h.seq_len}};
  for (size_t i = 0; i < std::size(fields); ++i) {
    const uint64_t offset = 4 * i;
    const int64_t value = ReadInt32(bytes, offset);
    *fields[i].value = value;
    const bool is_vocab = fields[i].value == &raw_vocab;
    // vocab_size carries the classifier flag in its sign; the others must be positive.
    const int64_t magnitude = is_vocab ? (value < 0 ? -value : value) : value;
    if (magnitude <= 0) {
      return BadField(file_name, fields[i].name, offset, value,
                      is_vocab ? "must not be zero" : "must be positive");
    }
    if (magnitude > kMaxDim) {
      return BadField(file_name, fields[i].name, offset, value,
                      absl::StrCat("larger than catq's limit of ", kMaxDim));
    }
  }
  h.shared_classifier = raw_vocab > 0;
  h.vocab_size = raw_vocab > 0 ? raw_vocab : -raw_vocab;
  if (h.dim % h.n_heads != 0) {
    return BadField(file_name, "n_heads", 12, h.n_heads,
                    absl::StrCat("which does not divide dim ", h.dim));
  }
  if (h.n_heads % h.n_kv_heads != 0) {
    return BadField(file_name, "n_kv_heads", 16, h.n_kv_heads,
                    absl::StrCat("which does not divide n_heads ", h.n_heads));
  }
  if (h.head_dim() % 2 != 0) {
    return BadField(file_name, "n_heads", 12, h.n_heads,
                    absl::StrCat("giving an odd head size ", h.head_dim(), " (dim ", h.dim,
                                 "); RoPE rotates pairs"));
  }
  return h;
}

Llama2cLayout ComputeLlama2cLayout(const Llama2cHeader& h) {
  const auto dim = static_cast<uint64_t>(h.dim);
  const auto hidden = static_cast<uint64_t>(h.hidden_dim);
  const auto kv_dim = static_cast<uint64_t>(h.kv_dim());
  const auto vocab = static_cast<uint64_t>(h.vocab_size);
  const auto freq = static_cast<uint64_t>(h.seq_len) * static_cast<uint64_t>(h.head_dim() / 2);
  const int64_t layers = h.n_layers;

  Llama2cLayout l;
  uint64_t at = kLlama2cHeaderBytes;
  auto next = [&](const char* name, uint64_t floats_per_layer, int64_t count) {
    Llama2cSection section = Section(name, at, floats_per_layer, count);
    at = section.end();
    return section;
  };
  l.token_embedding = next("token_embedding", vocab * dim, 1);
  l.rms_att = next("rms_att", dim, layers);
  l.wq = next("wq", dim * dim, layers);
  l.wk = next("wk", kv_dim * dim, layers);
  l.wv = next("wv", kv_dim * dim, layers);
  l.wo = next("wo", dim * dim, layers);
  l.rms_ffn = next("rms_ffn", dim, layers);
  l.w1 = next("w1", hidden * dim, layers);
  l.w2 = next("w2", dim * hidden, layers);
  l.w3 = next("w3", hidden * dim, layers);
  l.rms_final = next("rms_final", dim, 1);
  l.freq_cis_real = next("freq_cis_real", freq, 1);
  l.freq_cis_imag = next("freq_cis_imag", freq, 1);
  l.wcls = next("wcls", h.shared_classifier ? 0 : vocab * dim, 1);
  l.total_bytes = at;
  return l;
}

absl::Status CheckLlama2cFileSize(const Llama2cLayout& layout, uint64_t file_size,
                                  absl::string_view file_name) {
  if (file_size < layout.total_bytes) {
    return absl::DataLossError(absl::StrCat(file_name, ": needs ", layout.total_bytes,
                                            " bytes for the header's shapes, file has ",
                                            file_size));
  }
  if (file_size > layout.total_bytes) {
    return absl::DataLossError(absl::StrCat(file_name, ": has ", file_size, " bytes, ",
                                            file_size - layout.total_bytes, " more than the ",
                                            layout.total_bytes,
                                            " the header's shapes need (is the sign of "
                                            "vocab_size, which says whether a classifier "
                                            "follows, right?)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLlama2cTokenizer(absl::string_view bytes, int64_t vocab_size,
                                      absl::string_view file_name) {
  if (bytes.size() < 4) {
    return absl::DataLossError(absl::StrCat(file_name,
                                            ": needs 4 bytes for max_token_length, "
                                            "file has ",
                                            bytes.size()));
  }
  const int64_t max_len = ReadInt32(bytes, 0);
  if (max_len <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": max_token_length (offset 0) is ",
                                                   max_len, ", must be positive"));
  }
  uint64_t at = 4;
  for (int64_t token = 0; token < vocab_size; ++token) {
    if (bytes.size() - at < 8) {
      return absl::DataLossError(absl::StrCat(file_name, ": token ", token, " at offset ", at,
                                              ": needs 8 bytes for its score and length, file "
                                              "ends at ",
                                              bytes.size(), " (", token, " of ", vocab_size,
                                              " tokens read)"));
    }
    const float score = ReadFloat(bytes, at);
    if (!std::isfinite(score)) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_name, ": token ", token, " at offset ", at, ": score is ", score));
    }
    const int64_t len = ReadInt32(bytes, at + 4);
    if (len <= 0 || len > max_len) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_name, ": token ", token, " at offset ", at, ": length ", len,
                       " is outside [1, max_token_length ", max_len, "]"));
    }
    at += 8;
    if (bytes.size() - at < static_cast<uint64_t>(len)) {
      return absl::DataLossError(absl::StrCat(file_name, ": token ", token, " at offset ", at - 8,
                                              ": needs ", len, " bytes of text at offset ", at,
                                              ", file ends at ", bytes.size()));
    }
    at += static_cast<uint64_t>(len);
  }
  if (at != bytes.size()) {
    return absl::DataLossError(
        absl::StrCat(file_name, ": ", bytes.size() - at, " bytes after the last of ", vocab_size,
                     " tokens (at offset ", at, "); does the tokenizer belong to this model?"));
  }
  return absl::OkStatus();
}

}  // namespace catq
