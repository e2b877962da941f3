// File: core/output/layer_result_io.h
//
// A LayerResult on disk: how a worker hands one layer task's result to the
// server, which stores it once and assembles the output from it later, maybe
// after a restart. The file is safetensors: the packed linears under their
// output names, the online transform factors as "<site>.online.blocks" (and
// ".blocks_tail", ".rot_q"), folded diagonals as "<site>.folded_diagonal"
// F64, and everything else (site records, reports, figures) as JSON in the
// "catq_layer_result" metadata entry. Every double round-trips exactly
// (non-finite ones as the strings "inf", "-inf", "nan"), so an output
// assembled from read-back results is byte-identical to one assembled from
// the results in memory.
//
//   CATQ_RETURN_IF_ERROR(WriteLayerResult(env, path, result));
//   CATQ_ASSIGN_OR_RETURN(LayerResult back, ReadLayerResult(env, path));
//
// Thread-safety: pure functions over distinct files.
#ifndef CATQ_CORE_OUTPUT_LAYER_RESULT_IO_H_
#define CATQ_CORE_OUTPUT_LAYER_RESULT_IO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/io/env.h"
#include "core/output/layer_quantizer.h"

namespace catq {

// WriteLayerResult: atomically (temporary and rename).
absl::Status WriteLayerResult(Env* env, const std::string& path, const LayerResult& result);

// ReadLayerResult: InvalidArgument naming the path and the entry or tensor
// when the file is not a layer result or is inconsistent.
absl::StatusOr<LayerResult> ReadLayerResult(Env* env, const std::string& path);

}  // namespace catq

#endif  // CATQ_CORE_OUTPUT_LAYER_RESULT_IO_H_
