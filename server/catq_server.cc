#include "server/catq_server.h"

#include <cblas.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "server/metrics_interceptor.h"

namespace catq::server {

absl::StatusOr<std::unique_ptr<CatqServer>> CatqServer::Start(const CatqServerOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data-dir: required");
  Env* env = Env::Default();
  auto server = std::unique_ptr<CatqServer>(new CatqServer());
  const std::string& dir = options.data_dir;
  CATQ_RETURN_IF_ERROR(env->CreateDirs(dir));
  CATQ_ASSIGN_OR_RETURN(server->store_, MetadataStore::Open(absl::StrCat(dir, "/catq.db")));
  CATQ_ASSIGN_OR_RETURN(server->blobs_, BlobStore::Open(env, absl::StrCat(dir, "/blobs")));
  if (options.tokens_file.empty()) {
    server->auth_ = std::make_unique<TenantAuth>(TenantAuth::Open());
  } else {
    CATQ_ASSIGN_OR_RETURN(TenantAuth auth, TenantAuth::FromFile(options.tokens_file));
    server->auth_ = std::make_unique<TenantAuth>(std::move(auth));
  }
  if (!options.worker_tokens_file.empty()) {
    CATQ_ASSIGN_OR_RETURN(TenantAuth auth, TenantAuth::FromFile(options.worker_tokens_file));
    server->worker_auth_ = std::make_unique<TenantAuth>(std::move(auth));
  } else if (server->auth_->open()) {
    server->worker_auth_ = std::make_unique<TenantAuth>(TenantAuth::Open());
  }
  server->models_ =
      std::make_unique<ModelRepository>(env, server->blobs_.get(), absl::StrCat(dir, "/models"));
  server->uploads_ =
      std::make_unique<UploadReceiver>(env, server->store_.get(), server->blobs_.get(),
                                       absl::StrCat(dir, "/uploads"), options.upload_limits);
  server->events_ = std::make_unique<JobEventHub>();
  JobRunnerOptions runner_options;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  runner_options.workers = options.workers >= 0 ? options.workers : cores;
  runner_options.calibration_threads = runner_options.workers > 0 ? runner_options.workers : cores;
  runner_options.lease = options.lease;
  server->metrics_ = std::make_unique<ServerMetrics>();
  runner_options.metrics = server->metrics_.get();
  runner_options.jobs_dir = absl::StrCat(dir, "/jobs");
  // Parallelism comes from the workers; each BLAS call runs on its caller's
  // thread, which also keeps every result independent of the worker count.
  openblas_set_num_threads(1);
  server->runner_ =
      std::make_unique<JobRunner>(env, runner_options, server->store_.get(), server->blobs_.get(),
                                  server->models_.get(), server->events_.get());
  server->service_ = std::make_unique<QuantizerService>(
      env, server->auth_.get(), server->store_.get(), server->blobs_.get(), server->models_.get(),
      server->uploads_.get(), server->runner_.get(), server->events_.get(), options.service_limits,
      server->metrics_.get());
  server->worker_service_ =
      std::make_unique<WorkerService>(env, server->worker_auth_.get(), server->blobs_.get(),
                                      server->runner_.get(), WorkerServiceLimits{});

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key: give both or neither");
    }
    grpc::SslServerCredentialsOptions ssl;
    CATQ_ASSIGN_OR_RETURN(std::string cert, env->ReadFile(options.tls_cert_file));
    CATQ_ASSIGN_OR_RETURN(std::string key, env->ReadFile(options.tls_key_file));
    ssl.pem_key_cert_pairs.push_back({key, cert});
    credentials = grpc::SslServerCredentials(ssl);
  }
  CATQ_RETURN_IF_ERROR(server->StartMetrics(options.metrics_listen));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  builder.RegisterService(server->worker_service_.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<MetricsInterceptorFactory>(server->metrics_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--listen ", options.listen, ": cannot listen"));
  }
  CATQ_RETURN_IF_ERROR(server->runner_->Start());
  // The health service answers for the server as a whole ("") and, so that
  // a probe can name what it needs, for each catq service.
  for (const char* service : {"catq.v1.Quantizer", "catq.v1.Worker"}) {
    server->server_->GetHealthCheckService()->SetServingStatus(service, true);
  }
  return server;
}

// The /metrics endpoint: the metrics registry and the scrape-time gauges
// (jobs by state from the store).
absl::Status CatqServer::StartMetrics(const std::string& listen) {
  MetadataStore* store = store_.get();
  metrics_->SetJobStateSource([store] {
    // Every state of every method, so a state's series exists (at 0) before
    // its first job; a method catq does not know counts as "other", which
    // keeps the label's values bounded.
    constexpr const char* kMethods[] = {"rtn", "smoothquant", "hadamard", "cat"};
    JobCounts counts;
    for (JobState state :
         {JobState::kQueued, JobState::kCalibrating, JobState::kQuantizing, JobState::kAssembling,
          JobState::kEvaluating, JobState::kSucceeded, JobState::kFailed, JobState::kCancelled}) {
      for (const char* method : kMethods) counts[{JobStateName(state), method}] = 0;
    }
    auto stored = store->CountJobsByStateAndMethod();
    if (!stored.ok()) return counts;
    for (const auto& [key, count] : *stored) {
      const auto& [state, method] = key;
      const bool known =
          std::find(std::begin(kMethods), std::end(kMethods), method) != std::end(kMethods);
      counts[{JobStateName(state), known ? method : "other"}] += count;
    }
    return counts;
  });
  JobRunner* runner = runner_.get();
  metrics_->SetRunnerSource([runner] { return runner->Snapshot(); });
  if (listen.empty()) return absl::OkStatus();
  CATQ_ASSIGN_OR_RETURN(metrics_endpoint_, MetricsEndpoint::Start(listen, "--metrics-listen"));
  metrics_endpoint_->Register(metrics_->registry());
  metrics_endpoint_->Register(metrics_->state_collectable());
  return absl::OkStatus();
}

void CatqServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  server_->GetHealthCheckService()->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  runner_->Stop();
}

void CatqServer::Wait() { server_->Wait(); }

CatqServer::~CatqServer() {
  if (server_ != nullptr) Shutdown();
}

}  // namespace catq::server
