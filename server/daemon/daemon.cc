#include "server/daemon/daemon.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/address.h"
#include "common/blas_kernels.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/log_throttle.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "server/metrics/grpc_request_counter.h"

namespace ftd::daemon {

namespace fs = std::filesystem;

namespace {

// The largest gRPC message in or out.
constexpr int kMaxMessageBytes = 4 << 20;

// The process's resident memory, from /proc; -1 where it cannot be read.
int64_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long size = 0, resident = 0;
  const int read = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  return read == 2 ? static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE) : -1;
}

// The memory this process may use: the machine's, or its cgroup's limit
// where that is lower (a Kubernetes pod's); 0 where neither can be read.
int64_t MemoryLimitBytes() {
  int64_t limit = 0;
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) limit = static_cast<int64_t>(pages) * page;
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    long long value = 0;
    if (in >> value && value > 0 && (limit == 0 || value < limit)) limit = value;
  }
  return limit;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(Options options) {
  if (!options.make_trainer) return absl::InvalidArgumentError("no trainer");
  // Before anything is opened: a daemon that would serve insecurely, or
  // with certificates it cannot read, does not start.
  ASSIGN_OR_RETURN(const security::Transport transport,
                   security::ServerTransport(options.transport, options.address));
  std::error_code ec;
  const fs::path data_dir = fs::absolute(options.data_dir, ec);
  fs::create_directories(data_dir / "jobs", ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("data_dir: cannot create \"", data_dir.string(), "\": ", ec.message()));
  }
  if (options.data_roots.empty()) options.data_roots.push_back(fs::current_path().string());
  std::vector<std::string> roots;
  for (const std::string& root : options.data_roots) {
    absl::StatusOr<std::string> canonical = CanonicalPath(fs::absolute(root).string());
    if (!canonical.ok() || !fs::is_directory(*canonical)) {
      return absl::InvalidArgumentError(
          absl::StrCat("data_roots: \"", root, "\" is not an existing folder"));
    }
    roots.push_back(*canonical);
  }
  std::map<std::string, std::vector<std::string>> tenant_roots;
  for (const auto& [tenant, folders] : options.tenant_data_roots) {
    if (!security::Authenticator::ValidTenant(tenant)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tenant_data_roots: \"", tenant, "\" is not a tenant name"));
    }
    for (const std::string& folder : folders) {
      absl::StatusOr<std::string> canonical = CanonicalPath(fs::absolute(folder).string());
      if (!canonical.ok() || !fs::is_directory(*canonical)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tenant_data_roots: \"", folder, "\" is not an existing folder"));
      }
      tenant_roots[tenant].push_back(*canonical);
    }
  }
  // The daemon's own outputs may serve as base models (to their tenant);
  // nothing else under its data folder may be named by path.
  const std::string canonical_data_dir =
      CanonicalPath(data_dir.string()).value_or(data_dir.string());

  std::unique_ptr<Daemon> daemon(new Daemon());
  daemon->metrics_ = std::make_unique<metrics::Metrics>(
      metrics::Metrics::Options{options.version, options.metrics_job_retention});
  std::string metrics_scheme;
  if (!options.metrics_address.empty()) {
    metrics::MetricsHttpServer::Options metrics_options;
    metrics_options.token_file = options.metrics_token_file;
    metrics_options.token_reload_interval = options.auth.reload_interval;
    if (!options.metrics_tls_client_ca.empty() &&
        (!options.metrics_tls || options.transport.cert_file.empty())) {
      return absl::InvalidArgumentError(
          "metrics_tls_client_ca: scrapers' certificates need the metrics endpoint on TLS: give "
          "--tls_cert and --tls_key (and leave --metrics_tls on)");
    }
    if (options.metrics_tls && !options.transport.cert_file.empty()) {
      ASSIGN_OR_RETURN(
          metrics_options.tls,
          security::TlsServerContext::Load(
              "metrics_tls", {options.transport.cert_file, options.transport.key_file,
                              options.metrics_tls_client_ca, options.transport.reload_interval}));
    }
    metrics_scheme = metrics_options.tls == nullptr ? "http" : "https";
    ASSIGN_OR_RETURN(daemon->metrics_server_, metrics::MetricsHttpServer::Start(
                                                  options.metrics_address, daemon->metrics_.get(),
                                                  std::move(metrics_options)));
    daemon->metrics_address_ = daemon->metrics_server_->address();
  }
  storage::Database::Options db_options;
  db_options.path = (fs::path(canonical_data_dir) / "db").string();
  db_options.env = options.storage_env;
  db_options.column_families = {"jobs", storage::ActivationStore::kColumnFamily,
                                storage::FileStore::kColumnFamily};
  db_options.column_family_options[storage::ActivationStore::kColumnFamily] =
      storage::ActivationStore::ColumnFamilyOptions(options.cache.tuning);
  ASSIGN_OR_RETURN(daemon->database_, storage::Database::Open(db_options));
  // Among tenants, ids must not count what the others create.
  const storage::IdScheme ids =
      options.authenticate ? storage::IdScheme::kOpaque : storage::IdScheme::kSequential;
  storage::RocksDbJobStore::Options store_options;
  store_options.max_events_per_job = options.max_job_events;
  store_options.ids = ids;
  ASSIGN_OR_RETURN(daemon->store_,
                   storage::RocksDbJobStore::Create(daemon->database_.get(), store_options));
  ASSIGN_OR_RETURN(daemon->activation_store_,
                   storage::ActivationStore::Open(daemon->database_.get(), options.cache));
  storage::FileStore::Options file_store_options;
  file_store_options.root = (fs::path(canonical_data_dir) / "files").string();
  file_store_options.database = daemon->database_.get();
  file_store_options.ids = ids;
  ASSIGN_OR_RETURN(daemon->file_store_, storage::FileStore::Open(file_store_options));
  options.files.store = daemon->file_store_.get();
  daemon->files_ = std::make_unique<core::FileManager>(options.files);
  if (options.pool.serve_replicas) {
    pool::WorkerPool::Options pool_options;
    pool_options.version = options.version;
    Daemon* self = daemon.get();
    // Workers attach once the daemon serves, after the manager exists.
    pool_options.add_devices = [self](const std::vector<scheduler::Device>& devices) {
      self->manager_->AddDevices(devices);
    };
    pool_options.remove_worker = [self](const std::string& worker) {
      self->manager_->RemoveWorker(worker);
    };
    pool_options.heartbeat_interval = options.pool.heartbeat_interval;
    pool_options.max_workers = options.pool.max_workers;
    daemon->pool_ = std::make_unique<pool::WorkerPool>(std::move(pool_options));
    ASSIGN_OR_RETURN(daemon->served_replicas_, options.pool.serve_replicas(daemon->pool_.get()));
  }
  daemon->trainer_ = options.make_trainer(daemon->activation_store_.get(),
                                          daemon->served_replicas_.replicas.get());

  core::JobManager::Options manager_options;
  manager_options.store = daemon->store_.get();
  manager_options.trainer = daemon->trainer_.get();
  manager_options.activation_store = daemon->activation_store_.get();
  daemon->metrics_observer_ = std::make_unique<metrics::MetricsObserver>(daemon->metrics_.get());
  manager_options.observer = daemon->metrics_observer_.get();
  manager_options.files = daemon->files_.get();
  manager_options.metrics_address = daemon->metrics_address_;
  if (!daemon->metrics_address_.empty()) {
    manager_options.metrics_url =
        absl::StrCat(metrics_scheme, "://", daemon->metrics_address_, "/metrics");
  }
  // The kernels this process runs (chosen in main: server/daemon/kernel_choice.h).
  const CpuFeatures cpu = DetectCpuFeatures();
  {
    v1::ServerInfo::Kernels& kernels = manager_options.kernels;
    kernels.set_blas_core(LoadedOpenBlasCore());
    kernels.set_best_blas_core(BestOpenBlasCore(cpu));
    if (!cpu.vendor.empty()) {
      kernels.set_cpu(absl::StrCat(cpu.vendor, " family ", cpu.family, " model ", cpu.model));
    }
    for (const std::string& feature : cpu.Features()) kernels.add_cpu_features(feature);
  }
  const v1::ServerInfo::Kernels kernels = manager_options.kernels;
  manager_options.devices = options.devices;
  manager_options.data_roots = roots;
  manager_options.tenant_data_roots = std::move(tenant_roots);
  manager_options.data_dir = canonical_data_dir;
  manager_options.jobs_dir = (fs::path(canonical_data_dir) / "jobs").string();
  manager_options.keep_checkpoints = options.keep_checkpoints;
  manager_options.max_crashes = options.max_job_crashes;
  manager_options.preemption = options.preemption;
  manager_options.max_queued_jobs = options.max_queued_jobs;
  manager_options.max_queued_jobs_per_tenant = options.max_queued_jobs_per_tenant;
  manager_options.max_running_jobs_per_tenant = options.max_running_jobs_per_tenant;
  manager_options.max_watches_per_tenant = static_cast<size_t>(options.max_watches_per_tenant);
  manager_options.max_downloads = options.max_downloads;
  manager_options.version = options.version;
  manager_options.cpu_memory_bytes =
      options.memory_limit_bytes > 0 ? options.memory_limit_bytes : MemoryLimitBytes();
  if (daemon->pool_ != nullptr) {
    pool::WorkerPool* pool = daemon->pool_.get();
    manager_options.workers = [pool] { return pool->Workers(); };
  }
  ASSIGN_OR_RETURN(daemon->manager_, core::JobManager::Create(std::move(manager_options)));
  security::Authenticator* auth = nullptr;
  if (options.authenticate) {
    ASSIGN_OR_RETURN(daemon->authenticator_, security::Authenticator::Create(options.auth));
    auth = daemon->authenticator_.get();
  }
  daemon->security_metrics_ =
      std::make_unique<metrics::SecurityMetrics>(daemon->metrics_->registry());
  metrics::SecurityMetrics* security_metrics = daemon->security_metrics_.get();
  // Refusals a caller can repeat at will: counted each, logged a line a
  // kind an interval.
  LogThrottle::Options refusal_log_options;
  refusal_log_options.flush_thread = true;
  daemon->refusal_log_ = std::make_unique<LogThrottle>(refusal_log_options);
  LogThrottle* refusal_log = daemon->refusal_log_.get();
  api::FineTuningService::Access access;
  access.auth = auth;
  access.denied = [security_metrics, refusal_log](const std::string& method,
                                                  const std::string& reason) {
    security_metrics->Refused(method, reason);
    refusal_log->Note(LogLevel::kWarning, absl::StrCat(method, ": refused (", reason, ")"));
  };
  access.malformed = [security_metrics, refusal_log](const std::string& method) {
    security_metrics->Malformed(method);
    refusal_log->Note(LogLevel::kWarning,
                      absl::StrCat(method, ": refused a request that does not parse"));
  };
  daemon->check_pool_ = std::make_unique<api::CheckPool>(options.checks);
  daemon->open_streams_ = std::make_unique<api::OpenStreams>(auth);
  daemon->service_ = std::make_unique<api::FineTuningService>(
      daemon->manager_.get(), daemon->files_.get(), access, daemon->check_pool_.get(),
      daemon->open_streams_.get());

  // Reflection, v1 and v1alpha, for admins when callers authenticate.
  std::vector<std::string> services = {
      ftd::v1::FineTuning::service_full_name(), "grpc.health.v1.Health",
      grpc::reflection::v1::ServerReflection::service_full_name(),
      grpc::reflection::v1alpha::ServerReflection::service_full_name()};
  if (daemon->pool_ != nullptr) {
    daemon->pool_service_ = std::make_unique<api::PoolService>(daemon->pool_.get(), access);
    services.push_back(pool::v1::Pool::service_full_name());
  }
  daemon->reflection_ = std::make_unique<api::Reflection>(std::move(services), access);
  daemon->reflection_v1_ = std::make_unique<api::ReflectionV1Service>(daemon->reflection_.get());
  daemon->reflection_v1alpha_ =
      std::make_unique<api::ReflectionV1AlphaService>(daemon->reflection_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.address, transport.credentials, &port);
  builder.RegisterService(daemon->service_.get());
  builder.RegisterService(daemon->reflection_v1_.get());
  builder.RegisterService(daemon->reflection_v1alpha_.get());
  if (daemon->pool_service_ != nullptr) builder.RegisterService(daemon->pool_service_.get());
  // gRPC's default, said out loud: no request may be larger (a JobSpec is
  // a few KiB), and no answer, which keeps a job's record small.
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(metrics::GrpcRequestCounter(daemon->metrics_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  daemon->server_ = builder.BuildAndStart();
  if (daemon->server_ == nullptr || port == 0) {
    daemon->manager_->Shutdown();
    return absl::UnavailableError(absl::StrCat("address: cannot listen on \"", options.address,
                                               "\" (in use, or not host:port)"));
  }
  // Health by the service's name as well as the server's (""), as probes
  // and load balancers ask either.
  daemon->server_->GetHealthCheckService()->SetServingStatus(
      ftd::v1::FineTuning::service_full_name(), true);
  const std::string host = options.address.substr(0, options.address.rfind(':'));
  daemon->address_ = absl::StrCat(host, ":", port);
  // Jobs run only in a daemon that serves.
  daemon->manager_->Start();

  // Readings taken at each scrape. The metrics server goes first at
  // shutdown, so what they read outlives them.
  {
    metrics::Metrics* m = daemon->metrics_.get();
    storage::Database* database = daemon->database_.get();
    storage::ActivationStore* cache = daemon->activation_store_.get();
    std::vector<scheduler::Device> devices = options.devices;
    auto cuda_memory_used = options.cuda_memory_used;
    m->AddScrapeHook([m, database, cache, devices, cuda_memory_used] {
      const auto live = database->IntProperty("rocksdb.estimate-live-data-size");
      const auto pending = database->IntProperty("rocksdb.estimate-pending-compaction-bytes");
      const auto memtables = database->IntProperty("rocksdb.cur-size-all-mem-tables");
      for (const auto& [family, bytes] : live) {
        auto it = pending.find(family);
        auto mem = memtables.find(family);
        m->SetRocksDbSizes(family, static_cast<int64_t>(bytes),
                           it == pending.end() ? 0 : static_cast<int64_t>(it->second),
                           mem == memtables.end() ? 0 : static_cast<int64_t>(mem->second));
      }
      m->SetCacheSize(cache->bytes(), cache->capacity_bytes());
      m->SetCacheEvictions(cache->evictions());
      if (const int64_t rss = ResidentBytes(); rss >= 0) m->SetResidentMemory(rss);
      if (cuda_memory_used) {
        for (const scheduler::Device& device : devices) {
          if (device.kind != scheduler::Device::Kind::kCuda) continue;
          if (std::optional<int64_t> used = cuda_memory_used(device.index); used.has_value()) {
            m->SetDeviceMemoryUsed(device.name(), *used);
          }
        }
      }
    });
  }

  if (!options.address_file.empty()) {
    // Written whole, then renamed: a reader never sees half an address.
    const std::string tmp = options.address_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << daemon->address_ << "\n";
      if (!out) {
        daemon->Shutdown();
        return absl::UnavailableError(
            absl::StrCat("address_file: cannot write \"", options.address_file, "\""));
      }
    }
    fs::rename(tmp, options.address_file, ec);
    if (ec) {
      daemon->Shutdown();
      return absl::UnavailableError(absl::StrCat("address_file: cannot write \"",
                                                 options.address_file, "\": ", ec.message()));
    }
  }
  std::vector<std::string> devices;
  for (const auto& device : options.devices) devices.push_back(device.name());
  Log(LogLevel::kInfo,
      absl::StrCat(
          "ftd ", options.version, " serving on ", daemon->address_, " (", transport.description,
          "; callers ", auth == nullptr ? "not authenticated" : "authenticated", "); data in ",
          data_dir.string(), "; data roots ", absl::StrJoin(roots, ", "), "; devices ",
          devices.empty() ? "none" : absl::StrJoin(devices, ", "), "; activation cache ",
          daemon->activation_store_->bytes() >> 20, " of ",
          daemon->activation_store_->capacity_bytes() >> 20, " MiB; metrics ",
          daemon->metrics_address_.empty()
              ? std::string("off")
              : absl::StrCat(metrics_scheme, "://", daemon->metrics_address_, "/metrics"),
      daemon->pool_ == nullptr
          ? std::string()
          : absl::StrCat("; workers attach here, their replicas meet at the store on port ",
                         daemon->served_replicas_.store_port)));
  daemon->memory_trimmer_ = std::make_unique<MemoryTrimmer>(options.memory_trim_interval);
  daemon->ReportKernels(cpu, kernels);
  if (auth == nullptr && !IsLoopbackAddress(options.address)) {
    Log(LogLevel::kWarning,
        absl::StrCat(
            "callers are not authenticated on ", daemon->address_,
            ": whoever reaches it (with a client certificate, under mutual TLS) acts as "
            "an admin; give --tokens_file or --client_cert_tenants to tell tenants apart"));
  }
  return daemon;
}

void Daemon::ReportKernels(const CpuFeatures& cpu, const v1::ServerInfo::Kernels& kernels) {
  const std::string& core = kernels.blas_core();
  metrics_->SetCpuKernels(core.empty() ? "none" : core,
                          kernels.best_blas_core().empty() ? "none" : kernels.best_blas_core(),
                          cpu.FeatureList());
  Log(LogLevel::kInfo,
      absl::StrCat("kernels: ", core.empty() ? "a BLAS that is not OpenBLAS" : "OpenBLAS " + core,
                   " on ", kernels.cpu().empty() ? "this CPU" : kernels.cpu(), " (",
                   cpu.FeatureList(), ")"));
  if (IsWeakerOpenBlasCore(core, cpu) && std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    Log(LogLevel::kWarning,
        absl::StrCat("OpenBLAS chose its ", core, " kernels, narrower than this CPU's vector units: "
                     "every job runs several times slower than it could; start ftd with "
                     "OPENBLAS_CORETYPE=", kernels.best_blas_core(),
                     " in its environment (docs/performance.md)"));
  }
}

Daemon::~Daemon() { Shutdown(); }

void Daemon::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  Log(LogLevel::kInfo, "shutting down");
  memory_trimmer_.reset();
  metrics_server_.reset();
  if (server_ != nullptr) server_->GetHealthCheckService()->Shutdown();
  // Jobs stop first: their watchers are closed, so the server's own shutdown
  // does not wait on open streams.
  if (manager_ != nullptr) manager_->Shutdown();
  // Then the workers' streams end (their jobs are requeued already).
  if (pool_ != nullptr) pool_->Close();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
  }
  server_.reset();
  // Every call has its answer: nothing is queued for the checks any more.
  check_pool_.reset();
  service_.reset();
  open_streams_.reset();
  reflection_.reset();
  manager_.reset();
  files_.reset();
  file_store_.reset();
  trainer_.reset();
  pool_service_.reset();
  served_replicas_.replicas.reset();
  pool_.reset();
  if (activation_store_ != nullptr) activation_store_->Flush().IgnoreError();
  activation_store_.reset();
  store_.reset();
  database_.reset();
  Log(LogLevel::kInfo, "stopped");
}

}  // namespace ftd::daemon
