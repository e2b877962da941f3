// File: proto/recipe_conversion.h
//
// The one mapping between catq.v1.Recipe (the wire form, where an absent
// field means catq's default) and catq::Recipe (core/cat/recipe.h). The
// client fills the wire form from its flags; the server turns it back and
// validates it, so both ends agree on every default.
//
//   catq::v1::Recipe wire = RecipeToProto(recipe);
//   CATQ_ASSIGN_OR_RETURN(Recipe back, RecipeFromProto(wire));  // == recipe
#ifndef CATQ_PROTO_RECIPE_CONVERSION_H_
#define CATQ_PROTO_RECIPE_CONVERSION_H_

#include "absl/status/statusor.h"
#include "catq/v1/catq.pb.h"
#include "core/cat/recipe.h"

namespace catq {

// RecipeToProto: every field set explicitly.
v1::Recipe RecipeToProto(const Recipe& recipe);

// RecipeFromProto: defaults for absent fields, then Recipe::Validate.
// InvalidArgument names the field as "recipe.<field>", e.g.
// "recipe.weight_bits: 9 is outside [2, 8]" or "recipe.method: unknown 'foo'".
absl::StatusOr<Recipe> RecipeFromProto(const v1::Recipe& proto);

}  // namespace catq

#endif  // CATQ_PROTO_RECIPE_CONVERSION_H_
