#include "server/pool/pool_replicas.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/pool/job_files.h"

namespace ftd::pool {

namespace {

class PlacedReplica final : public training::parallel::RemoteReplica {
 public:
  explicit PlacedReplica(std::unique_ptr<WorkerPool::Replica> replica)
      : replica_(std::move(replica)) {}
  absl::Status Wait(std::chrono::milliseconds timeout) override {
    return replica_->Wait(absl::Milliseconds(timeout.count()));
  }
  void Stop() override { replica_->Stop(); }

 private:
  std::unique_ptr<WorkerPool::Replica> replica_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PoolReplicas>> PoolReplicas::Listen(Options options) {
  if (options.pool == nullptr) return absl::InvalidArgumentError("no pool");
  absl::StatusOr<std::unique_ptr<training::parallel::TcpStoreHost>> store =
      training::parallel::TcpStoreHost::Listen(options.store_host, options.store_port);
  if (!store.ok()) {
    return absl::Status(store.status().code(),
                        absl::StrCat("rendezvous_address: ", store.status().message()));
  }
  return std::unique_ptr<PoolReplicas>(new PoolReplicas(std::move(options), *std::move(store)));
}

absl::StatusOr<training::parallel::Rendezvous> PoolReplicas::Meet(
    const std::string& prefix, std::chrono::milliseconds timeout) {
  training::parallel::Rendezvous rendezvous;
  absl::StatusOr<c10::intrusive_ptr<c10d::Store>> store = store_->Prefixed(prefix, timeout);
  if (!store.ok()) return store.status();
  rendezvous.store = *std::move(store);
  rendezvous.hostname = options_.collective_host;
  rendezvous.timeout = timeout;
  return rendezvous;
}

absl::StatusOr<std::unique_ptr<training::parallel::RemoteReplica>> PoolReplicas::Start(
    const training::TrainingContext& job, int rank, const std::string& prefix,
    std::chrono::milliseconds timeout) {
  const std::string& device = job.devices().at(static_cast<size_t>(rank));
  const size_t slash = device.find('/');
  if (slash == std::string::npos) {
    return absl::InternalError(absl::StrCat(device, " is not a worker's device"));
  }
  const std::string worker = device.substr(0, slash);
  std::vector<WorkerPool::OfferedFile> files;
  {
    // Read and hashed once for all of a run's replicas.
    absl::MutexLock lock(&mu_);
    if (files_prefix_ != prefix) {
      absl::StatusOr<std::vector<WorkerPool::OfferedFile>> listed =
          JobFiles(job.spec(), job.checkpoint_dir());
      if (!listed.ok()) return listed.status();
      files_ = *std::move(listed);
      files_prefix_ = prefix;
    }
    files = files_;
  }
  v1::RunReplica run;
  run.set_job_id(job.job_id());
  run.set_tenant(job.tenant());
  *run.mutable_spec() = job.spec();
  for (const WorkerPool::OfferedFile& f : files) *run.add_files() = f.file;
  run.set_rank(rank);
  for (const std::string& d : job.devices()) run.add_devices(d);
  run.set_device(device.substr(slash + 1));
  run.set_store_address(absl::StrCat(options_.store_advertised_host, ":", store_->port()));
  run.set_store_prefix(prefix);
  run.set_collective_timeout_ms(timeout.count());
  absl::StatusOr<std::unique_ptr<WorkerPool::Replica>> placed =
      options_.pool->Run(worker, std::move(run), std::move(files));
  if (!placed.ok()) return placed.status();
  return std::make_unique<PlacedReplica>(*std::move(placed));
}

absl::StatusOr<ServedReplicas> ServeReplicas(WorkerPool* pool, const ReplicaStoreOptions& options) {
  PoolReplicas::Options all;
  static_cast<ReplicaStoreOptions&>(all) = options;
  all.pool = pool;
  absl::StatusOr<std::unique_ptr<PoolReplicas>> replicas = PoolReplicas::Listen(std::move(all));
  if (!replicas.ok()) return replicas.status();
  ServedReplicas served;
  served.store_port = (*replicas)->store_port();
  served.replicas = std::shared_ptr<training::parallel::RemoteReplicas>(std::move(*replicas));
  return served;
}

}  // namespace ftd::pool
