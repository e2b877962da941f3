#include "core/eval/kv_cache_quantizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/quant/activation_quant.h"
#include "core/util/status_macros.h"

namespace catq {

absl::StatusOr<KvCacheQuantizer> KvCacheQuantizer::Create(int64_t head_dim,
                                                          const KvCacheQuantizerOptions& options) {
  if (head_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("head_dim: ", head_dim, " must be >= 1"));
  }
  if (options.bits != kFloatKvCacheBits &&
      (options.bits < kMinActivationBits || options.bits > 8)) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bits: ", options.bits, " must be in [",
                                                   kMinActivationBits,
                                                   ", 8], or 16 for a floating-point cache"));
  }
  std::optional<MixingMatrix> mixing;
  if (options.hadamard && options.bits != kFloatKvCacheBits) {
    MixingOptions mixing_options;
    mixing_options.seed = options.mixing_seed;
    absl::StatusOr<MixingMatrix> h = MixingMatrix::Create(head_dim, mixing_options);
    if (!h.ok()) return Prefix("kv_cache_hadamard", h.status());
    mixing = std::move(*h);
  }
  return KvCacheQuantizer(head_dim, options, std::move(mixing));
}

void KvCacheQuantizer::FakeQuantizeRows(Eigen::Ref<RowMatrixXf> heads) const {
  if (mixing_) mixing_->ApplyToRows(heads);
  FakeQuantizeTokens(heads, options_.bits, /*symmetric=*/false);
  if (mixing_) mixing_->ApplyTransposeToRows(heads);
}

absl::Status KvCacheQuantizer::FakeQuantizeHeads(Eigen::Ref<RowMatrixXf> x) const {
  if (x.cols() % head_dim_ != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("K/V rows are ", x.cols(), " wide, not a multiple of head_dim ", head_dim_));
  }
  if (options_.bits == kFloatKvCacheBits || x.size() == 0) return absl::OkStatus();
  const Eigen::Index heads = x.cols() / head_dim_;
  if (x.outerStride() == x.cols()) {
    // Rows are contiguous: every (token, head) is one row of a [tokens *
    // heads, head_dim] view of the same memory.
    FakeQuantizeRows(Eigen::Map<RowMatrixXf>(x.data(), x.rows() * heads, head_dim_));
    return absl::OkStatus();
  }
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    FakeQuantizeRows(Eigen::Map<RowMatrixXf>(&x(t, 0), heads, head_dim_));
  }
  return absl::OkStatus();
}

absl::Status KvCacheQuantizer::OnKeysValues(const KvCacheCall& call, Eigen::Ref<RowMatrixXf> keys,
                                            Eigen::Ref<RowMatrixXf> values) {
  absl::Status status = FakeQuantizeHeads(keys);
  if (status.ok()) status = FakeQuantizeHeads(values);
  if (!status.ok()) return Prefix(absl::StrCat("layer ", call.layer, " K/V cache"), status);
  return absl::OkStatus();
}

}  // namespace catq
