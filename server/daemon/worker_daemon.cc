#include "server/daemon/worker_daemon.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "server/pool/worker_pool.h"

namespace ftd::daemon {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<WorkerDaemon>> WorkerDaemon::Start(Options options) {
  if (!options.make_trainer) return absl::InvalidArgumentError("no trainer");
  if (!pool::WorkerPool::ValidName(options.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker_name: \"", options.name,
                     "\" is not a worker name (letters, digits, '-' and '.', 1 to 63 bytes)"));
  }
  if (options.devices.empty()) {
    return absl::InvalidArgumentError(
        "cpu_devices: a worker offers at least one device (it has no CUDA device)");
  }
  std::error_code ec;
  const fs::path data_dir = fs::absolute(options.data_dir, ec);
  fs::create_directories(data_dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("data_dir: cannot create \"", data_dir.string(), "\": ", ec.message()));
  }
  std::unique_ptr<WorkerDaemon> daemon(new WorkerDaemon());
  storage::Database::Options db_options;
  db_options.path = (data_dir / "db").string();
  db_options.column_families = {storage::ActivationStore::kColumnFamily};
  db_options.column_family_options[storage::ActivationStore::kColumnFamily] =
      storage::ActivationStore::ColumnFamilyOptions(options.cache.tuning);
  ASSIGN_OR_RETURN(daemon->database_, storage::Database::Open(db_options));
  ASSIGN_OR_RETURN(daemon->activation_store_,
                   storage::ActivationStore::Open(daemon->database_.get(), options.cache));
  daemon->trainer_ = options.make_trainer(daemon->activation_store_.get());

  pool::WorkerAgent::Options agent;
  agent.coordinator = options.join;
  agent.channel = options.channel;
  agent.token = options.token;
  agent.name = options.name;
  agent.version = options.version;
  agent.collective_host = options.collective_host;
  agent.devices = options.devices;
  agent.cache_dir = (data_dir / "pool").string();
  agent.cache_max_bytes = options.input_cache_max_bytes;
  training::BertTrainer* trainer = daemon->trainer_.get();
  agent.run = [trainer](training::TrainingContext& context,
                        const training::BertTrainer::ReplicaPlace& place) {
    return trainer->TrainReplica(context, place);
  };
  ASSIGN_OR_RETURN(daemon->agent_, pool::WorkerAgent::Create(std::move(agent)));
  std::string devices;
  for (const scheduler::Device& d : options.devices) {
    absl::StrAppend(&devices, devices.empty() ? "" : ", ", d.local_name());
  }
  Log(LogLevel::kInfo,
      absl::StrCat("ftd ", options.version, " worker ", options.name, " joining ", options.join,
                   " (devices ", devices, "; collectives on ", options.collective_host,
                   "); data in ", data_dir.string()));
  return daemon;
}

int WorkerDaemon::Shutdown() {
  if (agent_ == nullptr) return 0;
  agent_->Shutdown();
  return agent_->running();
}

WorkerDaemon::~WorkerDaemon() {
  Shutdown();
  // Replicas still running use the trainer and the store: the process
  // ends without destroying them (main.cc).
}

}  // namespace ftd::daemon
