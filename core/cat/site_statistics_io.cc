// The safetensors format of SiteStatistics (layout and checks: site_statistics.h).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/cat/site_statistics.h"
#include "core/tensor/dtype.h"
#include "core/tensor/safetensors_file.h"
#include "core/tensor/safetensors_writer.h"
#include "core/tensor/shape.h"
#include "core/util/status_macros.h"

// Tensor bytes are little-endian; the copies below are plain memcpy.
static_assert(std::endian::native == std::endian::little, "catq assumes a little-endian host");

namespace catq {
namespace site_statistics_internal {

// Builds statistics from validated file contents.
struct Access {
  static std::vector<RowMatrixXd>& upper(SiteStatistics& stats) { return stats.upper_; }
  static void SetScalars(SiteStatistics& stats, int64_t tokens, double asymmetric,
                         double symmetric) {
    stats.tokens_ = tokens;
    stats.range_sq_sum_ = {asymmetric, symmetric};
  }
  // `absmax` empty: the file has none.
  static void SetChannelAbsMax(SiteStatistics& stats, Eigen::VectorXd absmax) {
    stats.channel_absmax_ = std::move(absmax);
  }
};

}  // namespace site_statistics_internal

namespace {

using site_statistics_internal::Access;

// Tolerances of the checks (documented in site_statistics.h).
constexpr double kSymmetryTolerance = 1e-9;
constexpr double kConsistencyTolerance = 1e-6;

constexpr absl::string_view kSx = ".sx";
constexpr absl::string_view kSxTail = ".sx_tail";
constexpr absl::string_view kTokens = ".tokens";
constexpr absl::string_view kRangeSqSum = ".range_sq_sum";
constexpr absl::string_view kNormSqSum = ".norm_sq_sum";
constexpr absl::string_view kAbsMax = ".absmax";

// ----------------------------------------------------------------------------
// Writing

absl::string_view Bytes(const void* data, size_t size) {
  return absl::string_view(static_cast<const char*>(data), size);
}

// Appends the symmetric matrix whose upper triangle `upper` holds, row by row.
absl::Status AppendSymmetric(const RowMatrixXd& upper, std::vector<double>& row,
                             SafetensorsWriter& writer) {
  const int64_t n = upper.rows();
  row.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < i; ++j) row[static_cast<size_t>(j)] = upper(j, i);
    for (int64_t j = i; j < n; ++j) row[static_cast<size_t>(j)] = upper(i, j);
    CATQ_RETURN_IF_ERROR(writer.Append(Bytes(row.data(), row.size() * sizeof(double))));
  }
  return absl::OkStatus();
}

// ----------------------------------------------------------------------------
// Reading

struct SiteTensors {
  const TensorInfo* sx = nullptr;
  const TensorInfo* sx_tail = nullptr;
  const TensorInfo* tokens = nullptr;
  const TensorInfo* range_sq_sum = nullptr;
  const TensorInfo* norm_sq_sum = nullptr;
  const TensorInfo* absmax = nullptr;  // optional
};

// Files the tensor under its site key, or says why it does not belong.
absl::Status FileTensor(const TensorInfo& info, std::map<std::string, SiteTensors>& sites) {
  using Slot = const TensorInfo* SiteTensors::*;
  static constexpr std::pair<absl::string_view, Slot> kSuffixes[] = {
      {kSx, &SiteTensors::sx},
      {kSxTail, &SiteTensors::sx_tail},
      {kTokens, &SiteTensors::tokens},
      {kRangeSqSum, &SiteTensors::range_sq_sum},
      {kNormSqSum, &SiteTensors::norm_sq_sum},
      {kAbsMax, &SiteTensors::absmax},
  };
  // No suffix is a suffix of another, so at most one matches.
  for (const auto& [suffix, member] : kSuffixes) {
    if (!absl::EndsWith(info.name, suffix)) continue;
    const std::string key = info.name.substr(0, info.name.size() - suffix.size());
    if (key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(info.name, ": empty site key before \"", suffix, "\""));
    }
    sites[key].*member = &info;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      info.name, ": not a site statistics tensor (names end in .sx, .sx_tail, .tokens, ",
      ".range_sq_sum, .norm_sq_sum or .absmax)"));
}

absl::Status CheckDType(const TensorInfo& info, DType want) {
  if (info.dtype == want) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(info.name, ": dtype ", DTypeName(info.dtype), ", expected ", DTypeName(want)));
}

absl::Status CheckShape(const TensorInfo& info, const std::vector<int64_t>& want) {
  if (info.shape == want) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(info.name, ": shape ", FormatShape(info.shape),
                                                 ", expected ", FormatShape(want)));
}

// The tensor's elements; the file may not align them, so they are copied.
template <typename T>
std::vector<T> CopyElements(const SafetensorsFile& file, const TensorInfo& info) {
  const absl::string_view bytes = file.View(info).bytes();
  std::vector<T> values(bytes.size() / sizeof(T));
  if (!values.empty()) std::memcpy(values.data(), bytes.data(), values.size() * sizeof(T));
  return values;
}

absl::Status CheckSum(absl::string_view what, double value) {
  if (std::isnan(value)) return absl::InvalidArgumentError(absl::StrCat(what, " is NaN"));
  if (std::isinf(value)) return absl::InvalidArgumentError(absl::StrCat(what, " is infinite"));
  if (value < 0.0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " = ", value, " is negative"));
  }
  return absl::OkStatus();
}

// Checks one stored matrix m (both triangles as in the file); `name` says
// which tensor (and block) for messages.
absl::Status CheckSecondMomentSum(const RowMatrixXd& m, absl::string_view name) {
  const int64_t n = m.rows();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const double v = m(i, j);
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, ": [", i, ", ", j, "] is ", std::isnan(v) ? "NaN" : "infinite"));
      }
    }
  }
  Eigen::VectorXd root(n);  // sqrt(S_ii): the scale of row and column i.
  for (int64_t i = 0; i < n; ++i) {
    if (m(i, i) < 0.0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": diagonal [", i, ", ", i, "] = ", m(i, i), " is negative"));
    }
    root(i) = std::sqrt(m(i, i));
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i + 1; j < n; ++j) {
      const double scale = root(i) * root(j);  // No overflow, unlike sqrt(S_ii S_jj).
      const double upper = m(i, j);
      const double lower = m(j, i);
      if (std::abs(upper - lower) > kSymmetryTolerance * scale) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, ": not symmetric at [", i, ", ", j, "] = ", upper, " vs [", j, ", ",
                         i, "] = ", lower, " (difference above ", kSymmetryTolerance,
                         " * sqrt(S_ii S_jj) = ", kSymmetryTolerance * scale, ")"));
      }
      if (std::abs(upper) > (1.0 + kConsistencyTolerance) * scale) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": [", i, ", ", j, "] = ", upper,
                                                       " exceeds sqrt(S_ii S_jj) = ", scale,
                                                       " (Cauchy-Schwarz): not a sum of x x^T"));
      }
    }
  }
  return absl::OkStatus();
}

// The n x n matrix at element offset `offset` of the tensor's F64 data.
RowMatrixXd CopyMatrix(const SafetensorsFile& file, const TensorInfo& info, int64_t offset,
                       int64_t n) {
  RowMatrixXd m(n, n);
  const absl::string_view bytes = file.View(info).bytes();
  std::memcpy(m.data(), bytes.data() + offset * static_cast<int64_t>(sizeof(double)),
              static_cast<size_t>(n * n) * sizeof(double));
  return m;
}

// a <= b to relative kConsistencyTolerance, for a, b >= 0.
bool AtMost(double a, double b) { return a <= b * (1.0 + kConsistencyTolerance); }

// The diagonal element j of the Sx sum, from the blocks as read.
double SumDiagonal(const std::vector<RowMatrixXd>& upper, int64_t j) {
  const int64_t k = upper[0].rows();
  return upper[static_cast<size_t>(j / k)](j % k, j % k);
}

// K.absmax: finite, >= 0, and consistent with the diagonal of the Sx sum:
// one token reaches the maximum (absmax^2 <= Sx_jj) and none exceeds it
// (Sx_jj <= tokens absmax^2).
absl::StatusOr<Eigen::VectorXd> ReadChannelAbsMax(const SafetensorsFile& file,
                                                  const TensorInfo& info,
                                                  const std::vector<RowMatrixXd>& upper,
                                                  int64_t tokens) {
  int64_t dim = 0;
  for (const RowMatrixXd& block : upper) dim += block.rows();
  CATQ_RETURN_IF_ERROR(CheckDType(info, DType::kF64));
  CATQ_RETURN_IF_ERROR(CheckShape(info, {dim}));
  const std::vector<double> values = CopyElements<double>(file, info);
  for (int64_t j = 0; j < dim; ++j) {
    const double m = values[static_cast<size_t>(j)];
    if (!std::isfinite(m) || m < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(info.name, ": element ", j, " is ", m, ", expected finite and >= 0"));
    }
    const double diagonal = SumDiagonal(upper, j);
    const double squared = m * m;
    if (!AtMost(squared, diagonal) || !AtMost(diagonal, static_cast<double>(tokens) * squared)) {
      return absl::InvalidArgumentError(absl::StrCat(
          info.name, ": element ", j, " = ", m, " is inconsistent with the Sx diagonal ", diagonal,
          " over ", tokens, " tokens (need absmax^2 <= Sx_jj <= tokens absmax^2)"));
    }
  }
  return Eigen::Map<const Eigen::VectorXd>(values.data(), dim);
}

absl::StatusOr<SiteStatistics> ReadSite(const SafetensorsFile& file, const std::string& key,
                                        const SiteTensors& tensors) {
  const std::pair<const TensorInfo*, absl::string_view> required[] = {
      {tensors.sx, kSx},
      {tensors.tokens, kTokens},
      {tensors.range_sq_sum, kRangeSqSum},
      {tensors.norm_sq_sum, kNormSqSum},
  };
  for (const auto& [info, suffix] : required) {
    if (info == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, suffix, ": missing (site \"", key,
                       "\" needs .sx, .tokens, .range_sq_sum and .norm_sq_sum)"));
    }
  }
  const TensorInfo& sx = *tensors.sx;
  const TensorInfo& tokens_info = *tensors.tokens;
  const TensorInfo& range_info = *tensors.range_sq_sum;
  const TensorInfo& norm_info = *tensors.norm_sq_sum;

  // Dtypes and shapes.
  CATQ_RETURN_IF_ERROR(CheckDType(sx, DType::kF64));
  if (tensors.sx_tail != nullptr) CATQ_RETURN_IF_ERROR(CheckDType(*tensors.sx_tail, DType::kF64));
  CATQ_RETURN_IF_ERROR(CheckDType(tokens_info, DType::kI64));
  CATQ_RETURN_IF_ERROR(CheckDType(range_info, DType::kF64));
  CATQ_RETURN_IF_ERROR(CheckDType(norm_info, DType::kF64));
  CATQ_RETURN_IF_ERROR(CheckShape(tokens_info, {1}));
  CATQ_RETURN_IF_ERROR(CheckShape(range_info, {2}));
  CATQ_RETURN_IF_ERROR(CheckShape(norm_info, {1}));

  int64_t dim = 0;
  int64_t block_size = 0;  // 0: full
  int64_t full_blocks = 0;
  int64_t tail = 0;
  const std::vector<int64_t>& shape = sx.shape;
  if (shape.size() == 2 && shape[0] == shape[1] && shape[0] >= 1) {
    dim = shape[0];
    if (dim > SiteStatistics::kMaxFullDim) {
      return absl::InvalidArgumentError(absl::StrCat(
          sx.name, ": a full matrix of dimension ", dim, " exceeds ", SiteStatistics::kMaxFullDim,
          "; store the diagonal blocks [n, k, k] instead"));
    }
    if (tensors.sx_tail != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(tensors.sx_tail->name, ": present, but ", sx.name, " ", FormatShape(shape),
                       " is a full matrix (a tail belongs with blocks [n, k, k])"));
    }
  } else if (shape.size() == 3 && shape[1] == shape[2] && shape[0] >= 1 && shape[1] >= 1) {
    full_blocks = shape[0];
    block_size = shape[1];
    if (tensors.sx_tail != nullptr) {
      const std::vector<int64_t>& t = tensors.sx_tail->shape;
      if (t.size() != 2 || t[0] != t[1] || t[0] < 1 || t[0] >= block_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            tensors.sx_tail->name, ": shape ", FormatShape(t), ", expected [r, r] with 1 <= r < ",
            block_size, " (the block size of ", sx.name, ")"));
      }
      tail = t[0];
    } else if (full_blocks == 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(sx.name, ": a single block ", FormatShape(shape), " with no ", key, kSxTail,
                       " is the full matrix; store it as [", block_size, ", ", block_size, "]"));
    }
    // full_blocks * block_size is at most the element count, which fits.
    dim = full_blocks * block_size + tail;
    if (dim > SiteStatistics::kMaxDim) {
      return absl::InvalidArgumentError(
          absl::StrCat(sx.name, ": dimension ", dim, " exceeds ", SiteStatistics::kMaxDim));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(sx.name, ": shape ", FormatShape(shape),
                                                   " is neither a full matrix [d, d] nor "
                                                   "diagonal blocks [n, k, k] (d, n, k >= 1)"));
  }

  // Scalars.
  const int64_t tokens = CopyElements<int64_t>(file, tokens_info)[0];
  if (tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokens_info.name, ": ", tokens, " tokens, expected at least 1"));
  }
  const std::vector<double> range = CopyElements<double>(file, range_info);
  const double norm_sq = CopyElements<double>(file, norm_info)[0];
  CATQ_RETURN_IF_ERROR(CheckSum(absl::StrCat(range_info.name, "[0] (asymmetric)"), range[0]));
  CATQ_RETURN_IF_ERROR(CheckSum(absl::StrCat(range_info.name, "[1] (symmetric)"), range[1]));
  CATQ_RETURN_IF_ERROR(CheckSum(norm_info.name, norm_sq));

  // Matrices.
  CATQ_ASSIGN_OR_RETURN(SiteStatistics stats,
                        SiteStatistics::Create(dim, {.block_size = block_size}));
  std::vector<RowMatrixXd>& upper = Access::upper(stats);
  double trace = 0.0;
  for (size_t b = 0; b < upper.size(); ++b) {
    const int64_t bi = static_cast<int64_t>(b);
    const int64_t n = upper[b].rows();
    std::string name;
    if (block_size == 0) {
      upper[b] = CopyMatrix(file, sx, 0, n);
      name = sx.name;
    } else if (bi < full_blocks) {
      upper[b] = CopyMatrix(file, sx, bi * block_size * block_size, n);
      name = absl::StrCat(sx.name, ": block ", bi);
    } else {
      upper[b] = CopyMatrix(file, *tensors.sx_tail, 0, n);
      name = tensors.sx_tail->name;
    }
    CATQ_RETURN_IF_ERROR(CheckSecondMomentSum(upper[b], name));
    trace += upper[b].trace();
  }

  // Consistency of the sums with each other (see the header).
  const double asymmetric = range[0];
  const double symmetric = range[1];
  if (std::abs(trace - norm_sq) > kConsistencyTolerance * std::max(trace, norm_sq)) {
    return absl::InvalidArgumentError(
        absl::StrCat(norm_info.name, ": ", norm_sq, " differs from the trace of ", sx.name, ", ",
                     trace, ", by more than relative ", kConsistencyTolerance,
                     " (both are sums of ||x||^2 over the same tokens, not means)"));
  }
  if (!AtMost(symmetric / 4.0, asymmetric)) {
    return absl::InvalidArgumentError(absl::StrCat(
        range_info.name, ": [0] = ", asymmetric, " is below [1] / 4 = ", symmetric / 4.0,
        "; per token max(x,0) - min(x,0) >= max|x| (are [0] and [1] swapped?)"));
  }
  if (!AtMost(asymmetric, symmetric)) {
    return absl::InvalidArgumentError(
        absl::StrCat(range_info.name, ": [0] = ", asymmetric, " exceeds [1] = ", symmetric,
                     "; per token max(x,0) - min(x,0) <= 2 max|x| (are [0] and [1] swapped?)"));
  }
  if (!AtMost(symmetric / 4.0, norm_sq)) {
    return absl::InvalidArgumentError(absl::StrCat(range_info.name, ": [1] / 4 = ", symmetric / 4.0,
                                                   " exceeds ", norm_info.name, " = ", norm_sq,
                                                   "; per token max|x|^2 <= ||x||^2"));
  }
  if (!AtMost(norm_sq, static_cast<double>(dim) * symmetric / 4.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(norm_info.name, ": ", norm_sq, " exceeds d * ", range_info.name,
                     "[1] / 4 = ", static_cast<double>(dim) * symmetric / 4.0, " (d = ", dim,
                     "); per token ||x||^2 <= d max|x|^2"));
  }

  // norm_sq_sum() is the trace, which was just checked against the file's value.
  Access::SetScalars(stats, tokens, asymmetric, symmetric);
  Eigen::VectorXd absmax;
  if (tensors.absmax != nullptr) {
    CATQ_ASSIGN_OR_RETURN(absmax, ReadChannelAbsMax(file, *tensors.absmax, upper, tokens));
  }
  Access::SetChannelAbsMax(stats, std::move(absmax));
  return stats;
}

// Every site of the file, or only those in `only` when it is given (NotFound
// naming a key the file lacks). Each site read is released from memory
// afterwards: a job reads a layer's sites at a time from a file of all of
// them.
absl::StatusOr<std::map<std::string, SiteStatistics>> ReadSites(
    const SafetensorsFile& file, const std::vector<std::string>* only) {
  std::map<std::string, SiteTensors> grouped;
  for (const TensorInfo& info : file.tensors()) CATQ_RETURN_IF_ERROR(FileTensor(info, grouped));
  if (grouped.empty()) return absl::InvalidArgumentError("holds no site statistics");
  std::map<std::string, SiteStatistics> sites;
  for (const auto& [key, tensors] : grouped) {
    if (only != nullptr && std::find(only->begin(), only->end(), key) == only->end()) continue;
    CATQ_ASSIGN_OR_RETURN(SiteStatistics stats, ReadSite(file, key, tensors));
    sites.emplace(key, std::move(stats));
    for (const TensorInfo& info : file.tensors()) {
      if (absl::StartsWith(info.name, key) && info.name.size() > key.size() &&
          info.name[key.size()] == '.') {
        file.ReleaseTensor(info);
      }
    }
  }
  if (only != nullptr) {
    for (const std::string& key : *only) {
      if (!sites.contains(key)) return absl::NotFoundError(absl::StrCat("no statistics for ", key));
    }
  }
  return sites;
}

}  // namespace

absl::Status WriteSiteStatistics(Env* env, const std::string& path,
                                 const std::map<std::string, SiteStatistics>& sites) {
  if (sites.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no site statistics to write"));
  }
  std::vector<TensorSpec> specs;
  for (const auto& [key, stats] : sites) {
    if (key.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty site key"));
    if (stats.tokens() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": site \"", key, "\" has no tokens"));
    }
    const int64_t d = stats.dim();
    const int64_t k = stats.block_size();
    if (stats.is_full()) {
      specs.push_back({absl::StrCat(key, kSx), DType::kF64, {d, d}});
    } else {
      specs.push_back({absl::StrCat(key, kSx), DType::kF64, {d / k, k, k}});
      if (d % k != 0) specs.push_back({absl::StrCat(key, kSxTail), DType::kF64, {d % k, d % k}});
    }
    specs.push_back({absl::StrCat(key, kTokens), DType::kI64, {1}});
    specs.push_back({absl::StrCat(key, kRangeSqSum), DType::kF64, {2}});
    specs.push_back({absl::StrCat(key, kNormSqSum), DType::kF64, {1}});
    if (stats.has_channel_absmax()) specs.push_back({absl::StrCat(key, kAbsMax), DType::kF64, {d}});
  }
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                        SafetensorsWriter::Create(env, path, std::move(specs)));
  std::vector<double> row;
  for (const auto& [key, stats] : sites) {
    for (int64_t b = 0; b < stats.NumBlocks(); ++b) {
      CATQ_RETURN_IF_ERROR(AppendSymmetric(stats.UpperSumBlock(b), row, *writer));
    }
    const int64_t tokens = stats.tokens();
    const double range[2] = {stats.range_sq_sum(ActivationRange::kAsymmetric),
                             stats.range_sq_sum(ActivationRange::kSymmetric)};
    const double norm_sq = stats.norm_sq_sum();
    CATQ_RETURN_IF_ERROR(writer->Append(Bytes(&tokens, sizeof(tokens))));
    CATQ_RETURN_IF_ERROR(writer->Append(Bytes(range, sizeof(range))));
    CATQ_RETURN_IF_ERROR(writer->Append(Bytes(&norm_sq, sizeof(norm_sq))));
    if (stats.has_channel_absmax()) {
      const Eigen::VectorXd& absmax = stats.channel_absmax();
      CATQ_RETURN_IF_ERROR(writer->Append(
          Bytes(absmax.data(), sizeof(double) * static_cast<size_t>(absmax.size()))));
    }
  }
  return writer->Finish();
}

absl::StatusOr<std::map<std::string, SiteStatistics>> ReadSiteStatistics(const std::string& path,
                                                                         Env* env) {
  CATQ_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path, env));
  absl::StatusOr<std::map<std::string, SiteStatistics>> sites = ReadSites(file, nullptr);
  if (!sites.ok()) return Prefix(path, sites.status());
  return sites;
}

absl::StatusOr<std::map<std::string, SiteStatistics>> ReadSiteStatisticsOf(
    const std::string& path, const std::vector<std::string>& keys, Env* env) {
  CATQ_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path, env));
  absl::StatusOr<std::map<std::string, SiteStatistics>> sites = ReadSites(file, &keys);
  if (!sites.ok()) return Prefix(path, sites.status());
  return sites;
}

}  // namespace catq
