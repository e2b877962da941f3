// `catq fetch JOB_ID --out DIR [--json]`: downloads a finished job's output.
// Files already there and verified are kept; a fetch killed midway and run
// again continues from its .part files.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "client/command.h"
#include "client/connection_flags.h"
#include "client/remote_progress.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace catq::cli {
namespace {

struct FetchFlags {
  ConnectionFlags connection;
  std::string job_id;
  std::string out;
  bool json = false;
  bool quiet = false;
};

void PrintFetched(const FetchFlags& flags, const client::FetchStats& stats) {
  if (!flags.json) {
    std::cout << absl::StrFormat(
        "fetched job %s into %s: %d files, %d bytes received, %d already there\n", flags.job_id,
        flags.out, stats.job.result_files_size(), stats.bytes_received,
        stats.files_already_present);
    return;
  }
  nlohmann::json files = nlohmann::json::array();
  for (const v1::FileEntry& file : stats.job.result_files()) {
    files.push_back({{"path", file.path()}, {"size", file.size()}, {"sha256", file.sha256()}});
  }
  const nlohmann::json json = {{"job_id", flags.job_id},
                               {"out", flags.out},
                               {"files", files},
                               {"bytes_received", stats.bytes_received},
                               {"files_already_present", stats.files_already_present}};
  std::cout << json.dump(2) << "\n";
}

absl::Status RunFetch(const FetchFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<client::QuantizerClient> client,
                        ConnectToServer(flags.connection));
  TransferProgressPrinter progress("fetch", flags.quiet || flags.json);
  absl::StatusOr<client::FetchStats> stats =
      client->Fetch(flags.job_id, flags.out, progress.Callback());
  progress.Finish();
  CATQ_RETURN_IF_ERROR(stats.status());
  PrintFetched(flags, *stats);
  return absl::OkStatus();
}

}  // namespace

void AddFetchCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<FetchFlags>();
  CLI::App* sub = app.add_subcommand("fetch", "Download the output of a finished job");
  AddConnectionFlags(*sub, flags->connection);
  sub->add_option("job_id", flags->job_id, "Job id")->required();
  sub->add_option("--out", flags->out, "Output directory (created; a rerun resumes into it)")
      ->required();
  sub->add_flag("--json", flags->json, "Print the fetched files as JSON");
  sub->add_flag("--quiet", flags->quiet, "No progress output");
  sub->callback([flags, &run] { run = [flags] { return RunFetch(*flags); }; });
}

}  // namespace catq::cli
