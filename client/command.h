// File: client/command.h
//
// How the `catq` subcommands plug into main.cc. Each Add*Command registers a
// CLI11 subcommand with its flags; when that subcommand is chosen, parsing sets
// `run` to the action, and main calls it once and turns its Status into the
// exit code and a message on stderr.
#ifndef CATQ_CLIENT_COMMAND_H_
#define CATQ_CLIENT_COMMAND_H_

#include <CLI/CLI.hpp>
#include <functional>

#include "absl/status/status.h"

namespace catq::cli {

using CommandAction = std::function<absl::Status()>;

void AddInspectCommand(CLI::App& app, CommandAction& run);
void AddImportLlama2cCommand(CLI::App& app, CommandAction& run);
void AddSynthCommand(CLI::App& app, CommandAction& run);
void AddQuantizeCommand(CLI::App& app, CommandAction& run);
void AddAnalyzeCommand(CLI::App& app, CommandAction& run);
void AddCalibrateCommand(CLI::App& app, CommandAction& run);
void AddCompareCommand(CLI::App& app, CommandAction& run);
void AddEvalCommand(CLI::App& app, CommandAction& run);
void AddExportGptqCommand(CLI::App& app, CommandAction& run);
// In the `catq` binary only (links the server): client/serve_command.cc.
void AddServeCommand(CLI::App& app, CommandAction& run);
// `catq worker`: client/worker_command.cc, linked with the worker library.
void AddWorkerCommand(CLI::App& app, CommandAction& run);
// Commands that talk to a catq server (client/quantizer_client.h).
void AddUploadCommand(CLI::App& app, CommandAction& run);
void AddSubmitCommand(CLI::App& app, CommandAction& run);
void AddWatchCommand(CLI::App& app, CommandAction& run);
void AddFetchCommand(CLI::App& app, CommandAction& run);
void AddJobsCommand(CLI::App& app, CommandAction& run);
void AddCancelCommand(CLI::App& app, CommandAction& run);
void AddHealthCommand(CLI::App& app, CommandAction& run);

}  // namespace catq::cli

#endif  // CATQ_CLIENT_COMMAND_H_
