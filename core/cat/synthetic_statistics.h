// File: core/cat/synthetic_statistics.h
//
// Calibration statistics for every site of a Llama config without running
// the model: each site accumulates random activations shaped like real ones
// (per-channel scales spread over two orders of magnitude, a shared
// low-rank component that correlates channels, and a few outlier channels
// far above the rest). Scale tests and benchmarks pair it with a synthetic
// model (core/model/synth.h) of a size catq cannot run a forward pass on in
// reasonable time, the way a client uploads precomputed statistics
// (`catq synth --statistics-out`).
//
//   SyntheticStatisticsOptions options;
//   options.block_size = 128;  // keep only the 128 x 128 diagonal blocks
//   CATQ_RETURN_IF_ERROR(WriteSyntheticSiteStatistics(env, config, options, path));
//
// The numbers are the sums of `tokens` drawn activations per site, so the
// file passes every check ReadSiteStatistics makes. Site s of layer l draws
// from its own generator (MixSeed(seed, 4 l + s)): the bytes depend only on
// the config and the options.
//
// Memory: the file is written from the map of every site's statistics, so
// the writer holds them all (block mode: sum of d * k doubles over the sites,
// about 740 MB for Llama-2-7B with k = 128); one batch of activations at a
// time on top.
//
// Thread-safety: thread-safe for distinct paths.
#ifndef CATQ_CORE_CAT_SYNTHETIC_STATISTICS_H_
#define CATQ_CORE_CAT_SYNTHETIC_STATISTICS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "core/io/env.h"
#include "core/model/llama_config.h"

namespace catq {

struct SyntheticStatisticsOptions {
  // Block size k of the stored Sx (0: the full matrix, for sites of at most
  // SiteStatistics::kMaxFullDim channels).
  int64_t block_size = 128;
  // Activations drawn per site; at least 1.
  int64_t tokens = 256;
  uint64_t seed = 0;
  // Channels per site whose scale is multiplied by outlier_scale.
  int64_t outlier_channels = 4;
  float outlier_scale = 30.0f;
};

// WriteSyntheticSiteStatistics: the statistics of every site of every layer
// of `config` (keys SiteQualifiedName(layer, site)) written to `path`
// atomically. InvalidArgument naming the bad option; I/O errors from `env`.
absl::Status WriteSyntheticSiteStatistics(Env* env, const LlamaConfig& config,
                                          const SyntheticStatisticsOptions& options,
                                          const std::string& path);

}  // namespace catq

#endif  // CATQ_CORE_CAT_SYNTHETIC_STATISTICS_H_
