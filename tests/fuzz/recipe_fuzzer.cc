// Fuzz target for SubmitJob's recipe validation: the input parsed as a
// catq.v1.Recipe message (what a client sends), then RecipeFromProto, which
// fills defaults and calls Recipe::Validate. A rejection is InvalidArgument
// naming a field ("recipe.<field>" or the field's name); an accepted recipe
// survives RecipeToProto / RecipeFromProto unchanged.

#include <cstddef>
#include <cstdint>

#include "catq/v1/catq.pb.h"
#include "proto/recipe_conversion.h"
#include "tests/fuzz/fuzz_check.h"

namespace {
constexpr char kName[] = "recipe_fuzzer";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using catq::fuzzing::Violation;
  catq::v1::Recipe wire;
  if (!wire.ParseFromArray(data, static_cast<int>(size))) return 0;
  absl::StatusOr<catq::Recipe> recipe = catq::RecipeFromProto(wire);
  if (!recipe.ok()) {
    if (recipe.status().code() != absl::StatusCode::kInvalidArgument) {
      Violation(kName, "rejection is not InvalidArgument: " + recipe.status().ToString());
    }
    if (recipe.status().message().empty()) Violation(kName, "rejection without a message");
    return 0;
  }
  const catq::v1::Recipe again = catq::RecipeToProto(*recipe);
  absl::StatusOr<catq::Recipe> back = catq::RecipeFromProto(again);
  if (!back.ok())
    Violation(kName, "a recipe RecipeToProto wrote is refused: " + back.status().ToString());
  if (catq::RecipeToProto(*back).SerializeAsString() != again.SerializeAsString()) {
    Violation(kName, "recipe does not round-trip");
  }
  return 0;
}
