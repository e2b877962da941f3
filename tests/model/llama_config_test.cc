#include "core/model/llama_config.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// The config ImportLlama2c writes for stories260K, plus keys catq ignores.
nlohmann::json GoodConfig() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 64,
    "intermediate_size": 172,
    "num_hidden_layers": 5,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "vocab_size": 512,
    "tie_word_embeddings": true,
    "max_position_embeddings": 512,
    "torch_dtype": "float32",
    "bos_token_id": 1,
    "eos_token_id": 2
  })");
}

absl::StatusOr<LlamaConfig> Parse(const nlohmann::json& j) { return ParseLlamaConfig(j.dump()); }

TEST(LlamaConfig, ParsesGoodConfig) {
  absl::StatusOr<LlamaConfig> c = Parse(GoodConfig());
  ASSERT_OK(c);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->num_hidden_layers, 5);
  EXPECT_EQ(c->num_attention_heads, 8);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->max_position_embeddings, 512);
  EXPECT_EQ(c->torch_dtype, "float32");
  EXPECT_EQ(c->head_dim(), 8);
  EXPECT_EQ(c->kv_dim(), 32);
  EXPECT_EQ(c->original["bos_token_id"], 1);
}

TEST(LlamaConfig, AbsentOptionalFieldsTakeTransformersDefaults) {
  nlohmann::json j = GoodConfig();
  for (const char* key :
       {"num_key_value_heads", "rope_theta", "tie_word_embeddings", "rms_norm_eps",
        "max_position_embeddings", "torch_dtype", "architectures", "model_type", "hidden_act"}) {
    j.erase(key);
  }
  j["num_key_value_heads"] = nullptr;  // transformers writes null for unset fields.
  absl::StatusOr<LlamaConfig> c = Parse(j);
  ASSERT_OK(c);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->torch_dtype, "float32");
}

TEST(LlamaConfig, NewerDtypeKeyIsRead) {
  nlohmann::json j = GoodConfig();
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";
  absl::StatusOr<LlamaConfig> c = Parse(j);
  ASSERT_OK(c);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
}

TEST(LlamaConfig, EachMissingRequiredFieldIsNamed) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "vocab_size"}) {
    nlohmann::json j = GoodConfig();
    j.erase(key);
    EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument,
                  std::string("config.json: missing field \"") + key + "\"");
  }
}

TEST(LlamaConfig, WrongTypesAreNamed) {
  struct Case {
    const char* key;
    nlohmann::json value;
    const char* fragment;
  };
  const Case cases[] = {
      {"hidden_size", "64", "field \"hidden_size\" must be a positive integer, got \"64\""},
      {"hidden_size", 64.5, "field \"hidden_size\" must be a positive integer, got 64.5"},
      {"vocab_size", true, "field \"vocab_size\" must be a positive integer, got true"},
      {"rms_norm_eps", "1e-5", "field \"rms_norm_eps\" must be a number"},
      {"rope_theta", nlohmann::json::array(), "field \"rope_theta\" must be a number"},
      {"tie_word_embeddings", "yes", "field \"tie_word_embeddings\" must be true or false"},
      {"torch_dtype", 32, "field \"torch_dtype\" must be a string"},
      {"architectures", "LlamaForCausalLM", "field \"architectures\" must be a list of strings"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = GoodConfig();
    j[c.key] = c.value;
    EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument, c.fragment);
  }
}

TEST(LlamaConfig, NonPositiveAndHugeSizesAreRefused) {
  for (const char* key : {"hidden_size", "num_attention_heads", "num_key_value_heads",
                          "num_hidden_layers", "max_position_embeddings"}) {
    for (int64_t bad : {int64_t{0}, int64_t{-8}}) {
      nlohmann::json j = GoodConfig();
      j[key] = bad;
      EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument,
                    std::string("field \"") + key + "\" must be a positive integer");
    }
  }
  nlohmann::json j = GoodConfig();
  j["vocab_size"] = uint64_t{1} << 40;
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument, "\"vocab_size\"");
  j = GoodConfig();
  j["rms_norm_eps"] = 0;
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument, "\"rms_norm_eps\" must be positive");
  j = GoodConfig();
  j["rope_theta"] = -1.0;
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument, "\"rope_theta\" must be positive");
}

TEST(LlamaConfig, InconsistentHeadsAreRefused) {
  nlohmann::json j = GoodConfig();
  j["hidden_size"] = 100;
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument,
                "hidden_size 100 is not divisible by num_attention_heads 8");
  j = GoodConfig();
  j["num_key_value_heads"] = 3;
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument,
                "num_attention_heads 8 is not divisible by num_key_value_heads 3");
  j = GoodConfig();
  j["hidden_size"] = 72;  // head_dim 9
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument, "head_dim 9");
  j = GoodConfig();
  j["head_dim"] = 16;
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument,
                "head_dim 16 differs from hidden_size / num_attention_heads = 8");
  j["head_dim"] = 8;
  EXPECT_OK(Parse(j));
}

TEST(LlamaConfig, NonLlamaModelsAreRefusedByName) {
  nlohmann::json j = GoodConfig();
  j["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument,
                "architecture \"GPT2LMHeadModel\" is not supported");
  j = GoodConfig();
  j["model_type"] = "gpt2";
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument, "model_type \"gpt2\"");
  j = GoodConfig();
  j["hidden_act"] = "gelu";
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument, "hidden_act \"gelu\"");
  j = GoodConfig();
  j["attention_bias"] = true;
  EXPECT_STATUS(Parse(j), absl::StatusCode::kInvalidArgument, "attention_bias");
}

TEST(LlamaConfig, MalformedJsonIsRefused) {
  EXPECT_STATUS(ParseLlamaConfig("{\"hidden_size\": 64,"), absl::StatusCode::kInvalidArgument,
                "config.json: not valid JSON");
  EXPECT_STATUS(ParseLlamaConfig("[1, 2]"), absl::StatusCode::kInvalidArgument,
                "must hold a JSON object");
  EXPECT_STATUS(ParseLlamaConfig("", "in/config.json"), absl::StatusCode::kInvalidArgument,
                "in/config.json: not valid JSON");
}

TEST(LlamaConfig, ToJsonKeepsUnknownKeysAndRoundTrips) {
  absl::StatusOr<LlamaConfig> c = Parse(GoodConfig());
  ASSERT_OK(c);
  c->num_hidden_layers = 3;
  const std::string text = LlamaConfigToJson(*c);
  EXPECT_EQ(text.back(), '\n');
  absl::StatusOr<LlamaConfig> again = ParseLlamaConfig(text);
  ASSERT_OK(again);
  EXPECT_EQ(again->num_hidden_layers, 3);
  EXPECT_EQ(again->kv_dim(), 32);
  EXPECT_EQ(again->original["eos_token_id"], 2);

  LlamaConfig built = *c;
  built.original = nullptr;  // A config made in code gets the architecture keys.
  nlohmann::json object = LlamaConfigToJsonObject(built);
  EXPECT_EQ(object["model_type"], "llama");
  EXPECT_EQ(object["architectures"][0], "LlamaForCausalLM");
  EXPECT_OK(ParseLlamaConfig(object.dump()));
}

TEST(LlamaConfig, LoadNamesThePathAndMissingIsNotFound) {
  testing::TempDir dir;
  EXPECT_STATUS(LoadLlamaConfig(Env::Default(), dir.path()), absl::StatusCode::kNotFound,
                "config.json");
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("config.json"), "{}"));
  EXPECT_STATUS(LoadLlamaConfig(Env::Default(), dir.path()), absl::StatusCode::kInvalidArgument,
                dir.Join("config.json") + ": missing field \"hidden_size\"");
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("config.json"), GoodConfig().dump()));
  EXPECT_OK(LoadLlamaConfig(Env::Default(), dir.path()));
}

}  // namespace
}  // namespace catq
