// `catq watch JOB_ID [--json]`: follows a job until it ends. Progress goes to
// stderr (a bar on a terminal, a line per finished layer task otherwise);
// --json prints every event as one JSON line on stdout. Exits non-zero with
// one line when the job FAILED or was CANCELLED.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/connection_flags.h"
#include "client/proto_json.h"
#include "client/remote_progress.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct WatchFlags {
  ConnectionFlags connection;
  std::string job_id;
  bool json = false;
  bool quiet = false;
};

absl::StatusOr<v1::Job> WatchAsJsonLines(client::QuantizerClient& client,
                                         const std::string& job_id) {
  return client.Watch(job_id, [](const v1::JobEvent& event) {
    std::cout << ProtoToJson(event).dump() << std::endl;
  });
}

absl::Status RunWatch(const WatchFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<client::QuantizerClient> client,
                        ConnectToServer(flags.connection));
  absl::StatusOr<v1::Job> job = flags.json
                                    ? WatchAsJsonLines(*client, flags.job_id)
                                    : WatchJobWithProgress(*client, flags.job_id, flags.quiet);
  CATQ_RETURN_IF_ERROR(job.status());
  CATQ_RETURN_IF_ERROR(CheckJobSucceeded(*job));
  if (!flags.json) {
    std::cout << absl::StrCat("job ", job->job_id(), " ", StateName(job->state()), ", ",
                              job->tasks_done(), "/", job->tasks_total(), " tasks, ",
                              job->result_files_size(), " result files\n");
  }
  return absl::OkStatus();
}

}  // namespace

void AddWatchCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<WatchFlags>();
  CLI::App* sub = app.add_subcommand("watch", "Follow a job until it ends");
  AddConnectionFlags(*sub, flags->connection);
  sub->add_option("job_id", flags->job_id, "Job id from `catq submit`")->required();
  sub->add_flag("--json", flags->json, "Print each event as a JSON line");
  sub->add_flag("--quiet", flags->quiet, "No progress output");
  sub->callback([flags, &run] { run = [flags] { return RunWatch(*flags); }; });
}

}  // namespace catq::cli
