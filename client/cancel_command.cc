// `catq cancel JOB_ID [--json]`: asks the server to cancel a job and prints
// the state it is in afterwards.
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

struct CancelFlags {
  ConnectionFlags connection;
  std::string job_id;
  bool json = false;
};

absl::Status RunCancel(const CancelFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<client::QuantizerClient> client,
                        ConnectToServer(flags.connection));
  CATQ_ASSIGN_OR_RETURN(v1::Job job, client->CancelJob(flags.job_id));
  std::cout << (flags.json ? ProtoToJson(job).dump(2)
                           : absl::StrCat("job ", job.job_id(), " ", StateName(job.state())))
            << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddCancelCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<CancelFlags>();
  CLI::App* sub = app.add_subcommand("cancel", "Cancel a job");
  AddConnectionFlags(*sub, flags->connection);
  sub->add_option("job_id", flags->job_id, "Job id")->required();
  sub->add_flag("--json", flags->json, "Print the job as JSON");
  sub->callback([flags, &run] { run = [flags] { return RunCancel(*flags); }; });
}

}  // namespace catq::cli
