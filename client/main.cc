// catq: the command line. Flags are parsed here; every action lives in its own
// *_command.cc and returns a Status.
#include <iostream>

#include "client/command.h"

int main(int argc, char** argv) {
  CLI::App app{"catq: quantize Llama-family models to 4 bits with block CAT"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "catq 0.1.0");

  catq::cli::CommandAction run;
  catq::cli::AddInspectCommand(app, run);
  catq::cli::AddImportLlama2cCommand(app, run);
  catq::cli::AddSynthCommand(app, run);
  catq::cli::AddQuantizeCommand(app, run);
  catq::cli::AddAnalyzeCommand(app, run);
  catq::cli::AddCalibrateCommand(app, run);
  catq::cli::AddCompareCommand(app, run);
  catq::cli::AddEvalCommand(app, run);
  catq::cli::AddExportGptqCommand(app, run);
  catq::cli::AddUploadCommand(app, run);
  catq::cli::AddSubmitCommand(app, run);
  catq::cli::AddWatchCommand(app, run);
  catq::cli::AddFetchCommand(app, run);
  catq::cli::AddJobsCommand(app, run);
  catq::cli::AddCancelCommand(app, run);
  catq::cli::AddHealthCommand(app, run);
  catq::cli::AddServeCommand(app, run);
  catq::cli::AddWorkerCommand(app, run);

  CLI11_PARSE(app, argc, argv);
  absl::Status status = run();
  if (!status.ok()) {
    std::cerr << "catq: " << status.message() << " (" << absl::StatusCodeToString(status.code())
              << ")\n";
    return 1;
  }
  return 0;
}
