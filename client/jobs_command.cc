// `catq jobs [--limit N] [--json]`: the newest jobs as a table (id, state,
// tasks done/total, model, method).
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/command.h"
#include "client/connection_flags.h"
#include "client/proto_json.h"
#include "client/remote_progress.h"
#include "core/util/status_macros.h"

namespace catq::cli {
namespace {

struct JobsFlags {
  ConnectionFlags connection;
  int limit = 20;
  bool json = false;
};

void PrintTable(const std::vector<v1::Job>& jobs) {
  size_t id_width = 2;
  size_t model_width = 5;
  for (const v1::Job& job : jobs) {
    id_width = std::max(id_width, job.job_id().size());
    model_width = std::max(model_width, job.model_id().size());
  }
  const auto row = [&](absl::string_view id, absl::string_view state, absl::string_view tasks,
                       absl::string_view model, absl::string_view method) {
    std::cout << absl::StrFormat("%-*s  %-11s  %11s  %-*s  %s\n", id_width, id, state, tasks,
                                 model_width, model, method);
  };
  row("id", "state", "tasks", "model", "method");
  for (const v1::Job& job : jobs) {
    row(job.job_id(), StateName(job.state()),
        absl::StrCat(job.tasks_done(), "/", job.tasks_total()), job.model_id(),
        job.recipe().method().empty() ? "rtn" : job.recipe().method());
  }
}

absl::Status RunJobs(const JobsFlags& flags) {
  CATQ_ASSIGN_OR_RETURN(std::unique_ptr<client::QuantizerClient> client,
                        ConnectToServer(flags.connection));
  CATQ_ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, client->ListJobs(flags.limit));
  if (flags.json) {
    v1::ListJobsResponse response;
    for (const v1::Job& job : jobs) *response.add_jobs() = job;
    std::cout << ProtoToJson(response).dump(2) << "\n";
  } else {
    PrintTable(jobs);
  }
  return absl::OkStatus();
}

}  // namespace

void AddJobsCommand(CLI::App& app, CommandAction& run) {
  auto flags = std::make_shared<JobsFlags>();
  CLI::App* sub = app.add_subcommand("jobs", "List the newest jobs");
  AddConnectionFlags(*sub, flags->connection);
  sub->add_option("--limit", flags->limit, "How many jobs (0: the server's default)")
      ->capture_default_str();
  sub->add_flag("--json", flags->json, "Print the jobs as JSON");
  sub->callback([flags, &run] { run = [flags] { return RunJobs(*flags); }; });
}

}  // namespace catq::cli
