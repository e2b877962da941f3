// `catq import-llama2c --model M.bin --tokenizer TOK.bin --out DIR`: converts a
// llama2.c checkpoint into a Hugging Face Llama directory (config.json,
// model.safetensors, tokenizer.bin) that every other command reads.
#include <iostream>
#include <memory>
#include <string>

#include "client/command.h"
#include "core/io/env.h"
#include "core/model/llama2c_import.h"
#include "core/model/llama_model.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct ImportFlags {
  std::string model;
  std::string tokenizer;
  std::string out;
};

absl::Status RunImport(const ImportFlags& flags) {
  Env* env = Env::Default();
  CATQ_RETURN_IF_ERROR(ImportLlama2c(env, flags.model, flags.tokenizer, flags.out));
  // Reopen what was written: the import is only done when it reads back.
  CATQ_ASSIGN_OR_RETURN(LlamaModel model, LlamaModel::Open(flags.out, env));
  const LlamaConfig& c = model.config();
  std::cout << "imported " << flags.model << " -> " << flags.out << ": " << c.num_hidden_layers
            << " layers, hidden " << c.hidden_size << ", intermediate " << c.intermediate_size
            << ", heads " << c.num_attention_heads << "/" << c.num_key_value_heads << ", vocab "
            << c.vocab_size << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddImportLlama2cCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<ImportFlags>();
  CLI::App* sub = app.add_subcommand(
      "import-llama2c", "Convert a llama2.c checkpoint to a Hugging Face Llama directory");
  sub->add_option("--model", flags->model, "llama2.c checkpoint (.bin)")->required();
  sub->add_option("--tokenizer", flags->tokenizer, "llama2.c tokenizer (tok*.bin)")->required();
  sub->add_option("--out", flags->out, "Output directory")->required();
  sub->callback([flags, &run] { run = [flags] { return RunImport(*flags); }; });
}

}  // namespace catq::cli
