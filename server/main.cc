// ftd: the fine-tuning daemon. Parses flags and wires the libraries.
#include <algorithm>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "common/address.h"
#include "common/fs_util.h"
#include "server/daemon/daemon.h"
#include "server/daemon/worker_daemon.h"
#include "server/pool/launch_env.h"
#include "server/pool/pool_store.h"
#include "server/daemon/kernel_choice.h"
#include "server/scheduler/device_discovery.h"
#include "server/training/engine/bert_trainer.h"
#include "server/training/engine/cpu_allocator.h"
#include "server/training/engine/device_memory.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051",
          "gRPC address host:port; port 0 picks a free port (see --address_file)");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain to serve TLS with (with --tls_key); re-read when it changes");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert; re-read when it changes");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: clients must present a certificate it signed (mutual TLS)");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Minutes(1),
          "how often the TLS files are checked for a new version (rotated secrets)");
ABSL_FLAG(bool, allow_insecure, false,
          "serve plaintext on a non-loopback --address (without TLS ftd serves loopback only)");
ABSL_FLAG(std::string, tokens_file, "",
          "callers authenticate with bearer tokens listed here, one a line as SHA256HEX TENANT "
          "ROLE (admin or user); re-read when it changes. Each tenant sees only its own jobs "
          "and files");
ABSL_FLAG(absl::Duration, tokens_reload_interval, absl::Seconds(10),
          "how often --tokens_file is checked for a new version");
ABSL_FLAG(bool, client_cert_tenants, false,
          "with --tls_client_ca: a call without a token acts for the tenant its client "
          "certificate's common name names (a user, or an admin if in --admin_tenants)");
ABSL_FLAG(std::vector<std::string>, admin_tenants, {},
          "tenants named by client certificates that are admins");
ABSL_FLAG(std::vector<std::string>, tenant_data_roots, {},
          "with authentication: each tenant's own folders, as tenant:folder,tenant:folder; a "
          "tenant's paths must lie in its own (a tenant without any may name uploads only); "
          "admins keep --data_roots");
ABSL_FLAG(std::string, address_file, "",
          "write the bound address to this file once serving (for scripts and tests)");
ABSL_FLAG(std::string, data_dir, "ftd-data", "folder for the database and job outputs");
ABSL_FLAG(std::vector<std::string>, data_roots, {},
          "comma-separated folders that models and datasets may come from "
          "(default: the working directory)");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464",
          "host:port of the Prometheus endpoint (path /metrics); port 0 picks a free port; "
          "empty turns it off");
ABSL_FLAG(std::string, metrics_token_file, "",
          "scrapes of the metrics endpoint must send \"Authorization: Bearer TOKEN\" with the "
          "token in this file (Prometheus: authorization.credentials_file)");
ABSL_FLAG(bool, metrics_tls, true,
          "with --tls_cert and --tls_key: the metrics endpoint serves HTTPS with them too "
          "(false: plaintext HTTP)");
ABSL_FLAG(std::string, metrics_tls_client_ca, "",
          "PEM CA bundle: scrapers of the HTTPS metrics endpoint must present a certificate it "
          "signed");
ABSL_FLAG(absl::Duration, memory_trim_interval, absl::Seconds(30),
          "how often memory that malloc holds free (after a burst of requests) is given back to "
          "the system; 0 never");
ABSL_FLAG(absl::Duration, metrics_job_retention, absl::Minutes(10),
          "how long a finished job's metrics stay (for example 10m, 1h)");
ABSL_FLAG(int, cpu_devices, 1,
          "CPU devices the daemon offers: each runs one job, or one replica of a job on several "
          "devices (--devices), with --cpu_threads threads (0: GPUs only)");
ABSL_FLAG(int, cpu_slots, -1, "the former name of --cpu_devices (when set, it wins)");
ABSL_FLAG(bool, overlap_allreduce, false,
          "a job on several devices: start each gradient bucket's all-reduce while backward "
          "still runs (docs/performance.md has the measurement behind the default)");
ABSL_FLAG(absl::Duration, collective_timeout, absl::Minutes(5),
          "a job on several devices: how long one replica waits for the others in a collective "
          "before the job fails");
ABSL_FLAG(int64_t, cache_max_mb_per_tenant, 0,
          "each tenant's share of the activation cache in MiB (0: none besides --cache_max_mb); "
          "a tenant past it evicts its own least recently used segments");
ABSL_FLAG(int64_t, cache_max_mb, 8192,
          "size cap of the activation cache in MiB; least recently used segments go first");
ABSL_FLAG(int64_t, cache_block_cache_mb, 32,
          "RocksDB block cache for the activation cache's index, filters and records, in MiB");
ABSL_FLAG(int64_t, cache_write_buffer_mb, 16,
          "RocksDB write buffer (memtable) size for the activation cache, in MiB (two at most)");
ABSL_FLAG(absl::Duration, checkpoint_interval, absl::Minutes(10),
          "a running job writes a checkpoint at least this often (of training time; 0 turns "
          "checkpoints by time off), besides each epoch's end, each deeper freeze, its own "
          "checkpoint_every_steps and the daemon's stop");
ABSL_FLAG(bool, keep_checkpoints, false,
          "keep a job's checkpoints once it has ended (default: deleted then)");
ABSL_FLAG(int, max_job_crashes, 3,
          "a job the daemon stops abnormally under (a crash, kill -9) this many times in a row, "
          "with no new checkpoint in between, fails instead of running again (0: never)");
ABSL_FLAG(int, max_queued_jobs_per_tenant, 0,
          "jobs one tenant may have waiting at once (0: no limit beyond --max_queued_jobs)");
ABSL_FLAG(int, max_running_jobs_per_tenant, 0,
          "jobs one tenant may run at once (0: no cap); among jobs of one priority the tenant "
          "running the fewest starts first either way");
ABSL_FLAG(int, max_watches_per_tenant, 256,
          "watches one tenant's users may hold open at once, of the daemon's 1024 (0: no limit "
          "but those); admins count only against the daemon's");
ABSL_FLAG(int, max_downloads, 16,
          "downloads of job outputs streaming at once; more are refused TOO_MANY_DOWNLOADS (0: no "
          "limit)");
ABSL_FLAG(int, check_threads, 2,
          "threads that read and check the files of submissions and uploads (never gRPC's own "
          "threads, so a slow file holds up no other call)");
ABSL_FLAG(int, max_queued_checks, 32,
          "submissions and uploads that may wait for a check thread; more are refused "
          "CHECKS_BUSY (RESOURCE_EXHAUSTED)");
ABSL_FLAG(int64_t, max_job_events, 100000,
          "events a job's history keeps besides its state changes, warnings and errors (0: no "
          "bound); past it the oldest progress, evaluation and freeze events go, counted");
ABSL_FLAG(int, max_queued_jobs, 10000,
          "jobs that may wait in the queue at once; a submission beyond is refused with "
          "RESOURCE_EXHAUSTED (0: no limit)");
ABSL_FLAG(bool, preemption, false,
          "a queued job of higher priority that finds no free device makes the running job of "
          "the lowest lower priority checkpoint and go back to the queue (it resumes later)");
ABSL_FLAG(int64_t, memory_limit_mb, 0,
          "memory a CPU job may use, in MiB: a job whose estimated need is larger is refused at "
          "submit (0: the machine's memory, or the container's limit where lower)");
ABSL_FLAG(int64_t, max_file_mb, 4096,
          "uploads: the largest file (a dataset, or one file of a model folder), in MiB");
ABSL_FLAG(int64_t, max_files_mb, 102400,
          "uploads: bytes kept in all, in MiB (content shared by files counted once; uploads "
          "under way count at their size; 0: no limit)");
ABSL_FLAG(int64_t, max_files, 10000, "uploads: files kept at most (0: no limit)");
ABSL_FLAG(int, max_uploads, 8, "uploads under way at once");
ABSL_FLAG(int, max_uploads_per_tenant, 0,
          "uploads one tenant may have under way at once (0: no limit beyond --max_uploads)");
ABSL_FLAG(int64_t, max_files_per_tenant, 0,
          "files one tenant may keep (0: no limit beyond --max_files)");
ABSL_FLAG(int64_t, max_files_mb_per_tenant, 0,
          "uploads: MiB one tenant's files may hold, uploads under way included (0: no limit "
          "beyond --max_files_mb)");
ABSL_FLAG(absl::Duration, upload_idle_timeout, absl::Seconds(60),
          "uploads: one that sends nothing for this long gives up its place when another "
          "upload needs it (0: never)");
ABSL_FLAG(int, cpu_threads, 1,
          "LibTorch intra-op threads per CPU job; OpenBLAS runs its own pool beside them "
          "(see docs/performance.md)");

// A pool of daemons (docs/parallel.md, "Several hosts").
ABSL_FLAG(std::string, rendezvous_address, "",
          "coordinator: host:port where the replicas' c10d store listens for a pool of worker "
          "daemons (port 0: a free one); empty: no workers attach");
ABSL_FLAG(std::string, rendezvous_advertised_host, "",
          "coordinator: the host workers reach the replicas' store at (default: the host they "
          "joined)");
ABSL_FLAG(std::string, collective_host, "127.0.0.1",
          "the address this daemon's replicas' collectives (Gloo) listen on: one the pool's "
          "other hosts reach");
ABSL_FLAG(int, max_workers, 64, "coordinator: worker daemons attached at once");
ABSL_FLAG(absl::Duration, pool_heartbeat_interval, absl::Seconds(5),
          "coordinator: how often workers say they are alive (silent for 3 intervals: gone)");
ABSL_FLAG(std::string, join, "",
          "worker: the coordinator's host:port to attach to; this daemon then serves no API and "
          "runs the replicas the coordinator places on its devices");
ABSL_FLAG(std::string, worker_name, "", "worker: its name in the pool (default: the host name)");
ABSL_FLAG(std::string, join_token_file, "",
          "worker: a file holding an admin's bearer token for the coordinator");
ABSL_FLAG(std::string, join_ca, "",
          "worker: the CA (PEM) that signed the coordinator's certificate: the connection is "
          "TLS, verified against it");
ABSL_FLAG(bool, join_tls, false,
          "worker: TLS to the coordinator, verified against the system's CAs (implied by "
          "--join_ca)");
ABSL_FLAG(std::string, join_cert, "",
          "worker: its client certificate (PEM) for a coordinator that asks for one");
ABSL_FLAG(std::string, join_key, "", "worker: the private key of --join_cert");
ABSL_FLAG(std::string, join_server_name, "",
          "worker: the name the coordinator's certificate carries, when not --join's host");
ABSL_FLAG(int64_t, input_cache_mb, 20480,
          "worker: the size cap of its copies of the coordinator's models and datasets");

#ifndef FTD_VERSION
#define FTD_VERSION "dev"
#endif

namespace {

// ftd --join: a pool's worker. `options` are the daemon's as the flags set
// them (devices, caches, the trainer).
int RunWorker(const std::string& join, const std::string& worker_name,
              const ftd::daemon::Daemon::Options& options,
              std::function<std::unique_ptr<ftd::training::BertTrainer>(
                  ftd::storage::ActivationStore*)>
                  make_trainer,
              const sigset_t& signals) {
  ftd::client::ConnectionOptions connection;
  connection.address = join;
  connection.ca_file = absl::GetFlag(FLAGS_join_ca);
  connection.tls = absl::GetFlag(FLAGS_join_tls) || !connection.ca_file.empty();
  connection.cert_file = absl::GetFlag(FLAGS_join_cert);
  connection.key_file = absl::GetFlag(FLAGS_join_key);
  connection.server_name = absl::GetFlag(FLAGS_join_server_name);
  std::string token;
  if (const std::string file = absl::GetFlag(FLAGS_join_token_file); !file.empty()) {
    absl::StatusOr<std::string> read = ftd::ReadFile(file);
    if (!read.ok()) {
      std::fprintf(stderr, "ftd: --join_token_file: cannot read \"%s\"\n", file.c_str());
      return 2;
    }
    token = *read;
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
      token.pop_back();
    if (token.empty()) {
      std::fprintf(stderr, "ftd: --join_token_file: \"%s\" is empty\n", file.c_str());
      return 2;
    }
  }
  // A token crosses the network only encrypted (as ftctl's does).
  if (!token.empty() && !connection.tls && !ftd::IsLoopbackAddress(join)) {
    std::fprintf(stderr,
                 "ftd: --join_token_file: the token would cross the network in the clear; give "
                 "--join_ca (or --join_tls) for a coordinator that serves TLS\n");
    return 2;
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ftd::client::Connect(connection);
  if (!channel.ok()) {
    std::fprintf(stderr, "ftd: %s\n", std::string(channel.status().message()).c_str());
    return 2;
  }
  ftd::daemon::WorkerDaemon::Options worker;
  worker.join = join;
  worker.channel = *channel;
  worker.token = token;
  worker.name = worker_name;
  if (worker.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    worker.name = host;
  }
  worker.version = options.version;
  worker.collective_host = absl::GetFlag(FLAGS_collective_host);
  worker.devices = options.devices;
  worker.data_dir = options.data_dir;
  worker.cache = options.cache;
  worker.input_cache_max_bytes = std::max<int64_t>(1, absl::GetFlag(FLAGS_input_cache_mb)) << 20;
  worker.make_trainer = std::move(make_trainer);
  absl::StatusOr<std::unique_ptr<ftd::daemon::WorkerDaemon>> daemon =
      ftd::daemon::WorkerDaemon::Start(std::move(worker));
  if (!daemon.ok()) {
    std::fprintf(stderr, "ftd: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  absl::Status ended;
  std::thread agent([&] {
    ended = (*daemon)->Run();
    // A refusal ends the process as a signal would.
    if (!ended.ok()) kill(getpid(), SIGTERM);
  });
  int signal = 0;
  sigwait(&signals, &signal);
  const int running = (*daemon)->Shutdown();
  agent.join();
  if (!ended.ok()) std::fprintf(stderr, "ftd: %s\n", ended.ToString().c_str());
  if (running > 0) {
    // Their jobs resume from their checkpoints on the coordinator's side.
    std::fprintf(stderr, "ftd: leaving %d replica%s running; they end with this process\n",
                 running, running == 1 ? "" : "s");
    std::fflush(nullptr);
    std::_Exit(ended.ok() ? 0 : 1);
  }
  return ended.ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // First: the kernels made for this CPU where OpenBLAS fell back to
  // narrower ones (this may run ftd again, with OPENBLAS_CORETYPE set).
  ftd::daemon::ChooseBlasKernels(argv);
  // Before the first tensor: freed activation buffers stay for the next step.
  const absl::Status kept_memory = ftd::training::KeepFreedMemory();
  if (!kept_memory.ok()) {
    std::fprintf(stderr, "ftd: warning: %s; training on the CPU is slower\n",
                 std::string(kept_memory.message()).c_str());
  }
  absl::SetProgramUsageMessage("ftd: the fine-tuning daemon. Usage: ftd [--flags]");
  absl::ParseCommandLine(argc, argv);
  const int cpu_devices = absl::GetFlag(FLAGS_cpu_slots) >= 0 ? absl::GetFlag(FLAGS_cpu_slots)
                                                               : absl::GetFlag(FLAGS_cpu_devices);
  if (cpu_devices < 0) {
    std::fprintf(stderr, "ftd: --cpu_devices must not be negative\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_collective_timeout) <= absl::ZeroDuration()) {
    std::fprintf(stderr, "ftd: --collective_timeout must be positive\n");
    return 2;
  }

  // Signals are taken by sigwait below; block them before any thread starts
  // so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (absl::GetFlag(FLAGS_metrics_job_retention) < absl::ZeroDuration()) {
    std::fprintf(stderr, "ftd: --metrics_job_retention must not be negative\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_checkpoint_interval) < absl::ZeroDuration()) {
    std::fprintf(stderr, "ftd: --checkpoint_interval must not be negative\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_cpu_threads) < 1) {
    std::fprintf(stderr, "ftd: --cpu_threads must be at least 1\n");
    return 2;
  }
  for (const auto& [name, value] :
       {std::pair{"cache_max_mb", absl::GetFlag(FLAGS_cache_max_mb)},
        std::pair{"cache_block_cache_mb", absl::GetFlag(FLAGS_cache_block_cache_mb)},
        std::pair{"cache_write_buffer_mb", absl::GetFlag(FLAGS_cache_write_buffer_mb)}}) {
    if (value < 1) {
      std::fprintf(stderr, "ftd: --%s must be at least 1\n", name);
      return 2;
    }
  }
  ftd::daemon::Daemon::Options options;
  options.cache.capacity_bytes = absl::GetFlag(FLAGS_cache_max_mb) << 20;
  options.cache.tenant_capacity_bytes =
      std::max<int64_t>(0, absl::GetFlag(FLAGS_cache_max_mb_per_tenant)) << 20;
  options.cache.tuning.block_cache_bytes = absl::GetFlag(FLAGS_cache_block_cache_mb) << 20;
  options.cache.tuning.write_buffer_bytes = absl::GetFlag(FLAGS_cache_write_buffer_mb) << 20;
  const int cpu_threads = absl::GetFlag(FLAGS_cpu_threads);
  const double checkpoint_seconds = absl::ToDoubleSeconds(absl::GetFlag(FLAGS_checkpoint_interval));
  options.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  options.transport.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.transport.key_file = absl::GetFlag(FLAGS_tls_key);
  options.transport.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.transport.reload_interval = absl::GetFlag(FLAGS_tls_reload_interval);
  options.transport.allow_insecure = absl::GetFlag(FLAGS_allow_insecure);
  options.metrics_token_file = absl::GetFlag(FLAGS_metrics_token_file);
  options.metrics_tls = absl::GetFlag(FLAGS_metrics_tls);
  options.metrics_tls_client_ca = absl::GetFlag(FLAGS_metrics_tls_client_ca);
  options.auth.tokens_file = absl::GetFlag(FLAGS_tokens_file);
  options.auth.reload_interval = absl::GetFlag(FLAGS_tokens_reload_interval);
  options.auth.certificate_tenants = absl::GetFlag(FLAGS_client_cert_tenants);
  options.auth.admin_tenants = absl::GetFlag(FLAGS_admin_tenants);
  options.authenticate = !options.auth.tokens_file.empty() || options.auth.certificate_tenants;
  for (const std::string& entry : absl::GetFlag(FLAGS_tenant_data_roots)) {
    const size_t colon = entry.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == entry.size()) {
      std::fprintf(stderr, "ftd: --tenant_data_roots: \"%s\" is not tenant:folder\n",
                   entry.c_str());
      return 2;
    }
    options.tenant_data_roots[entry.substr(0, colon)].push_back(entry.substr(colon + 1));
  }
  if (!options.tenant_data_roots.empty() && !options.authenticate) {
    std::fprintf(stderr, "ftd: --tenant_data_roots needs authentication (--tokens_file)\n");
    return 2;
  }
  if (options.auth.certificate_tenants && options.transport.client_ca_file.empty()) {
    std::fprintf(stderr, "ftd: --client_cert_tenants needs --tls_client_ca (mutual TLS)\n");
    return 2;
  }
  options.max_job_crashes = absl::GetFlag(FLAGS_max_job_crashes);
  options.preemption = absl::GetFlag(FLAGS_preemption);
  options.max_queued_jobs = absl::GetFlag(FLAGS_max_queued_jobs);
  options.max_job_events = absl::GetFlag(FLAGS_max_job_events);
  options.max_queued_jobs_per_tenant = std::max(0, absl::GetFlag(FLAGS_max_queued_jobs_per_tenant));
  options.max_running_jobs_per_tenant =
      std::max(0, absl::GetFlag(FLAGS_max_running_jobs_per_tenant));
  options.max_watches_per_tenant = std::max(0, absl::GetFlag(FLAGS_max_watches_per_tenant));
  options.max_downloads = std::max(0, absl::GetFlag(FLAGS_max_downloads));
  options.checks.threads = std::max(1, absl::GetFlag(FLAGS_check_threads));
  options.checks.max_queued = std::max(0, absl::GetFlag(FLAGS_max_queued_checks));
  if (options.max_queued_jobs < 0) {
    std::fprintf(stderr, "ftd: --max_queued_jobs must not be negative\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_memory_limit_mb) < 0) {
    std::fprintf(stderr, "ftd: --memory_limit_mb must not be negative\n");
    return 2;
  }
  options.memory_limit_bytes = absl::GetFlag(FLAGS_memory_limit_mb) << 20;
  options.files.max_file_bytes = absl::GetFlag(FLAGS_max_file_mb) << 20;
  options.files.max_stored_bytes = absl::GetFlag(FLAGS_max_files_mb) << 20;
  options.files.max_files = absl::GetFlag(FLAGS_max_files);
  options.files.max_uploads = std::max(1, absl::GetFlag(FLAGS_max_uploads));
  options.files.max_tenant_uploads = std::max(0, absl::GetFlag(FLAGS_max_uploads_per_tenant));
  options.files.max_tenant_files = std::max<int64_t>(0, absl::GetFlag(FLAGS_max_files_per_tenant));
  options.files.max_tenant_bytes =
      std::max<int64_t>(0, absl::GetFlag(FLAGS_max_files_mb_per_tenant)) << 20;
  options.files.upload_idle_timeout = absl::GetFlag(FLAGS_upload_idle_timeout);
  if (options.max_job_crashes < 0) {
    std::fprintf(stderr, "ftd: --max_job_crashes must not be negative\n");
    return 2;
  }
  const double collective_seconds = absl::ToDoubleSeconds(absl::GetFlag(FLAGS_collective_timeout));
  const bool overlap_allreduce = absl::GetFlag(FLAGS_overlap_allreduce);
  const auto make_bert_trainer = [cpu_threads, checkpoint_seconds, collective_seconds, overlap_allreduce,
                       probe = ftd::training::MakePrecisionProbe()](
                          ftd::storage::ActivationStore* store,
                          ftd::training::parallel::RemoteReplicas* remote) {
    ftd::training::BertTrainer::Options trainer;
    trainer.remote = remote;
    trainer.precision_probe = probe;
    trainer.cpu_threads = cpu_threads;
    trainer.activation_store = store;
    trainer.checkpoint_interval_seconds = checkpoint_seconds;
    trainer.collective_timeout_seconds = collective_seconds;
    trainer.overlap_allreduce = overlap_allreduce;
    return std::make_unique<ftd::training::BertTrainer>(trainer);
  };
  options.make_trainer = [make_bert_trainer](ftd::storage::ActivationStore* store,
                            ftd::training::parallel::RemoteReplicas* remote)
      -> std::unique_ptr<ftd::training::Trainer> { return make_bert_trainer(store, remote); };
  options.address = absl::GetFlag(FLAGS_address);
  options.address_file = absl::GetFlag(FLAGS_address_file);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.metrics_job_retention = absl::GetFlag(FLAGS_metrics_job_retention);
  options.memory_trim_interval = absl::GetFlag(FLAGS_memory_trim_interval);
  options.cuda_memory_used = ftd::training::CudaMemoryUsed;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.data_roots = absl::GetFlag(FLAGS_data_roots);
  options.devices = ftd::scheduler::DiscoverDevices(cpu_devices);
  for (ftd::scheduler::Device& device : options.devices) {
    if (device.kind != ftd::scheduler::Device::Kind::kCuda) continue;
    if (auto cuda = ftd::training::CudaDevice(device.index); cuda.has_value()) {
      device.memory_bytes = cuda->memory_bytes;
      device.description = absl::StrCat(cuda->name, " (", cuda->memory_bytes >> 30, " GiB)");
    }
  }
  options.version = FTD_VERSION;

  std::string join = absl::GetFlag(FLAGS_join);
  std::string rendezvous = absl::GetFlag(FLAGS_rendezvous_address);
  std::string worker_name = absl::GetFlag(FLAGS_worker_name);
  if (join.empty() && rendezvous.empty()) {
    // Launched as torchrun launches (server/pool/launch_env.h).
    absl::StatusOr<std::optional<ftd::pool::LaunchEnv>> env =
        ftd::pool::ReadLaunchEnv([](const char* name) { return std::getenv(name); });
    if (!env.ok()) {
      std::fprintf(stderr, "ftd: %s\n", std::string(env.status().message()).c_str());
      return 2;
    }
    if (env->has_value()) {
      int api_port = 50051;
      const size_t colon = options.address.rfind(':');
      if (colon != std::string::npos) api_port = std::atoi(options.address.c_str() + colon + 1);
      const ftd::pool::LaunchRole role = ftd::pool::RoleOf(**env, api_port);
      if (role.coordinator) {
        rendezvous = role.rendezvous_address;
      } else {
        join = role.join;
        if (worker_name.empty()) worker_name = role.worker_name;
        // One process a GPU: its LOCAL_RANK's.
        bool cuda = false;
        for (const auto& d : options.devices) cuda = cuda || d.kind == ftd::scheduler::Device::Kind::kCuda;
        if (cuda && role.cuda_device >= 0) {
          std::vector<ftd::scheduler::Device> mine;
          for (const auto& d : options.devices) {
            if (d.kind == ftd::scheduler::Device::Kind::kCuda && d.index == role.cuda_device)
              mine.push_back(d);
          }
          options.devices = mine;
        }
      }
      std::fprintf(stderr, "ftd: RANK %d of WORLD_SIZE %d (torchrun's environment): %s\n",
                   (*env)->rank, (*env)->world_size,
                   role.coordinator ? ("the coordinator, replicas' store on " + rendezvous).c_str()
                                    : ("a worker joining " + join).c_str());
    }
  }
  if (!join.empty()) {
    return RunWorker(join, worker_name, options,
                     [make_bert_trainer](ftd::storage::ActivationStore* store) {
                       return make_bert_trainer(store, nullptr);
                     },
                     signals);
  }
  if (!rendezvous.empty()) {
    const size_t colon = rendezvous.rfind(':');
    int port = -1;
    if (colon != std::string::npos && colon + 1 < rendezvous.size() &&
        rendezvous.find_first_not_of("0123456789", colon + 1) == std::string::npos &&
        rendezvous.size() - colon <= 6) {
      port = std::stoi(rendezvous.substr(colon + 1));
    }
    if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535) {
      std::fprintf(stderr, "ftd: --rendezvous_address: \"%s\" is not host:port\n",
                   rendezvous.c_str());
      return 2;
    }
    ftd::pool::ReplicaStoreOptions store;
    store.store_host = rendezvous.substr(0, colon);
    store.store_port = port;
    store.store_advertised_host = absl::GetFlag(FLAGS_rendezvous_advertised_host);
    store.collective_host = absl::GetFlag(FLAGS_collective_host);
    options.pool.serve_replicas = [store](ftd::pool::WorkerPool* pool) {
      return ftd::pool::ServeReplicas(pool, store);
    };
    options.pool.heartbeat_interval = absl::GetFlag(FLAGS_pool_heartbeat_interval);
    options.pool.max_workers = std::max(1, absl::GetFlag(FLAGS_max_workers));
    if (options.pool.heartbeat_interval < absl::Milliseconds(100)) {
      std::fprintf(stderr, "ftd: --pool_heartbeat_interval must be at least 100ms\n");
      return 2;
    }
  }

  auto daemon = ftd::daemon::Daemon::Start(std::move(options));
  if (!daemon.ok()) {
    std::fprintf(stderr, "ftd: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  int signal = 0;
  sigwait(&signals, &signal);
  (*daemon)->Shutdown();
  return 0;
}
