// File: tests/util/output_comparison.h
//
// The service's promise that an output does not depend on where or how often
// its tasks ran, as one assertion: the same shards (every *.safetensors) and
// config.json, byte for byte.
//
//   ASSERT_OK(QuantizeModelInProcess(env, model, dir.Join("direct"), recipe, options));
//   ExpectSameShardsAndConfig(dir.Join("direct"), dir.Join("fetched"));
#ifndef CATQ_TESTS_UTIL_OUTPUT_COMPARISON_H_
#define CATQ_TESTS_UTIL_OUTPUT_COMPARISON_H_

#include <string>

#include "core/cat/recipe.h"

namespace catq::testing {

// A gtest failure for each shard or config.json of `expected_dir` that
// `actual_dir` lacks or holds different bytes of, and when their shard names
// differ.
void ExpectSameShardsAndConfig(const std::string& expected_dir, const std::string& actual_dir);

// Block CAT k=16 with 4-bit activations: the recipe the service tests run.
Recipe CatW4A4Recipe();

}  // namespace catq::testing

#endif  // CATQ_TESTS_UTIL_OUTPUT_COMPARISON_H_
