// File: core/math/eigen_types.h
//
// The Eigen aliases catq's numeric code uses. Tensors on disk are row-major
// (safetensors, PyTorch), Eigen defaults to column-major, so weights are viewed
// as RowMatrixXf over the bytes they live in:
//
//   Eigen::Map<const RowMatrixXf> w(view.data<float>(), rows, cols);
#ifndef CATQ_CORE_MATH_EIGEN_TYPES_H_
#define CATQ_CORE_MATH_EIGEN_TYPES_H_

#include <Eigen/Core>

namespace catq {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixXd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace catq

#endif  // CATQ_CORE_MATH_EIGEN_TYPES_H_
