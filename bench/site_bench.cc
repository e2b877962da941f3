// catq_bench_site: catq's whole per-site work for the `cat` recipe on
// Llama-7B shapes, stage by stage, with the process's peak memory, so that
// bench/compare_torch.py can hold it against the same work written in
// PyTorch. Two sites of layer 0:
//
//   attn_in   d = 4096,  read by q_proj, k_proj, v_proj (each 4096 x 4096)
//   mlp_out   d = 11008, read by down_proj (4096 x 11008)
//
// Recipe: the CLI's `--recipe cat` defaults (block size k = 128, damping
// 1e-2, eigenvalue clip 1e-12, RTN W4 symmetric per output channel, scales
// stored as F16) with the Hadamard on top turned off (--no-cat-hadamard), so
// that T is the block-diagonal CAT factor alone.
//
// Each site runs twice, through the library functions the service runs:
//
//   parts          the stages one by one, each timed: Sw (the diagonal blocks
//                  of sum W^T W, WeightSecondMomentBlocks), solve
//                  (MakeSiteTransform: the per-block eigen-solves, the cond(T_b)
//                  and inverse-residual report, the LU of each block), W T^-1
//                  (SiteTransform::TransformWeight), RTN (QuantizeRtn with the
//                  F16 scale rounding) and pack (PackInt4CompressedTensors and
//                  the F16 scale bytes). This is the work the PyTorch version
//                  repeats, and what is written to --out.
//   QuantizeSite   the site task as workers run it (the same stages plus
//                  cond(T) for the report, the dequantized copy and the
//                  weight error figures). Its packed bytes and T must equal
//                  the parts' bit for bit, or the run fails.
//
// Peak memory is getrusage's ru_maxrss, read after every site's parts ran
// (the figure comparable with PyTorch's) and at the end. Linux carries the
// high-water mark of the process that forked this one across exec, so start
// it from a small parent. The full synthetic run takes about 15 s on 2 cores.
//
//   catq_bench_site                         # synthetic inputs, Llama-7B shapes
//   catq_bench_site --quick                 # d = 256 and 688 (a tail block), 256 rows
//   catq_bench_site --stats=S --weights=W --out=R.safetensors --json=R.json --threads=2
//
// --stats is a site statistics file (core/cat/site_statistics.h) with block
// size 128 holding model.layers.0.attn_in and/or model.layers.0.mlp_out;
// --weights a safetensors file with those sites' F32 weights under their
// checkpoint names (model.layers.0.self_attn.q_proj.weight, ...). --out gets,
// per site, the stored T blocks (model.layers.0.catq.<site>.blocks[_tail],
// F32), and per linear <m> its W T^-1 (<m>.weight_transformed, F32) and the
// compressed-tensors tensors (<m>.weight_packed, .weight_scale, .weight_shape).
// --threads sets the OpenBLAS thread count (default 2); the rest of catq's
// per-site work runs on the calling thread.
//
// Figures, not tests; a failing call aborts the run.
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "benchmark/benchmark.h"
#include "core/cat/block_cat.h"
#include "core/cat/recipe.h"
#include "core/cat/site_statistics.h"
#include "core/cat/site_transform.h"
#include "core/cat/weight_moments.h"
#include "core/io/env.h"
#include "core/math/blas.h"
#include "core/math/eigen_types.h"
#include "core/model/llama_weights.h"
#include "core/output/packed_linear.h"
#include "core/output/site_quantizer.h"
#include "core/quant/compressed_tensors_pack.h"
#include "core/quant/rtn.h"
#include "core/tensor/float_encoding.h"
#include "core/tensor/safetensors_file.h"
#include "core/tensor/safetensors_writer.h"

#ifndef CATQ_BENCH_BUILD_TYPE
#define CATQ_BENCH_BUILD_TYPE "unknown"
#endif

namespace catq {
namespace {

constexpr int64_t kLayer = 0;
constexpr int kBlockSize = 128;

struct Flags {
  bool quick = false;
  int threads = 2;
  int reps = 1;
  int64_t tokens = 2048;  // synthetic calibration tokens per site
  std::string stats_path;
  std::string weights_path;
  std::string out_path;
  std::string json_path;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "catq_bench_site: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T OrDie(absl::StatusOr<T> value, const std::string& what) {
  if (!value.ok()) Die(what + ": " + value.status().ToString());
  return *std::move(value);
}

void OrDie(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Die(what + ": " + status.ToString());
}

// The recipe the comparison runs: `catq quantize --recipe cat --no-cat-hadamard`.
Recipe BenchRecipe() {
  Recipe recipe;
  recipe.method = Method::kCat;
  recipe.block_size = kBlockSize;
  recipe.cat_hadamard = false;
  OrDie(recipe.Validate(), "recipe");
  return recipe;
}

int64_t PeakRssKib() {
  struct rusage usage = {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;  // KiB on Linux
}

using Clock = std::chrono::steady_clock;

// Seconds since `start`; restarts it, so consecutive calls time consecutive
// stages.
double Lap(Clock::time_point& start) {
  const Clock::time_point now = Clock::now();
  const double seconds = std::chrono::duration<double>(now - start).count();
  start = now;
  return seconds;
}

// ---------------------------------------------------------------------------
// Inputs: a site's shape, its statistics and, loaded one site at a time, its
// weights.

struct SiteShape {
  Site site = Site::kAttnIn;
  int64_t dim = 0;
  std::vector<int64_t> rows;  // per linear, LinearsOfSite(site) order
};

class Inputs {
 public:
  // Synthetic: Llama-7B shapes (or the quick ones), statistics accumulated
  // from seeded random activations.
  static Inputs Synthetic(const Flags& flags);
  // From --stats and --weights.
  static Inputs FromFiles(const Flags& flags);

  const std::vector<SiteShape>& shapes() const { return shapes_; }
  const SiteStatistics& stats(Site site) const {
    return stats_.at(SiteQualifiedName(kLayer, site));
  }
  SiteWeights LoadWeights(const SiteShape& shape) const;

 private:
  std::vector<SiteShape> shapes_;
  std::map<std::string, SiteStatistics> stats_;
  std::string weights_path_;  // empty: synthetic
};

// Activations shaped like a real site's: channel scales spread over two
// orders of magnitude, a rank-4 component shared by all channels, and every
// 97th channel an outlier 20x above the rest.
SiteStatistics SyntheticStatistics(int64_t dim, int64_t tokens, uint64_t seed) {
  SiteStatistics stats = OrDie(SiteStatistics::Create(dim, {.block_size = kBlockSize}), "stats");
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> scale(dim);
  for (int64_t j = 0; j < dim; ++j) {
    scale[j] = std::exp(1.15f * normal(rng)) * (j % 97 == 0 ? 20.0f : 1.0f);
  }
  constexpr int kRank = 4;
  RowMatrixXf mixing(kRank, dim);
  for (Eigen::Index i = 0; i < mixing.size(); ++i) mixing.data()[i] = normal(rng);
  constexpr int64_t kBatch = 256;
  RowMatrixXf x(kBatch, dim);
  Eigen::RowVectorXf shared(kRank);
  for (int64_t t0 = 0; t0 < tokens; t0 += kBatch) {
    const int64_t n = std::min(kBatch, tokens - t0);
    for (int64_t t = 0; t < n; ++t) {
      for (int r = 0; r < kRank; ++r) shared(r) = normal(rng);
      x.row(t) = shared * mixing;
      for (int64_t j = 0; j < dim; ++j) x(t, j) = (x(t, j) + normal(rng)) * scale[j];
    }
    OrDie(stats.Accumulate(x.topRows(n)), "synthetic statistics");
  }
  return stats;
}

// Weights with per-column scales, so that Sw is far from a multiple of I.
RowMatrixXf SyntheticWeight(int64_t rows, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  Eigen::RowVectorXf column_scale(dim);
  for (int64_t j = 0; j < dim; ++j) column_scale(j) = 0.02f * std::exp(0.5f * normal(rng));
  RowMatrixXf w(rows, dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < dim; ++j) w(r, j) = normal(rng) * column_scale(j);
  }
  return w;
}

Inputs Inputs::Synthetic(const Flags& flags) {
  Inputs inputs;
  if (flags.quick) {
    inputs.shapes_ = {{Site::kAttnIn, 256, {256, 256, 256}}, {Site::kMlpOut, 688, {256}}};
  } else {
    inputs.shapes_ = {{Site::kAttnIn, 4096, {4096, 4096, 4096}}, {Site::kMlpOut, 11008, {4096}}};
  }
  for (const SiteShape& shape : inputs.shapes_) {
    inputs.stats_.emplace(
        SiteQualifiedName(kLayer, shape.site),
        SyntheticStatistics(shape.dim, flags.tokens, 1000 + static_cast<uint64_t>(shape.site)));
  }
  return inputs;
}

Inputs Inputs::FromFiles(const Flags& flags) {
  Inputs inputs;
  inputs.weights_path_ = flags.weights_path;
  inputs.stats_ = OrDie(ReadSiteStatistics(flags.stats_path), "--stats");
  const SafetensorsFile file = OrDie(SafetensorsFile::Open(flags.weights_path), "--weights");
  for (Site site : kAllSites) {
    const std::string key = SiteQualifiedName(kLayer, site);
    const auto it = inputs.stats_.find(key);
    if (it == inputs.stats_.end()) continue;
    SiteShape shape{site, it->second.dim(), {}};
    for (LinearKind kind : LinearsOfSite(site)) {
      const std::string name = LinearWeightName(kLayer, kind);
      const TensorView view = OrDie(file.Get(name), "--weights");
      if (view.dtype() != DType::kF32 || view.shape().size() != 2 || view.shape()[1] != shape.dim) {
        Die(absl::StrCat(name, ": expected F32 [rows, ", shape.dim, "]"));
      }
      shape.rows.push_back(view.shape()[0]);
    }
    inputs.shapes_.push_back(std::move(shape));
  }
  if (inputs.shapes_.empty()) {
    Die(absl::StrCat(flags.stats_path, " holds neither ", SiteQualifiedName(kLayer, Site::kAttnIn),
                     " nor ", SiteQualifiedName(kLayer, Site::kMlpOut)));
  }
  return inputs;
}

SiteWeights Inputs::LoadWeights(const SiteShape& shape) const {
  SiteWeights weights;
  weights.layer = kLayer;
  weights.site = shape.site;
  weights.kinds = LinearsOfSite(shape.site);
  for (size_t i = 0; i < weights.kinds.size(); ++i) {
    const LinearKind kind = weights.kinds[i];
    weights.modules.push_back(LinearModuleName(kLayer, kind));
    if (weights_path_.empty()) {
      weights.weights.push_back(
          SyntheticWeight(shape.rows[i], shape.dim, 100 * static_cast<uint64_t>(shape.site) + i));
      continue;
    }
    // One mapping per tensor, closed once copied: the file's pages do not
    // stay resident next to the copies (they would count in the peak).
    const SafetensorsFile file = OrDie(SafetensorsFile::Open(weights_path_), "--weights");
    const TensorView view = OrDie(file.Get(LinearWeightName(kLayer, kind)), "--weights");
    RowMatrixXf w(shape.rows[i], shape.dim);
    OrDie(view.CopyToFloat(absl::MakeSpan(w.data(), w.size())), "--weights");
    weights.weights.push_back(std::move(w));
  }
  return weights;
}

// ---------------------------------------------------------------------------
// The two runs of a site.

struct PartsSeconds {
  double sw = 0.0;
  double solve = 0.0;
  double transform = 0.0;
  double rtn = 0.0;
  double pack = 0.0;
  double total = 0.0;
  // Not a stage: the part of `solve` spent in the two eigendecompositions
  // per block that T_b needs (SymmetricPowers of the damped Sx_bb and of
  // C_b), timed again on their own after the solve; the rest of `solve` is
  // the report (cond(T_b), the inverse residual, the eigenvalues of Sw_bb)
  // and the LU factors of W T^-1.
  double solve_eigen = 0.0;
};

// The eigendecompositions of SolveBlockCat alone (see solve_eigen), on the
// same blocks and options, for attributing the solve's time.
double EigenSolveSeconds(const Recipe& recipe, const std::vector<Eigen::MatrixXd>& sx_blocks,
                         const std::vector<Eigen::MatrixXd>& sw_blocks) {
  const Clock::time_point start = Clock::now();
  for (size_t b = 0; b < sx_blocks.size(); ++b) {
    Eigen::MatrixXd sx = sx_blocks[b];
    sx.diagonal().array() += recipe.damping * sx.diagonal().mean();
    Eigen::MatrixXd sw = sw_blocks[b];
    sw.diagonal().array() += recipe.damping * sw.diagonal().mean();
    const SymmetricPowers sx_powers = OrDie(SymmetricPowers::Create(sx, recipe.eigen_clip), "eig");
    const Eigen::MatrixXd sx_sqrt = sx_powers.Power(0.5);
    Eigen::MatrixXd c = sx_sqrt * sw * sx_sqrt;
    c = 0.5 * (c + c.transpose()).eval();
    const SymmetricPowers c_powers = OrDie(SymmetricPowers::Create(c, recipe.eigen_clip), "eig");
    benchmark::DoNotOptimize(c_powers.eigenvalues().data());
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct PackedBytes {
  std::string weight_packed;
  std::string weight_scale;
};

std::string TransformedWeightName(absl::string_view module) {
  return absl::StrCat(module, ".weight_transformed");
}

// The bytes of `count` floats, in place: a copy of a W T^-1 would count in
// the peak memory.
absl::string_view FloatBytes(const float* data, int64_t count) {
  return absl::string_view(reinterpret_cast<const char*>(data), count * sizeof(float));
}

// The output's tensors of one site, in write order.
std::vector<TensorSpec> SiteOutputSpecs(const Recipe& recipe, const SiteShape& shape) {
  std::vector<TensorSpec> specs = OrDie(
      PlanSiteTransformSpecs(recipe, kLayer, shape.site, shape.dim, /*folded=*/false), "specs");
  const std::vector<LinearKind> kinds = LinearsOfSite(shape.site);
  for (size_t i = 0; i < kinds.size(); ++i) {
    const std::string module = LinearModuleName(kLayer, kinds[i]);
    specs.push_back({TransformedWeightName(module), DType::kF32, {shape.rows[i], shape.dim}});
    for (TensorSpec& spec :
         PackedLinearSpecs(module, shape.rows[i], shape.dim, recipe.weights, recipe.scale_dtype)) {
      specs.push_back(std::move(spec));
    }
  }
  return specs;
}

// What the parts run keeps for the QuantizeSite run to be checked against.
struct PartsResult {
  PartsSeconds seconds;
  std::vector<float> blocks;  // the stored T blocks, concatenated
  std::vector<PackedBytes> packed;
};

// The stages one by one. `writer`, when given, gets the site's tensors in
// SiteOutputSpecs order; each W T^-1 is released once written.
PartsResult RunParts(const Recipe& recipe, const SiteWeights& weights, const SiteStatistics& stats,
                     SafetensorsWriter* writer) {
  PartsResult result;
  PartsSeconds& s = result.seconds;
  const Clock::time_point start = Clock::now();
  Clock::time_point lap = start;
  const std::vector<Eigen::Ref<const RowMatrixXf>> views(weights.weights.begin(),
                                                         weights.weights.end());
  std::vector<Eigen::MatrixXd> sw_blocks =
      OrDie(WeightSecondMomentBlocks(views, recipe.block_size,
                                     {.normalize_by_frobenius = recipe.normalize_weight_moments}),
            "Sw");
  s.sw = Lap(lap);

  std::vector<Eigen::MatrixXd> sx_blocks;
  for (int64_t b = 0; b < stats.NumBlocks(); ++b) {
    sx_blocks.push_back(OrDie(stats.SecondMomentBlock(b), "Sx"));
  }
  SiteTransformInputs inputs;
  inputs.dim = weights.dim();
  inputs.sx_blocks = sx_blocks;
  inputs.sw_blocks = sw_blocks;
  inputs.eigen_clip = recipe.eigen_clip;
  inputs.mixing.seed = recipe.mixing_seed;
  const SiteTransformResult solved = OrDie(MakeSiteTransform(recipe, inputs), "solve");
  const SiteTransform& transform = solved.transform;
  s.solve = Lap(lap);
  s.solve_eigen = EigenSolveSeconds(recipe, sx_blocks, sw_blocks);
  lap = Clock::now();

  const SiteTransformTensors stored = transform.ExportTensors();
  for (const std::optional<TransformTensorF32>& tensor : {stored.blocks, stored.blocks_tail}) {
    if (!tensor.has_value()) continue;
    result.blocks.insert(result.blocks.end(), tensor->values.begin(), tensor->values.end());
    if (writer != nullptr) {
      OrDie(writer->Append(
                FloatBytes(tensor->values.data(), static_cast<int64_t>(tensor->values.size()))),
            "write");
    }
  }
  const ScaleRounding rounding = StorageScaleRounding(recipe.scale_dtype);
  for (size_t i = 0; i < weights.weights.size(); ++i) {
    lap = Clock::now();
    const RowMatrixXf w = OrDie(transform.TransformWeight(weights.weights[i]), "W T^-1");
    s.transform += Lap(lap);
    const QuantizedWeight qw = OrDie(QuantizeRtn(w, recipe.weights, rounding), "RTN");
    s.rtn += Lap(lap);
    const CompressedTensorsInt4 packed = OrDie(PackInt4CompressedTensors(qw), "pack");
    PackedBytes bytes;
    bytes.weight_packed = std::string(reinterpret_cast<const char*>(packed.weight_packed.data()),
                                      packed.weight_packed.size() * sizeof(int32_t));
    bytes.weight_scale = OrDie(EncodeFloats(qw.scales, recipe.scale_dtype), "scales");
    s.pack += Lap(lap);
    if (writer != nullptr) {
      const std::array<int64_t, 2> shape = packed.weight_shape();
      OrDie(writer->Append(FloatBytes(w.data(), w.size())), "write");
      OrDie(writer->Append(bytes.weight_packed), "write");
      OrDie(writer->Append(bytes.weight_scale), "write");
      OrDie(writer->Append(
                absl::string_view(reinterpret_cast<const char*>(shape.data()), sizeof(shape))),
            "write");
    }
    result.packed.push_back(std::move(bytes));
  }
  s.total = s.sw + s.solve + s.transform + s.rtn + s.pack;
  return result;
}

// QuantizeSite, checked against the parts run.
SiteResult RunQuantizeSite(const Recipe& recipe, const SiteWeights& weights,
                           const SiteStatistics& stats, const PartsResult& parts) {
  SiteResult result = OrDie(QuantizeSite(recipe, weights, &stats, nullptr), "QuantizeSite");
  std::vector<float> blocks;
  for (const std::optional<TransformTensorF32>& tensor :
       {result.online.blocks, result.online.blocks_tail}) {
    if (tensor.has_value())
      blocks.insert(blocks.end(), tensor->values.begin(), tensor->values.end());
  }
  if (blocks != parts.blocks) Die("QuantizeSite's T differs from the parts run's");
  for (size_t i = 0; i < result.packed.size(); ++i) {
    const PackedLinear& packed = result.packed[i];
    if (packed.bytes[0] != parts.packed[i].weight_packed ||
        packed.bytes[1] != parts.packed[i].weight_scale) {
      Die(absl::StrCat("QuantizeSite's ", weights.modules[i],
                       " packed weights differ from the parts run's"));
    }
  }
  return result;
}

// ---------------------------------------------------------------------------

struct SiteFigures {
  std::string key;
  int64_t dim = 0;
  std::vector<int64_t> rows;
  PartsSeconds parts;
  double quantize_site = 0.0;
  StageSeconds quantize_site_stages;
  double max_condition = 0.0;
};

void KeepBest(PartsSeconds& best, const PartsSeconds& run, bool first) {
  if (first) {
    best = run;
    return;
  }
  best.sw = std::min(best.sw, run.sw);
  best.solve = std::min(best.solve, run.solve);
  best.transform = std::min(best.transform, run.transform);
  best.rtn = std::min(best.rtn, run.rtn);
  best.pack = std::min(best.pack, run.pack);
  best.total = std::min(best.total, run.total);
  best.solve_eigen = std::min(best.solve_eigen, run.solve_eigen);
}

std::string Json(const std::vector<SiteFigures>& sites, const Flags& flags, int64_t rss_parts,
                 int64_t rss_end) {
  std::string json = absl::StrFormat(
      "{\"threads\": %d, \"reps\": %d, \"build\": \"%s\", \"peak_rss_parts_kib\": %d, "
      "\"peak_rss_kib\": %d, \"sites\": [",
      flags.threads, flags.reps, CATQ_BENCH_BUILD_TYPE, rss_parts, rss_end);
  for (size_t i = 0; i < sites.size(); ++i) {
    const SiteFigures& f = sites[i];
    absl::StrAppendFormat(
        &json,
        "%s{\"key\": \"%s\", \"dim\": %d, \"max_condition\": %.6g, \"parts\": {\"sw\": %.6f, "
        "\"solve\": %.6f, \"solve_eigen\": %.6f, \"transform\": %.6f, \"rtn\": %.6f, \"pack\": "
        "%.6f, \"total\": %.6f}, "
        "\"quantize_site\": {\"total\": %.6f, \"solve\": %.6f, \"quantize\": %.6f, "
        "\"pack\": %.6f}}",
        i == 0 ? "" : ", ", f.key, f.dim, f.max_condition, f.parts.sw, f.parts.solve,
        f.parts.solve_eigen, f.parts.transform, f.parts.rtn, f.parts.pack, f.parts.total,
        f.quantize_site, f.quantize_site_stages.solve, f.quantize_site_stages.quantize,
        f.quantize_site_stages.pack);
  }
  json += "]}\n";
  return json;
}

void PrintTable(const std::vector<SiteFigures>& sites) {
  std::printf("\n%-24s %8s %8s %8s %8s %8s %9s %13s\n", "site (seconds)", "Sw", "solve", "W T^-1",
              "RTN", "pack", "parts", "QuantizeSite");
  for (const SiteFigures& f : sites) {
    std::printf("%-24s %8.3f %8.3f %8.3f %8.3f %8.3f %9.3f %13.3f\n", f.key.c_str(), f.parts.sw,
                f.parts.solve, f.parts.transform, f.parts.rtn, f.parts.pack, f.parts.total,
                f.quantize_site);
  }
  std::printf(
      "\nQuantizeSite's own stages (solve includes Sw and cond(T); pack includes the\n"
      "dequantized copy and the error figures):\n");
  for (const SiteFigures& f : sites) {
    std::printf("%-24s solve %.3f  quantize (W T^-1 + RTN) %.3f  pack %.3f\n", f.key.c_str(),
                f.quantize_site_stages.solve, f.quantize_site_stages.quantize,
                f.quantize_site_stages.pack);
  }
  std::printf("\nOf the parts' solve, the two eigendecompositions per block alone take:\n");
  for (const SiteFigures& f : sites) {
    std::printf("%-24s %.3f of %.3f s\n", f.key.c_str(), f.parts.solve_eigen, f.parts.solve);
  }
}

void Usage() {
  std::printf(
      "usage: catq_bench_site [--quick] [--stats=FILE --weights=FILE] [--out=FILE] "
      "[--json=FILE]\n"
      "                       [--threads=N] [--reps=N] [--tokens=N]\n"
      "  --quick          synthetic d = 256 (attn_in) and 688 (mlp_out), 256 rows per linear\n"
      "  --stats, --weights  inputs from files instead of synthetic ones (see the file comment)\n"
      "  --out=FILE       T blocks, W T^-1 and the packed weights (safetensors)\n"
      "  --json=FILE      the figures as JSON\n"
      "  --threads=N      OpenBLAS threads (default 2)\n"
      "  --reps=N         runs of each site, best time per stage kept (default 1)\n"
      "  --tokens=N       synthetic calibration tokens per site (default 2048)\n");
}

int64_t ParseInt(std::string_view flag, std::string_view value, int64_t lo, int64_t hi) {
  const std::string text(value);
  char* end = nullptr;
  const long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || parsed < lo || parsed > hi) {
    Die(absl::StrCat(std::string(flag), " wants an integer in [", lo, ", ", hi, "], got '", text,
                     "'"));
  }
  return parsed;
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string_view name = arg.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? "" : arg.substr(eq + 1);
    if (arg == "--quick") {
      flags.quick = true;
    } else if (name == "--threads") {
      flags.threads = static_cast<int>(ParseInt(name, value, 1, 256));
    } else if (name == "--reps") {
      flags.reps = static_cast<int>(ParseInt(name, value, 1, 100));
    } else if (name == "--tokens") {
      flags.tokens = ParseInt(name, value, 1, int64_t{1} << 24);
    } else if (name == "--stats") {
      flags.stats_path = value;
    } else if (name == "--weights") {
      flags.weights_path = value;
    } else if (name == "--out") {
      flags.out_path = value;
    } else if (name == "--json") {
      flags.json_path = value;
    } else if (arg == "--help" || arg == "-h") {
      Usage();
      std::exit(0);
    } else {
      Usage();
      Die("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (flags.stats_path.empty() != flags.weights_path.empty()) {
    Die("--stats and --weights go together");
  }
  return flags;
}

int Run(const Flags& flags) {
  OrDie(SetBlasThreads(flags.threads), "--threads");
  const Recipe recipe = BenchRecipe();
  const bool from_files = !flags.stats_path.empty();
  std::printf(
      "catq_bench_site: recipe cat (k = %d, damping %g, no Hadamard), RTN W4 symmetric per "
      "channel, F16 scales; OpenBLAS %d threads (%s); best of %d; build %s; inputs %s\n",
      recipe.block_size, recipe.damping, BlasThreads(), BlasDescription().c_str(), flags.reps,
      CATQ_BENCH_BUILD_TYPE, from_files ? "from files" : "synthetic");
  const Inputs inputs = from_files ? Inputs::FromFiles(flags) : Inputs::Synthetic(flags);

  std::unique_ptr<SafetensorsWriter> writer;
  if (!flags.out_path.empty()) {
    std::vector<TensorSpec> specs;
    for (const SiteShape& shape : inputs.shapes()) {
      for (TensorSpec& spec : SiteOutputSpecs(recipe, shape)) specs.push_back(std::move(spec));
    }
    writer =
        OrDie(SafetensorsWriter::Create(Env::Default(), flags.out_path, std::move(specs)), "--out");
  }

  std::vector<SiteFigures> figures;
  std::vector<PartsResult> kept;  // for checking QuantizeSite afterwards
  for (const SiteShape& shape : inputs.shapes()) {
    SiteFigures f;
    f.key = SiteQualifiedName(kLayer, shape.site);
    f.dim = shape.dim;
    f.rows = shape.rows;
    const SiteWeights weights = inputs.LoadWeights(shape);
    PartsResult last;
    for (int rep = 0; rep < flags.reps; ++rep) {
      const bool final_rep = rep + 1 == flags.reps;
      last =
          RunParts(recipe, weights, inputs.stats(shape.site), final_rep ? writer.get() : nullptr);
      KeepBest(f.parts, last.seconds, rep == 0);
    }
    std::fprintf(stderr, "%s: parts %.3f s\n", f.key.c_str(), f.parts.total);
    kept.push_back(std::move(last));
    figures.push_back(std::move(f));
  }
  const int64_t rss_parts = PeakRssKib();
  if (writer != nullptr) OrDie(writer->Finish(), "--out");

  for (size_t s = 0; s < inputs.shapes().size(); ++s) {
    const SiteShape& shape = inputs.shapes()[s];
    SiteFigures& f = figures[s];
    const SiteWeights weights = inputs.LoadWeights(shape);
    for (int rep = 0; rep < flags.reps; ++rep) {
      const SiteResult result = RunQuantizeSite(recipe, weights, inputs.stats(shape.site), kept[s]);
      if (rep == 0 || result.report.seconds < f.quantize_site) {
        f.quantize_site = result.report.seconds;
        f.quantize_site_stages = result.report.stages;
        f.max_condition = result.report.condition;
      }
    }
    std::fprintf(stderr, "%s: QuantizeSite %.3f s\n", f.key.c_str(), f.quantize_site);
  }
  const int64_t rss_end = PeakRssKib();

  PrintTable(figures);
  std::printf("\npeak resident memory: %.1f MiB after the parts runs, %.1f MiB at the end\n",
              rss_parts / 1024.0, rss_end / 1024.0);
  std::printf("QuantizeSite's T and packed weights equal the parts run's bit for bit.\n");
  if (!flags.json_path.empty()) {
    OrDie(WriteFileAtomically(Env::Default(), flags.json_path,
                              Json(figures, flags, rss_parts, rss_end)),
          "--json");
  }
  return 0;
}

}  // namespace
}  // namespace catq

int main(int argc, char** argv) { return catq::Run(catq::ParseFlags(argc, argv)); }
