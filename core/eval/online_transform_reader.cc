#include "core/eval/online_transform_reader.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/output/output_names.h"
#include "core/tensor/shape.h"
#include "core/util/status_macros.h"

namespace catq {
namespace {

// FormatIndex: flat index `flat` of a row-major tensor of `shape` as "[i, j, ...]".
std::string FormatIndex(int64_t flat, const std::vector<int64_t>& shape) {
  std::vector<int64_t> index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return FormatShape(index);
}

// ReadF32: the values of F32 tensor `name` of exactly `shape`, all finite.
absl::StatusOr<std::vector<float>> ReadF32(const SafetensorsDir& tensors, const std::string& name,
                                           const std::vector<int64_t>& shape) {
  if (!tensors.Contains(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": missing (expected F32 ", FormatShape(shape), ")"));
  }
  CATQ_ASSIGN_OR_RETURN(TensorView view, tensors.Get(name));
  if (view.dtype() != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": dtype ", DTypeName(view.dtype()), ", expected F32"));
  }
  if (view.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": shape ", FormatShape(view.shape()),
                                                   ", expected ", FormatShape(shape)));
  }
  CATQ_ASSIGN_OR_RETURN(std::vector<float> values, view.ToFloat());
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": element ", FormatIndex(static_cast<int64_t>(i), shape), " is ", values[i]));
    }
  }
  return values;
}

absl::Status RefuseUnexpected(const SafetensorsDir& tensors, const std::string& name,
                              absl::string_view why) {
  if (!tensors.Contains(name)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, ": present, but ", why));
}

// Row-major [count, n, n] values as `count` n x n matrices.
void AppendBlocks(const std::vector<float>& values, int64_t count, int64_t n,
                  std::vector<Eigen::MatrixXd>& blocks) {
  for (int64_t b = 0; b < count; ++b) {
    const Eigen::Map<const RowMatrixXf> block(values.data() + b * n * n, n, n);
    blocks.push_back(block.cast<double>());
  }
}

// The blocks of B: [d/k, k, k] plus the [r, r] tail; empty when k = 0.
absl::StatusOr<std::vector<Eigen::MatrixXd>> ReadBlocks(const SafetensorsDir& tensors,
                                                        const OnlineTransformNames& names,
                                                        int64_t dim, int64_t block_size) {
  std::vector<Eigen::MatrixXd> blocks;
  if (block_size == 0) {
    CATQ_RETURN_IF_ERROR(RefuseUnexpected(tensors, names.blocks, "the site's block_size is 0"));
    CATQ_RETURN_IF_ERROR(
        RefuseUnexpected(tensors, names.blocks_tail, "the site's block_size is 0"));
    return blocks;
  }
  const int64_t k = std::min(block_size, dim);
  const int64_t count = dim / k;
  const int64_t tail = dim - count * k;
  CATQ_ASSIGN_OR_RETURN(std::vector<float> values, ReadF32(tensors, names.blocks, {count, k, k}));
  AppendBlocks(values, count, k, blocks);
  if (tail == 0) {
    CATQ_RETURN_IF_ERROR(RefuseUnexpected(tensors, names.blocks_tail,
                                          absl::StrCat("block size ", k, " divides d = ", dim)));
    return blocks;
  }
  CATQ_ASSIGN_OR_RETURN(values, ReadF32(tensors, names.blocks_tail, {tail, tail}));
  AppendBlocks(values, 1, tail, blocks);
  return blocks;
}

// The mixing M, or nullopt when the site has none.
absl::StatusOr<std::optional<MixingMatrix>> ReadMixing(const SafetensorsDir& tensors,
                                                       const OnlineTransformNames& names,
                                                       int64_t dim, bool hadamard) {
  if (!hadamard) {
    CATQ_RETURN_IF_ERROR(
        RefuseUnexpected(tensors, names.rot_q, "the site's hadamard is false (no mixing)"));
    return std::nullopt;
  }
  std::optional<Eigen::MatrixXd> rot_q;
  if (tensors.Contains(names.rot_q)) {
    CATQ_ASSIGN_OR_RETURN(const TensorInfo* info, tensors.Info(names.rot_q));
    if (info->shape.size() != 2 || info->shape[0] != info->shape[1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          names.rot_q, ": shape ", FormatShape(info->shape), ", expected a square [q, q]"));
    }
    const int64_t q = info->shape[0];
    CATQ_ASSIGN_OR_RETURN(std::vector<float> values, ReadF32(tensors, names.rot_q, {q, q}));
    rot_q = Eigen::Map<const RowMatrixXf>(values.data(), q, q).cast<double>();
  }
  absl::StatusOr<MixingMatrix> mixing = MixingMatrix::FromStored(dim, std::move(rot_q));
  if (!mixing.ok()) return Prefix(names.rot_q, mixing.status());
  return std::optional<MixingMatrix>(*std::move(mixing));
}

}  // namespace

absl::StatusOr<std::optional<SiteTransform>> ReadOnlineTransform(const SafetensorsDir& tensors,
                                                                 int64_t layer, Site site,
                                                                 int64_t dim,
                                                                 const StoredSite& stored) {
  const OnlineTransformNames names =
      OnlineTransformNamesFor(static_cast<int>(layer), SiteName(site));
  const std::string key = SiteQualifiedName(layer, site);
  if (!stored.online) {
    const std::string why = absl::StrCat("quantization_config says site ", key, " is not online");
    CATQ_RETURN_IF_ERROR(RefuseUnexpected(tensors, names.blocks, why));
    CATQ_RETURN_IF_ERROR(RefuseUnexpected(tensors, names.blocks_tail, why));
    CATQ_RETURN_IF_ERROR(RefuseUnexpected(tensors, names.rot_q, why));
    return std::nullopt;
  }
  if (stored.block_size == 0 && !stored.hadamard) {
    return absl::InvalidArgumentError(absl::StrCat("quantization_config: site ", key,
                                                   " is online with neither blocks nor hadamard"));
  }
  CATQ_ASSIGN_OR_RETURN(std::vector<Eigen::MatrixXd> blocks,
                        ReadBlocks(tensors, names, dim, stored.block_size));
  CATQ_ASSIGN_OR_RETURN(std::optional<MixingMatrix> mixing,
                        ReadMixing(tensors, names, dim, stored.hadamard));
  absl::StatusOr<SiteTransform> transform =
      SiteTransform::Create(dim, std::move(blocks), std::move(mixing));
  if (!transform.ok()) {
    return Prefix(stored.block_size > 0 ? names.blocks : key, transform.status());
  }
  return std::optional<SiteTransform>(*std::move(transform));
}

}  // namespace catq
