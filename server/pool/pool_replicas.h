// PoolReplicas: the engine's RemoteReplicas over the pool of workers. The
// coordinator serves the replicas' c10d TCPStore; a replica on a worker's
// device is sent there (WorkerPool::Run) with the job's files offered to it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/pool/pool_store.h"
#include "server/pool/worker_pool.h"
#include "server/training/parallel/replica_group.h"
#include "server/training/parallel/replica_set.h"

namespace ftd::pool {

class PoolReplicas final : public training::parallel::RemoteReplicas {
 public:
  struct Options : ReplicaStoreOptions {
    WorkerPool* pool = nullptr;  // outlives this
  };

  // Errors: UNAVAILABLE when the store cannot listen.
  static absl::StatusOr<std::unique_ptr<PoolReplicas>> Listen(Options options);

  int store_port() const { return store_->port(); }

  absl::StatusOr<training::parallel::Rendezvous> Meet(const std::string& prefix,
                                                      std::chrono::milliseconds timeout) override;
  absl::StatusOr<std::unique_ptr<training::parallel::RemoteReplica>> Start(
      const training::TrainingContext& job, int rank, const std::string& prefix,
      std::chrono::milliseconds timeout) override;

 private:
  PoolReplicas(Options options, std::unique_ptr<training::parallel::TcpStoreHost> store)
      : options_(std::move(options)), store_(std::move(store)) {}

  const Options options_;
  std::unique_ptr<training::parallel::TcpStoreHost> store_;
  // The files of the run being started (one run's replicas share them).
  absl::Mutex mu_;
  std::string files_prefix_ ABSL_GUARDED_BY(mu_);
  std::vector<WorkerPool::OfferedFile> files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ftd::pool
