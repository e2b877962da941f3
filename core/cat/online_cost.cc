#include "core/cat/online_cost.h"

#include "core/model/llama_weights.h"

namespace catq {

int64_t BlockFactorMacs(int64_t dim, int64_t block_size) {
  if (block_size <= 0) return 0;
  const int64_t k = block_size < dim ? block_size : dim;
  const int64_t tail = dim % k;
  return (dim / k) * k * k + tail * tail;
}

int64_t MixingMacs(int64_t dim, int64_t mixing_q) {
  if (mixing_q <= 0) return 0;
  int64_t stages = 0;  // a = log2(dim / q)
  for (int64_t order = dim / mixing_q; order > 1; order /= 2) ++stages;
  return dim * (stages + (mixing_q > 1 ? mixing_q : 0));
}

int64_t SiteOnlineMacs(int64_t dim, int64_t block_size, int64_t mixing_q, bool folded) {
  if (folded) return 0;
  return BlockFactorMacs(dim, block_size) + MixingMacs(dim, mixing_q);
}

int64_t LinearMacsPerToken(const LlamaConfig& config) {
  int64_t per_layer = 0;
  for (LinearKind kind : kAllLinearKinds) {
    const MatrixShape shape = LinearShape(config, kind);
    per_layer += shape.rows * shape.cols;
  }
  return per_layer * config.num_hidden_layers;
}

}  // namespace catq
