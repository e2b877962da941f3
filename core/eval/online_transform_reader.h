// File: core/eval/online_transform_reader.h
//
// Reads the online transform of one activation site back from an output
// directory (architecture.md section 4): the block-diagonal factor B from
// `model.layers.{i}.catq.{s}.blocks` F32 [d/k, k, k] (block b acts on channels
// [b*k, (b+1)*k)) and `...blocks_tail` F32 [r, r], the mixing M = H_(d/q) (x)
// rot_q from `...rot_q` F32 [q, q] (or the plain normalized Walsh-Hadamard
// transform when the site says "hadamard" and stores no rot_q), and builds
// T = M * B as a SiteTransform, the same object the quantizer used, so that
// x' = T x is computed by the same code on both sides.
//
//   CATQ_ASSIGN_OR_RETURN(std::optional<SiteTransform> t,
//                         ReadOnlineTransform(tensors, 0, Site::kAttnIn, 4096, stored.site(0,
//                         ...)));
//   if (t) CATQ_RETURN_IF_ERROR(t->ApplyToActivations(x));
//
// Thread-safety: a pure function of its arguments.
#ifndef CATQ_CORE_EVAL_ONLINE_TRANSFORM_READER_H_
#define CATQ_CORE_EVAL_ONLINE_TRANSFORM_READER_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "core/cat/site_transform.h"
#include "core/eval/stored_quantization.h"
#include "core/model/llama_weights.h"
#include "core/tensor/safetensors_dir.h"

namespace catq {

// ReadOnlineTransform
//
// The transform of site `site` of layer `layer`, whose activations are `dim`
// wide, as `stored` (its entry in quantization_config.catq.sites) describes
// it; nullopt when the site is not online. With block size k (k >= dim means
// one d x d block), blocks must be [d / k, k, k] and blocks_tail [d mod k,
// d mod k] exactly when d mod k > 0; rot_q is read when `stored.hadamard`.
// InvalidArgument naming the tensor when one is missing, present where the
// site says it has no such factor, not F32, of the wrong shape, holds a NaN
// or infinity (with its index), or describes no valid transform (a singular
// block, a rot_q that is not orthogonal or whose order does not fit d).
absl::StatusOr<std::optional<SiteTransform>> ReadOnlineTransform(const SafetensorsDir& tensors,
                                                                 int64_t layer, Site site,
                                                                 int64_t dim,
                                                                 const StoredSite& stored);

}  // namespace catq

#endif  // CATQ_CORE_EVAL_ONLINE_TRANSFORM_READER_H_
