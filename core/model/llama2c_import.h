// File: core/model/llama2c_import.h
//
// Converts a llama2.c checkpoint and tokenizer (see llama2c_format.h) into a
// Hugging Face style Llama directory that LlamaModel opens:
//
//   out_dir/config.json        LlamaForCausalLM, model_type "llama", hidden_act
//                              "silu", rms_norm_eps 1e-5, rope_theta 10000,
//                              max_position_embeddings = seq_len, bos 1, eos 2,
//                              torch_dtype "float32", tie_word_embeddings =
//                              the header's shared classifier
//   out_dir/model.safetensors  F32, Hugging Face names (or shards + index when
//                              over 5 GiB)
//   out_dir/tokenizer.bin      the tokenizer file, byte for byte
//
//   CATQ_RETURN_IF_ERROR(ImportLlama2c(Env::Default(), "stories260K.bin", "tok512.bin", out));
//   CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(out));
//
// Tensor map: token_embedding -> model.embed_tokens.weight; per layer l:
// rms_att -> input_layernorm, wq -> q_proj and wk -> k_proj (rows permuted for
// rotate-half RoPE, by num_attention_heads and num_key_value_heads; see
// rope_permutation.h), wv -> v_proj, wo -> o_proj, rms_ffn ->
// post_attention_layernorm, w1 -> gate_proj, w3 -> up_proj, w2 -> down_proj;
// rms_final -> model.norm.weight; wcls -> lm_head.weight when not shared. The
// RoPE tables are dropped.
//
// Everything is checked before anything is written: the header, the exact
// file length, the tokenizer's structure against the vocabulary size. Values
// are checked finite while streaming; a NaN is DataLoss naming the tensor and
// byte offset. The weights are streamed from a read-only mapping of the
// checkpoint in chunks of at most 1 MiB, so memory stays bounded. Files are
// written to temporaries and renamed; config.json is written last.
//
// Thread-safety: thread-safe for distinct out_dir.
#ifndef CATQ_CORE_MODEL_LLAMA2C_IMPORT_H_
#define CATQ_CORE_MODEL_LLAMA2C_IMPORT_H_

#include <string>

#include "absl/status/status.h"
#include "core/io/env.h"

namespace catq {

inline constexpr char kLlama2cTokenizerFileName[] = "tokenizer.bin";

// ImportLlama2c: as above. `out_dir` is created if needed. Errors name the
// input file and the field or offset (see llama2c_format.h), or come from Env.
absl::Status ImportLlama2c(Env* env, const std::string& model_bin, const std::string& tokenizer_bin,
                           const std::string& out_dir);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_LLAMA2C_IMPORT_H_
