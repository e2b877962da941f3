// Runs the real `catq` binary as a user would and checks what it prints.
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "core/io/env.h"
#include "nlohmann/json.hpp"
#include "tests/client/catq_runner.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// The check: import stories260K, then `inspect --json` lists its 35
// linear weights with the shapes of a 5-layer, d=64, 8/4-head, 172-wide model.
TEST(CatqCli, ImportedStories260KListsThirtyFiveLinears) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  const CommandResult import = RunCatq(absl::StrCat(
      "import-llama2c --model ", testing::SharedPath("models/stories260K/stories260K.bin"),
      " --tokenizer ", testing::SharedPath("models/stories260K/tok512.bin"), " --out ",
      dir.Join("hf")));
  ASSERT_EQ(import.exit_code, 0) << import.output;
  EXPECT_NE(import.output.find("5 layers, hidden 64"), std::string::npos) << import.output;

  const CommandResult inspect = RunCatq(absl::StrCat("inspect --json ", dir.Join("hf")));
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  const nlohmann::json json = ParseJsonOutput(inspect);
  const nlohmann::json& linears = json["linear_weights"];
  ASSERT_EQ(linears.size(), 35u);
  const std::map<std::string, std::vector<int64_t>> shapes = {
      {"self_attn.q_proj", {64, 64}}, {"self_attn.k_proj", {32, 64}},
      {"self_attn.v_proj", {32, 64}}, {"self_attn.o_proj", {64, 64}},
      {"mlp.gate_proj", {172, 64}},   {"mlp.up_proj", {172, 64}},
      {"mlp.down_proj", {64, 172}}};
  int matched = 0;
  for (const nlohmann::json& linear : linears) {
    const std::string name = linear["name"];
    for (const auto& [suffix, shape] : shapes) {
      if (name.ends_with(suffix + ".weight")) {
        EXPECT_EQ(linear["shape"].get<std::vector<int64_t>>(), shape) << name;
        ++matched;
      }
    }
  }
  EXPECT_EQ(matched, 35);
  EXPECT_EQ(json["config"]["num_hidden_layers"], 5);
}

TEST(CatqCli, QuantizeThenInspectDecodesPackedLinears) {
  testing::TempDir dir;
  ASSERT_EQ(RunCatq(absl::StrCat("synth --preset tiny --out ", dir.Join("m"))).exit_code, 0);
  const CommandResult quantize = RunCatq(absl::StrCat("quantize --json --model ", dir.Join("m"),
                                                      " --out ", dir.Join("q"), " --w-group 32"));
  ASSERT_EQ(quantize.exit_code, 0) << quantize.output;
  const nlohmann::json report = ParseJsonOutput(quantize);
  EXPECT_EQ(report["totals"]["linears"], 14);
  EXPECT_EQ(report["recipe"]["w_group_size"], 32);

  const CommandResult inspect = RunCatq(absl::StrCat("inspect --json ", dir.Join("q")));
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  const nlohmann::json json = ParseJsonOutput(inspect);
  ASSERT_EQ(json["packed_linears"].size(), 14u);
  for (const nlohmann::json& linear : json["packed_linears"]) {
    EXPECT_EQ(linear["group_size"], 32) << linear["name"];
    if (linear["name"] == "model.layers.0.mlp.down_proj") {
      EXPECT_EQ(linear["shape"], nlohmann::json({64, 172}));
      EXPECT_EQ(linear["groups"], 6);  // 5 groups of 32 and one of 12
    }
  }
  const CommandResult text_report =
      RunCatq(absl::StrCat("inspect ", dir.Join("q/catq_report.json")));
  ASSERT_EQ(text_report.exit_code, 0) << text_report.output;
  EXPECT_NE(text_report.output.find("model.layers.1.mlp.down_proj"), std::string::npos);
}

// `catq analyze` and a calibrated `catq quantize` on stories260K: block CAT
// raises the mean measured SQNR over Hadamard, Hadamard over none, and the
// quantize report holds exactly the analysis's figures for the same recipe.
TEST(CatqCli, AnalyzeAndCalibratedQuantizeAgreeOnStories260K) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  ASSERT_EQ(
      RunCatq(absl::StrCat("import-llama2c --model ",
                           testing::SharedPath("models/stories260K/stories260K.bin"),
                           " --tokenizer ", testing::SharedPath("models/stories260K/tok512.bin"),
                           " --out ", dir.Join("hf")))
          .exit_code,
      0);
  const std::string calib = absl::StrCat(
      " --calib-text ", testing::SharedPath("data/tinystories_197k.txt"), " --calib-max-docs 64");
  const CommandResult analyze =
      RunCatq(absl::StrCat("analyze --json --block-size 32 --model ", dir.Join("hf"), calib));
  ASSERT_EQ(analyze.exit_code, 0) << analyze.output;
  const nlohmann::json analysis = ParseJsonOutput(analyze);
  EXPECT_EQ(analysis["variants"], nlohmann::json({"none", "hadamard", "cat k=32"}));
  ASSERT_EQ(analysis["sites"].size(), 20u);
  double mean[3] = {0, 0, 0};
  for (const nlohmann::json& site : analysis["sites"]) {
    int v = 0;
    for (const char* name : {"none", "hadamard", "cat k=32"}) {
      mean[v++] += site["variants"][name]["sqnr_after"]["measured_sqnr_db"].get<double>() / 20;
    }
  }
  EXPECT_LT(mean[0], mean[1]);
  EXPECT_LT(mean[1], mean[2]);

  const CommandResult quantize = RunCatq(absl::StrCat(
      "quantize --json --recipe cat --block-size 32 --a-bits 4 --model ", dir.Join("hf"), " --out ",
      dir.Join("q"), calib, " --eval-text ", testing::SharedPath("data/tinystories_sample.txt")));
  ASSERT_EQ(quantize.exit_code, 0) << quantize.output;
  const nlohmann::json report = ParseJsonOutput(quantize);
  ASSERT_EQ(report["sites"].size(), 20u);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(report["sites"][i]["sqnr_after"],
              analysis["sites"][i]["variants"]["cat k=32"]["sqnr_after"])
        << report["sites"][i]["key"];
  }
  EXPECT_EQ(report["calibration"]["documents"], 64);
  // --eval-text: the stored output's perplexity (4.55 measured) and KL, also
  // written into catq_report.json.
  EXPECT_NEAR(report["evaluation"]["perplexity"].get<double>(), 4.55, 0.05);
  EXPECT_NEAR(report["evaluation"]["fp_perplexity"].get<double>(), 3.548, 0.005);
  EXPECT_GT(report["evaluation"]["kl_to_fp"].get<double>(), 0.0);
  absl::StatusOr<std::string> stored = Env::Default()->ReadFile(dir.Join("q/catq_report.json"));
  ASSERT_OK(stored);
  EXPECT_EQ(nlohmann::json::parse(*stored)["evaluation"], report["evaluation"]);
  // The online tensors (rot_q is 43 x 43 floats) leave later I64 tensors off
  // 8-byte alignment; inspect reads them anyway.
  const CommandResult inspect = RunCatq(absl::StrCat("inspect --json ", dir.Join("q")));
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_EQ(ParseJsonOutput(inspect)["packed_linears"].size(), 35u);
}

// `catq compare` on a subset: one row per (recipe, grid), FP alongside,
// block CAT ahead of RTN at W4A4, and W8A8 (8-bit weights in the shards)
// close to FP for both.
TEST(CatqCli, CompareRanksRecipesOnStories260K) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  ASSERT_EQ(
      RunCatq(absl::StrCat("import-llama2c --model ",
                           testing::SharedPath("models/stories260K/stories260K.bin"),
                           " --tokenizer ", testing::SharedPath("models/stories260K/tok512.bin"),
                           " --out ", dir.Join("hf")))
          .exit_code,
      0);
  const CommandResult compare = RunCatq(absl::StrCat(
      "compare --json --methods rtn,cat:32 --grids W4A4,W8A8,W4A16 --model ", dir.Join("hf"),
      " --calib-text ", testing::SharedPath("data/tinystories_197k.txt"), " --text ",
      testing::SharedPath("data/tinystories_sample.txt"), " --work-dir ", dir.Join("work")));
  ASSERT_EQ(compare.exit_code, 0) << compare.output;
  const nlohmann::json json = ParseJsonOutput(compare);
  const double fp = json["fp_perplexity"].get<double>();
  EXPECT_NEAR(fp, 3.548, 0.005);
  const nlohmann::json& rows = json["results"];
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0]["recipe"], "rtn");
  EXPECT_EQ(rows[3]["recipe"], "cat k=32");
  EXPECT_EQ(rows[0]["grid"], "W4A4");
  EXPECT_LT(rows[3]["perplexity"].get<double>(), rows[0]["perplexity"].get<double>());
  EXPECT_LT(rows[5]["perplexity"].get<double>(), rows[3]["perplexity"].get<double>());
  for (int row : {1, 4}) {
    EXPECT_EQ(rows[row]["grid"], "W8A8");
    EXPECT_NEAR(rows[row]["perplexity"].get<double>(), fp, 0.05 * fp) << rows[row];
    EXPECT_LT(rows[row]["perplexity"].get<double>(), rows[row + 1]["perplexity"].get<double>());
  }
  EXPECT_FALSE(Env::Default()->FileExists(dir.Join("work")));
  const CommandResult bad = RunCatq(
      absl::StrCat("compare --grids W5A8 --model ", dir.Join("hf"), " --calib-text x --text y"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("4-, 6- or 8-bit weights only"), std::string::npos) << bad.output;
}

// compare's cat:1:nomix is the zero-overhead diagonal: its row says no
// transform runs online, where cat:1 (with the Hadamard mixing) runs one at
// every site; stories260K's grouped heads do not stop the fold.
TEST(CatqCli, CompareSaysWhichRecipesRunAnOnlineTransform) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  ASSERT_EQ(
      RunCatq(absl::StrCat("import-llama2c --model ",
                           testing::SharedPath("models/stories260K/stories260K.bin"),
                           " --tokenizer ", testing::SharedPath("models/stories260K/tok512.bin"),
                           " --out ", dir.Join("hf")))
          .exit_code,
      0);
  const std::string common = absl::StrCat(
      " --grids W4A16 --calib-max-docs 16 --model ", dir.Join("hf"), " --calib-text ",
      testing::SharedPath("data/tinystories_197k.txt"), " --text ",
      testing::SharedPath("data/tinystories_sample.txt"), " --work-dir ", dir.Join("work"));
  const CommandResult compare =
      RunCatq(absl::StrCat("compare --json --methods cat:1:nomix,cat:1", common));
  ASSERT_EQ(compare.exit_code, 0) << compare.output;
  const nlohmann::json rows = ParseJsonOutput(compare)["results"];
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["recipe"], "cat k=1 nomix");
  EXPECT_EQ(rows[0]["online_transform"], false);
  EXPECT_EQ(rows[1]["recipe"], "cat k=1");
  EXPECT_EQ(rows[1]["online_transform"], true);
  const CommandResult bad = RunCatq(absl::StrCat("compare --methods cat:1:mix", common));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("expected cat:K, cat:K:nomix or cat:K:mixB"), std::string::npos)
      << bad.output;
  const CommandResult bad_average = RunCatq(absl::StrCat("compare --methods cat:1:mix3", common));
  EXPECT_NE(bad_average.exit_code, 0);
  EXPECT_NE(bad_average.output.find("bad average bits in \"cat:1:mix3\""), std::string::npos)
      << bad_average.output;
}

// `catq calibrate` writes the statistics a calibrated quantize computes: the
// shards quantized from its file equal those calibrated on the text in
// process. It takes exactly one of text and token ids.
TEST(CatqCli, CalibrateWritesTheStatisticsQuantizeCalibratesWith) {
  CATQ_REQUIRE_SHARED();
  testing::TempDir dir;
  ASSERT_EQ(
      RunCatq(absl::StrCat("import-llama2c --model ",
                           testing::SharedPath("models/stories260K/stories260K.bin"),
                           " --tokenizer ", testing::SharedPath("models/stories260K/tok512.bin"),
                           " --out ", dir.Join("hf")))
          .exit_code,
      0);
  const std::string calib =
      absl::StrCat(" --calib-text ", testing::SharedPath("data/tinystories_197k.txt"),
                   " --calib-max-docs 16 --threads 1");
  const CommandResult calibrate = RunCatq(absl::StrCat("calibrate --model ", dir.Join("hf"), calib,
                                                       " --out ", dir.Join("stats.safetensors")));
  ASSERT_EQ(calibrate.exit_code, 0) << calibrate.output;
  EXPECT_NE(calibrate.output.find("16 documents"), std::string::npos) << calibrate.output;
  EXPECT_NE(calibrate.output.find("20 sites (full Sx"), std::string::npos) << calibrate.output;

  const std::string recipe = " --quiet --recipe cat --block-size 16 --a-bits 4 --model ";
  const CommandResult from_stats =
      RunCatq(absl::StrCat("quantize", recipe, dir.Join("hf"), " --out ", dir.Join("q_stats"),
                           " --calib-stats ", dir.Join("stats.safetensors")));
  ASSERT_EQ(from_stats.exit_code, 0) << from_stats.output;
  const CommandResult from_text = RunCatq(
      absl::StrCat("quantize", recipe, dir.Join("hf"), " --out ", dir.Join("q_text"), calib));
  ASSERT_EQ(from_text.exit_code, 0) << from_text.output;
  absl::StatusOr<std::string> a = Env::Default()->ReadFile(dir.Join("q_stats/model.safetensors"));
  absl::StatusOr<std::string> b = Env::Default()->ReadFile(dir.Join("q_text/model.safetensors"));
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_TRUE(*a == *b) << "shards differ";

  const CommandResult neither = RunCatq(
      absl::StrCat("calibrate --model ", dir.Join("hf"), " --out ", dir.Join("x.safetensors")));
  EXPECT_EQ(neither.exit_code, 1);
  EXPECT_NE(neither.output.find("exactly one of --calib-text and --calib-tokens"),
            std::string::npos)
      << neither.output;
  const CommandResult both =
      RunCatq(absl::StrCat("calibrate --model ", dir.Join("hf"), calib,
                           " --calib-tokens ids --out ", dir.Join("x.safetensors")));
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.output.find("excludes"), std::string::npos) << both.output;
  EXPECT_FALSE(Env::Default()->FileExists(dir.Join("x.safetensors")));
}

TEST(CatqCli, BadInputExitsNonZeroNamingTheProblem) {
  testing::TempDir dir;
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("bad.safetensors"), "\x05\x00"));
  CommandResult inspect = RunCatq(absl::StrCat("inspect ", dir.Join("bad.safetensors")));
  EXPECT_EQ(inspect.exit_code, 1);
  EXPECT_NE(inspect.output.find("bad.safetensors"), std::string::npos) << inspect.output;

  ASSERT_EQ(RunCatq(absl::StrCat("synth --preset tiny --out ", dir.Join("m"))).exit_code, 0);
  CommandResult bits = RunCatq(
      absl::StrCat("quantize --model ", dir.Join("m"), " --out ", dir.Join("q"), " --w-bits 9"));
  EXPECT_EQ(bits.exit_code, 1);
  EXPECT_NE(bits.output.find("weights.bits"), std::string::npos) << bits.output;
  EXPECT_FALSE(Env::Default()->FileExists(dir.Join("q")));

  CommandResult missing =
      RunCatq(absl::StrCat("quantize --model ", dir.Join("absent"), " --out ", dir.Join("q")));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("absent"), std::string::npos) << missing.output;
}

// --export-gptq writes OUT/gptq beside the output, `catq export-gptq` the
// same layout from the output, printing what it wrote; a recipe with an
// online transform is refused before anything is quantized.
TEST(CatqCli, ExportGptqFromQuantizeAndFromAnOutput) {
  testing::TempDir dir;
  ASSERT_EQ(RunCatq(absl::StrCat("synth --preset tiny --out ", dir.Join("m"))).exit_code, 0);
  const CommandResult quantize = RunCatq(absl::StrCat(
      "quantize --model ", dir.Join("m"), " --out ", dir.Join("q"), " --w-group 32 --export-gptq"));
  ASSERT_EQ(quantize.exit_code, 0) << quantize.output;
  EXPECT_NE(quantize.output.find(absl::StrCat("GPTQ layout: ", dir.Join("q/gptq"))),
            std::string::npos)
      << quantize.output;

  const std::string export_command =
      absl::StrCat("export-gptq --in ", dir.Join("q"), " --out ", dir.Join("g"));
  const CommandResult exported = RunCatq(export_command);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  for (const char* fragment : {"14 linears (4-bit, group 32, symmetric)", "7 tensors copied",
                               "model.safetensors", "quantize_config.json"}) {
    EXPECT_NE(exported.output.find(fragment), std::string::npos) << fragment << exported.output;
  }
  for (const char* file : {"model.safetensors", "config.json", "quantize_config.json"}) {
    EXPECT_EQ(testing::ReadTestFile(dir.Join(absl::StrCat("g/", file))),
              testing::ReadTestFile(dir.Join(absl::StrCat("q/gptq/", file))))
        << file;
  }
  const CommandResult again = RunCatq(export_command);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("already exists"), std::string::npos) << again.output;
  EXPECT_EQ(RunCatq(export_command + " --replace").exit_code, 0);

  const CommandResult online =
      RunCatq(absl::StrCat("quantize --model ", dir.Join("m"), " --out ", dir.Join("h"),
                           " --recipe hadamard --export-gptq"));
  EXPECT_EQ(online.exit_code, 1);
  EXPECT_NE(online.output.find("--export-gptq: recipe.method: hadamard"), std::string::npos)
      << online.output;
  EXPECT_FALSE(Env::Default()->FileExists(dir.Join("h")));
}

// A diagonal recipe on a model whose query heads share KV heads (the tiny
// preset) folds everywhere: `catq quantize` says the output is
// zero-overhead and exports it as GPTQ; block CAT k=16 says its transforms
// run online.
TEST(CatqCli, QuantizeSaysWhenTheOutputIsZeroOverhead) {
  testing::TempDir dir;
  ASSERT_EQ(RunCatq(absl::StrCat("synth --preset tiny --out ", dir.Join("m"))).exit_code, 0);
  // Calibration token ids: little-endian int32, documents separated by -1.
  std::string ids;
  for (int32_t document = 0; document < 4; ++document) {
    for (int32_t i = 0; i < 40; ++i) {
      const int32_t token = i == 0 ? 1 : 3 + (document * 131 + i * 37) % 500;
      ids.append(reinterpret_cast<const char*>(&token), sizeof(token));
    }
    const int32_t separator = -1;
    ids.append(reinterpret_cast<const char*>(&separator), sizeof(separator));
  }
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("ids"), ids));
  const std::string common =
      absl::StrCat(" --model ", dir.Join("m"), " --calib-tokens ", dir.Join("ids"),
                   " --calib-samples 0 --w-group 32 --recipe cat");
  const CommandResult diagonal =
      RunCatq(absl::StrCat("quantize", common, " --block-size 1 --no-cat-hadamard --out ",
                           dir.Join("k1"), " --export-gptq"));
  ASSERT_EQ(diagonal.exit_code, 0) << diagonal.output;
  EXPECT_NE(diagonal.output.find("online transform: none (zero-overhead, 8 of 8 site transforms "
                                 "folded into the weights): plain compressed-tensors "
                                 "pack-quantized W4A16 (and GPTQ with --export-gptq)"),
            std::string::npos)
      << diagonal.output;
  EXPECT_NE(diagonal.output.find("GPTQ layout: "), std::string::npos) << diagonal.output;

  const CommandResult blocks =
      RunCatq(absl::StrCat("quantize", common, " --block-size 16 --out ", dir.Join("k16")));
  ASSERT_EQ(blocks.exit_code, 0) << blocks.output;
  EXPECT_NE(blocks.output.find("online transforms at 8 sites"), std::string::npos) << blocks.output;
  EXPECT_EQ(blocks.output.find("zero-overhead"), std::string::npos) << blocks.output;
}

// `--recipe cat-auto` needs `--budget`; with one, the output records the
// budget and the block size chosen for each site.
TEST(CatqCli, CatAutoNeedsABudgetAndRecordsItsChoice) {
  testing::TempDir dir;
  ASSERT_EQ(RunCatq(absl::StrCat("synth --preset tiny --out ", dir.Join("m"))).exit_code, 0);
  std::string ids;
  for (int32_t i = 0; i < 60; ++i) {
    const int32_t token = i == 0 ? 1 : 3 + (i * 37) % 500;
    ids.append(reinterpret_cast<const char*>(&token), sizeof(token));
  }
  ASSERT_OK(WriteFileAtomically(Env::Default(), dir.Join("ids"), ids));
  const std::string common =
      absl::StrCat("quantize --recipe cat-auto --a-bits 4 --calib-samples 0 --model ",
                   dir.Join("m"), " --calib-tokens ", dir.Join("ids"));
  const CommandResult no_budget = RunCatq(absl::StrCat(common, " --out ", dir.Join("none")));
  EXPECT_EQ(no_budget.exit_code, 1);
  EXPECT_NE(no_budget.output.find("online_cost_budget"), std::string::npos) << no_budget.output;
  EXPECT_FALSE(Env::Default()->FileExists(dir.Join("none")));

  const CommandResult quantize =
      RunCatq(absl::StrCat(common, " --budget 0.3 --out ", dir.Join("q")));
  ASSERT_EQ(quantize.exit_code, 0) << quantize.output;
  const nlohmann::json config =
      nlohmann::json::parse(testing::ReadTestFile(dir.Join("q/config.json")));
  EXPECT_EQ(config["quantization_config"]["catq"]["online_cost_budget"], 0.3);
  const nlohmann::json report =
      nlohmann::json::parse(testing::ReadTestFile(dir.Join("q/catq_report.json")));
  ASSERT_EQ(report["block_size_choice"]["sites"].size(), 8u);
  EXPECT_LE(report["block_size_choice"]["online_cost"].get<double>(), 0.3);
}

}  // namespace
}  // namespace catq
