// File: core/model/rope_permutation.h
//
// The row permutation of q_proj and k_proj that turns a checkpoint trained with
// interleaved RoPE (llama2.c, Meta's original Llama code: rotate adjacent pairs
// (2i, 2i+1) of each head) into one for rotate-half RoPE (Hugging Face: rotate
// pairs (i, i + hd/2)). It is the `permute` of transformers'
// convert_llama_weights_to_hf.py: w.view(n_heads, hd/2, 2, cols).transpose(1, 2).
//
// Index formula. With hd = head_dim, for head h and i in [0, hd/2):
//   permuted row h*hd + i        = original row h*hd + 2i      (even member)
//   permuted row h*hd + hd/2 + i = original row h*hd + 2i + 1  (odd member)
// So for one head with hd = 4, original rows [r0 r1 r2 r3] become [r0 r2 r1 r3].
// Both RoPE variants rotate pair i by the angle pos / theta^(2i/hd), so
// rotate-half RoPE of (P q) equals P (interleaved RoPE of q), and attention
// scores q.k are unchanged when q_proj and k_proj are both permuted (q with
// num_attention_heads, k with num_key_value_heads).
//
//   CATQ_ASSIGN_OR_RETURN(std::vector<float> q_hf,
//                         PermuteRowsForRotateHalf(wq, n_heads, head_dim, dim));
//
// Thread-safety: pure functions.
#ifndef CATQ_CORE_MODEL_ROPE_PERMUTATION_H_
#define CATQ_CORE_MODEL_ROPE_PERMUTATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace catq {

// RotateHalfSourceRow: the original (interleaved) row that permuted row `row`
// takes, by the formula above. REQUIRES: head_dim even and positive, row >= 0.
int64_t RotateHalfSourceRow(int64_t row, int64_t head_dim);

// PermuteRowsForRotateHalf
//
// `rows` is a row-major [n_heads * head_dim, cols] matrix in interleaved order;
// returns it with rows reordered for rotate-half RoPE. InvalidArgument when
// head_dim is odd or not positive, or rows.size() != n_heads * head_dim * cols.
absl::StatusOr<std::vector<float>> PermuteRowsForRotateHalf(absl::Span<const float> rows,
                                                            int64_t n_heads, int64_t head_dim,
                                                            int64_t cols);

// UnpermuteRowsFromRotateHalf: the inverse of PermuteRowsForRotateHalf (same
// arguments and errors): permuted row h*hd + i goes back to row
// RotateHalfSourceRow(h*hd + i, hd).
absl::StatusOr<std::vector<float>> UnpermuteRowsFromRotateHalf(absl::Span<const float> rows,
                                                               int64_t n_heads, int64_t head_dim,
                                                               int64_t cols);

}  // namespace catq

#endif  // CATQ_CORE_MODEL_ROPE_PERMUTATION_H_
