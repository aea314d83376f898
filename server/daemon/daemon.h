// Daemon: wires the storage, the scheduler, the core and the gRPC server
// together, and takes them down in order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "common/blas_kernels.h"
#include "common/log_throttle.h"
#include "server/api/check_pool.h"
#include "server/api/fine_tuning_service.h"
#include "server/api/open_streams.h"
#include "server/api/reflection_service.h"
#include "server/core/file_manager.h"
#include "server/core/job_manager.h"
#include "server/daemon/memory_trimmer.h"
#include "server/metrics/metrics.h"
#include "server/metrics/metrics_http_server.h"
#include "server/metrics/metrics_observer.h"
#include "server/metrics/security_metrics.h"
#include "server/api/pool_service.h"
#include "server/pool/pool_store.h"
#include "server/pool/worker_pool.h"
#include "server/scheduler/device.h"
#include "server/security/authenticator.h"
#include "server/security/transport.h"
#include "server/training/trainer.h"
#include "storage/activation_store.h"
#include "storage/database.h"
#include "storage/file_store.h"
#include "storage/rocksdb_job_store.h"

namespace ftd::daemon {

class Daemon {
 public:
  struct Options {
    // host:port to listen on; port 0 picks a free port.
    std::string address = "127.0.0.1:50051";
    // TLS, mutual TLS, or plaintext (on loopback unless allowed).
    security::TransportOptions transport;
    // Callers authenticate (tokens, client certificates), and each sees its
    // tenant's jobs and files only; off: every caller is the admin of "".
    // On, job and file ids are opaque (storage/id_numbers.h) rather than
    // sequential, so that they do not count other tenants' work.
    bool authenticate = false;
    security::Authenticator::Options auth;
    // When set, the bound address ("127.0.0.1:40123") is written here once
    // the server is ready.
    std::string address_file;
    // Holds the database (<data_dir>/db), job outputs (<data_dir>/jobs) and
    // uploaded files (<data_dir>/files).
    std::string data_dir = "ftd-data";
    // Folders models and datasets may come from; empty: the working directory.
    std::vector<std::string> data_roots;
    // Each tenant's own folders instead (when any is given): tenant -> folders.
    std::map<std::string, std::vector<std::string>> tenant_data_roots;
    std::vector<scheduler::Device> devices;
    // The activation cache: its size cap and RocksDB's memory for it.
    storage::ActivationStore::Options cache;
    // Makes the trainer jobs run through, given the daemon's activation
    // store (which outlives it)
    // and the pool's RemoteReplicas (nullptr without a pool).
    std::function<std::unique_ptr<training::Trainer>(storage::ActivationStore*,
                                                     training::parallel::RemoteReplicas*)>
        make_trainer;
    // A pool: worker daemons (`ftd --join`) attach through the Pool service
    // and run replicas of this daemon's jobs on their devices. Off when
    // `serve_replicas` is null; it serves the replicas' store (main.cc:
    // pool::ServeReplicas).
    struct Pool {
      std::function<absl::StatusOr<pool::ServedReplicas>(pool::WorkerPool*)> serve_replicas;
      absl::Duration heartbeat_interval = absl::Seconds(5);
      int max_workers = 64;
    };
    Pool pool;
    // host:port of the Prometheus endpoint (/metrics); port 0 picks a free
    // port; empty: no endpoint.
    std::string metrics_address = "127.0.0.1:9464";
    // A file holding the token scrapes must send ("Authorization: Bearer
    // TOKEN"); empty: none.
    std::string metrics_token_file;
    // With the transport's certificate and key: serve the metrics endpoint
    // over HTTPS with them (re-read as they change), scrapers presenting a
    // certificate `metrics_tls_client_ca` signed when that is set.
    bool metrics_tls = true;
    std::string metrics_tls_client_ca;
    // How long a finished job's metrics stay.
    absl::Duration metrics_job_retention = absl::Minutes(10);
    // Bytes in use on a CUDA device (by index), where the trainer can tell.
    std::function<std::optional<int64_t>(int)> cuda_memory_used;
    std::string version = "dev";
    // Keep ended jobs' checkpoints (deleted by default).
    bool keep_checkpoints = false;
    // See core::JobManager::Options::max_crashes.
    int max_job_crashes = 3;
    // See core::JobManager::Options::preemption.
    bool preemption = false;
    // See core::JobManager::Options::max_queued_jobs and the per-tenant
    // limits after it.
    int max_queued_jobs = 10000;
    // See storage::RocksDbJobStore::Options::max_events_per_job.
    int64_t max_job_events = 100000;
    int max_queued_jobs_per_tenant = 0;
    int max_running_jobs_per_tenant = 0;
    // Watches one tenant's users may hold open at once (0: no limit but the
    // daemon's 1,024).
    int max_watches_per_tenant = 256;
    // Downloads streaming at once (0: no limit).
    int max_downloads = 16;
    // The threads that check a submission's or an upload's files, and how
    // many checks may wait (server/api/check_pool.h).
    api::CheckPool::Options checks;
    // The memory a CPU job may use; 0: the machine's or the cgroup's limit.
    int64_t memory_limit_bytes = 0;
    // Uploaded files' limits (kept in <data_dir>/files; `store` is set by
    // the daemon).
    core::FileManager::Options files;
    // The environment the database's files go through (nullptr: RocksDB's
    // default); a test's fault-injecting one. Must outlive the daemon.
    rocksdb::Env* storage_env = nullptr;
    // How often the allocator's free memory goes back to the system
    // (server/daemon/memory_trimmer.h); 0: never.
    absl::Duration memory_trim_interval = absl::Seconds(30);
  };

  // Opens the database, recovers jobs and starts serving.
  // Errors: INVALID_ARGUMENT for bad options (naming the flag's subject),
  // UNAVAILABLE when the database cannot be opened or an address bound.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(Options options);

  ~Daemon();

  // "host:port" actually bound.
  const std::string& address() const { return address_; }
  // "host:port" of the metrics endpoint; empty without one.
  const std::string& metrics_address() const { return metrics_address_; }

  // Graceful stop: refuses new work, lets running jobs reach a safe point and
  // requeues them, closes watches, stops the server, closes the database.
  void Shutdown();

 private:
  Daemon() = default;

  std::string address_;
  std::string metrics_address_;
  // Written by every component below.
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<metrics::MetricsObserver> metrics_observer_;
  std::unique_ptr<storage::Database> database_;
  std::unique_ptr<storage::RocksDbJobStore> store_;
  std::unique_ptr<storage::ActivationStore> activation_store_;
  std::unique_ptr<storage::FileStore> file_store_;
  std::unique_ptr<core::FileManager> files_;
  // The pool of workers (null without one), and its replicas' store,
  // which the trainer uses.
  std::unique_ptr<pool::WorkerPool> pool_;
  pool::ServedReplicas served_replicas_;
  std::unique_ptr<api::PoolService> pool_service_;
  std::unique_ptr<training::Trainer> trainer_;
  std::unique_ptr<core::JobManager> manager_;
  // Logs (and exports as ftd_cpu_kernels_info) the matrix-product kernels
  // this process runs and those made for its CPU, warning when OpenBLAS
  // fell back to narrower ones.
  void ReportKernels(const CpuFeatures& cpu, const v1::ServerInfo::Kernels& kernels);

  std::unique_ptr<api::FineTuningService> service_;
  std::unique_ptr<api::Reflection> reflection_;
  std::unique_ptr<api::ReflectionV1Service> reflection_v1_;
  std::unique_ptr<api::ReflectionV1AlphaService> reflection_v1alpha_;
  std::unique_ptr<security::Authenticator> authenticator_;
  std::unique_ptr<metrics::SecurityMetrics> security_metrics_;
  std::unique_ptr<LogThrottle> refusal_log_;
  std::unique_ptr<api::CheckPool> check_pool_;
  std::unique_ptr<api::OpenStreams> open_streams_;  // over authenticator_
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::MetricsHttpServer> metrics_server_;
  std::unique_ptr<MemoryTrimmer> memory_trimmer_;
  bool shut_down_ = false;
};

}  // namespace ftd::daemon
