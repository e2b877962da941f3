// File: core/cat/site_transform.h
//
// SiteTransform: the function-preserving transform T of one activation site
// (cat-method.md section 2), T = M * B with
//
//   B  an optional block-diagonal factor: blocks of size k, a smaller last
//      block (the tail) when k does not divide d; k = 1 is a diagonal;
//   M  an optional orthogonal mixing matrix (MixingMatrix, H_(2^a) (x) Q_q).
//
// Activations become x' = T x (block matmul, then mixing) and the weights
// reading the site W' = W T^-1 = (W B^-1) M^T, so W' x' = W x. W B^-1 is
// computed block by block with triangular solves against an LU of each B_b,
// never with an inverse of T. The stored form is architecture.md section 4:
// `blocks` F32 [d/k, k, k], `blocks_tail` F32 [r, r], `rot_q` F32 [q, q].
//
//   CATQ_ASSIGN_OR_RETURN(CatTransform cat, MakeCatTransform(sx_blocks, sw_blocks, options,
//                                                            /*hadamard=*/true, {}));
//   CATQ_ASSIGN_OR_RETURN(RowMatrixXf q_proj_t, cat.transform.TransformWeight(q_proj));
//   CATQ_RETURN_IF_ERROR(cat.transform.ApplyToActivations(x));  // x: [tokens, d]
//   SiteTransformTensors stored = cat.transform.ExportTensors();
//
// Thread-safety: immutable after creation; const methods may run
// concurrently. Products go through OpenBLAS; set its thread count where the
// caller has threads of its own.
#ifndef CATQ_CORE_CAT_SITE_TRANSFORM_H_
#define CATQ_CORE_CAT_SITE_TRANSFORM_H_

#include <Eigen/Core>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/cat/block_cat.h"
#include "core/cat/mixing_matrix.h"
#include "core/cat/recipe.h"
#include "core/math/eigen_types.h"

namespace catq {

// A float32 tensor as it is written to the output: row-major values.
struct TransformTensorF32 {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// The online tensors of one site (architecture.md section 4); each is absent
// when the transform has no such factor.
struct SiteTransformTensors {
  // [d/k, k, k]: block b acts as x'[b*k:(b+1)*k] = blocks[b] @ x[b*k:(b+1)*k].
  // A diagonal transform is [d, 1, 1].
  std::optional<TransformTensorF32> blocks;
  // [r, r]: the last block when k does not divide d.
  std::optional<TransformTensorF32> blocks_tail;
  // [q, q]: the orthogonal factor of M = H_(d/q) (x) rot_q; absent when q = 1.
  std::optional<TransformTensorF32> rot_q;
};

struct SiteTransformOptions {
  // Round B to float32 once, at creation, and use the rounded values
  // everywhere (x' = B x, W B^-1, Dense, export). The output stores B as F32,
  // so W' is then exactly the inverse of the transform the stored model runs;
  // without rounding the two differ by up to cond(B) * 6e-8. Default true.
  bool round_blocks_to_f32 = true;
};

class SiteTransform {
 public:
  // SiteTransform::Identity()
  //
  // T = I (RTN). InvalidArgument for dim < 1.
  static absl::StatusOr<SiteTransform> Identity(int64_t dim);

  // SiteTransform::Create()
  //
  // T = M * blockdiag(blocks). `blocks` empty means B = I; otherwise every
  // block is k x k, except that the last may be smaller, and the sizes sum to
  // `dim` (k = 1 stores a diagonal). `mixing` absent means M = I. Errors
  // (InvalidArgument): dim < 1, a block layout other than the above, a
  // non-finite element, a singular block (zero pivot; names it), a mixing
  // matrix of another dimension.
  static absl::StatusOr<SiteTransform> Create(int64_t dim, std::vector<Eigen::MatrixXd> blocks,
                                              std::optional<MixingMatrix> mixing,
                                              const SiteTransformOptions& options = {});

  // SiteTransform::CreateDiagonal()
  //
  // T = M * diag(t). Errors as Create, and for a zero or non-finite t_j.
  static absl::StatusOr<SiteTransform> CreateDiagonal(const Eigen::Ref<const Eigen::VectorXd>& t,
                                                      std::optional<MixingMatrix> mixing,
                                                      const SiteTransformOptions& options = {});

  int64_t dim() const { return dim_; }
  // k of B: 0 when B = I, 1 when B is diagonal.
  int64_t block_size() const { return block_size_; }
  bool has_blocks() const { return block_size_ > 0; }
  bool has_mixing() const { return mixing_.has_value(); }
  // T itself is diagonal (B diagonal or I, no mixing): it can be folded into
  // a preceding norm gain or into the rows of the weight producing the site.
  bool is_diagonal() const { return !has_mixing() && block_size_ <= 1; }
  bool is_identity() const { return !has_blocks() && !has_mixing(); }
  // The blocks of B when k > 1 (empty otherwise), as used (rounded or not).
  const std::vector<Eigen::MatrixXd>& blocks() const { return blocks_; }
  // The diagonal of B when k = 1 (empty otherwise).
  const Eigen::VectorXd& diagonal() const { return diagonal_; }
  // M, or nullptr when there is no mixing.
  const MixingMatrix* mixing() const { return mixing_ ? &*mixing_ : nullptr; }

  // SiteTransform::ApplyToActivations()
  //
  // Every row v of `x` [tokens, d] becomes T v: each block of channels is
  // multiplied by its B_b (a GEMM into a scratch buffer of at most 512 rows,
  // copied back), then M is applied to every row. The float overload runs in
  // float32 with B rounded to float, as the online transform does.
  // InvalidArgument when x has another column count.
  absl::Status ApplyToActivations(Eigen::Ref<RowMatrixXd> x) const;
  absl::Status ApplyToActivations(Eigen::Ref<RowMatrixXf> x) const;

  // SiteTransform::TransformWeight()
  //
  // W T^-1 for `w` [out, d]: every row r of W becomes r B^-1 (per block, two
  // triangular solves with the LU factors of B_b and a column permutation),
  // then M r. Float64 throughout; the float overload converts 256 rows at a
  // time and rounds the result to float. InvalidArgument for another column
  // count or a non-finite element.
  absl::StatusOr<RowMatrixXd> TransformWeight(const Eigen::Ref<const RowMatrixXd>& w) const;
  absl::StatusOr<RowMatrixXf> TransformWeight(const Eigen::Ref<const RowMatrixXf>& w) const;
  // In place: w <- w T^-1. The float overload computes as TransformWeight
  // does (the same bits) without a second matrix of w's size: a site's
  // largest weights are 172 MB each on Llama-2-7B.
  absl::Status TransformWeightInPlace(Eigen::Ref<RowMatrixXd> w) const;
  absl::Status TransformWeightInPlace(Eigen::Ref<RowMatrixXf> w) const;

  // SiteTransform::DiagonalOfT()
  //
  // The diagonal of T when is_diagonal() (ones for the identity), else
  // FailedPrecondition.
  absl::StatusOr<Eigen::VectorXd> DiagonalOfT() const;

  // SiteTransform::FoldIntoVector()
  //
  // g_j <- t_j * g_j: folds a diagonal T into the gain g of the norm that
  // produces the site (x' = T (g . n) = (t . g) . n). FailedPrecondition when T
  // is not diagonal, InvalidArgument when g has another length.
  absl::Status FoldIntoVector(Eigen::Ref<Eigen::VectorXd> g) const;
  absl::Status FoldIntoVector(Eigen::Ref<Eigen::VectorXf> g) const;

  // SiteTransform::FoldIntoRows()
  //
  // Row j of `w` [d, in] is multiplied by t_j: folds a diagonal T into the
  // linear that produces the site (v_proj for attn_out, up_proj for mlp_out).
  // Errors as FoldIntoVector.
  absl::Status FoldIntoRows(Eigen::Ref<RowMatrixXf> w) const;

  // The dense d x d matrix T (tests, small d).
  Eigen::MatrixXd Dense() const;

  // SiteTransform::ConditionNumber()
  //
  // cond_2(T) = max singular value / min singular value over all blocks of B
  // (M is orthogonal). Computed on each call with one SVD per block, so full
  // CAT at large d costs an SVD of d x d.
  double ConditionNumber() const;

  // SiteTransform::ExportTensors()
  //
  // The F32 tensors the output stores for this site.
  SiteTransformTensors ExportTensors() const;

 private:
  SiteTransform(int64_t dim, std::optional<MixingMatrix> mixing)
      : dim_(dim), mixing_(std::move(mixing)) {}
  absl::Status Factorize();
  // x <- x B^T, i.e. every row v <- B v.
  template <typename Scalar>
  void MultiplyBlocks(
      Eigen::Ref<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x) const;
  // w <- w B^-1.
  void SolveBlocks(Eigen::Ref<RowMatrixXd> w) const;

  int64_t dim_;
  int64_t block_size_ = 0;
  std::optional<MixingMatrix> mixing_;
  std::vector<Eigen::MatrixXd> blocks_;
  std::vector<Eigen::MatrixXf> blocks_f32_;  // blocks_ in float, for float activations
  Eigen::VectorXd diagonal_;
  // Per block: the LU factors of B_b (row-major, unit-lower L below the
  // diagonal, U on and above) and Eigen's row permutation P (B_b = P^-1 L U).
  std::vector<RowMatrixXd> lu_;
  std::vector<Eigen::VectorXi> lu_permutation_;
};

// The transforms of each Method (recipe.h).

// MakeSmoothQuantTransform: T = diag(SmoothQuantDiagonal(...)) (block_cat.h).
absl::StatusOr<SiteTransform> MakeSmoothQuantTransform(
    const Eigen::Ref<const Eigen::VectorXd>& activation_absmax,
    const Eigen::Ref<const Eigen::VectorXd>& weight_absmax, double alpha);

// MakeHadamardTransform: T = M (mixing only).
absl::StatusOr<SiteTransform> MakeHadamardTransform(int64_t dim, const MixingOptions& mixing = {});

struct CatTransform {
  SiteTransform transform;
  BlockCatReport report;
};

// MakeCatTransform
//
// T = M * blockdiag(SolveBlockCat(sx_blocks, sw_blocks, options)), with M when
// `hadamard` (the blocks' sizes give the partition). Errors from
// SolveBlockCat, MixingMatrix::Create and SiteTransform::Create.
absl::StatusOr<CatTransform> MakeCatTransform(absl::Span<const Eigen::MatrixXd> sx_blocks,
                                              absl::Span<const Eigen::MatrixXd> sw_blocks,
                                              const BlockCatOptions& options, bool hadamard,
                                              const MixingOptions& mixing = {});

// What MakeSiteTransform needs; each method reads only its own fields.
struct SiteTransformInputs {
  int64_t dim = 0;
  // kCat: the diagonal blocks of Sx and Sw for the partition
  // BlockPartition::Create(dim, recipe.block_size).
  absl::Span<const Eigen::MatrixXd> sx_blocks;
  absl::Span<const Eigen::MatrixXd> sw_blocks;
  // kCat: the relative eigenvalue floor (recipe.damping gives the damping).
  double eigen_clip = 1e-12;
  // kSmoothQuant: per-channel max |x_j| and max over the site's weights of |W_:,j|.
  Eigen::VectorXd activation_absmax;
  Eigen::VectorXd weight_absmax;
  // kHadamard, and kCat with recipe.cat_hadamard.
  MixingOptions mixing;
};

struct SiteTransformResult {
  SiteTransform transform;
  std::optional<BlockCatReport> cat_report;  // kCat only
};

// MakeSiteTransform
//
// The transform of `recipe.method`: kRtn identity, kSmoothQuant with
// recipe.smoothquant_alpha, kHadamard, kCat with recipe.block_size,
// recipe.damping and recipe.cat_hadamard. InvalidArgument when the inputs the
// method needs are missing or do not match dim / the block partition.
absl::StatusOr<SiteTransformResult> MakeSiteTransform(const Recipe& recipe,
                                                      const SiteTransformInputs& inputs);

}  // namespace catq

#endif  // CATQ_CORE_CAT_SITE_TRANSFORM_H_
