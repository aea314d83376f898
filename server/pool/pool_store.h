// The replicas' store of a pool, served by the coordinator: what the
// daemon starts (no LibTorch here; pool_replicas.h is the implementation).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/pool/worker_pool.h"

namespace ftd::training::parallel {
class RemoteReplicas;  // server/training/parallel/replica_set.h
}

namespace ftd::pool {

struct ReplicaStoreOptions {
  // Where the replicas' c10d TCPStore listens (port 0: a free port).
  std::string store_host = "127.0.0.1";
  int store_port = 0;
  // The host workers reach it at; empty: the host they joined.
  std::string store_advertised_host;
  // The address this daemon's replicas' collectives listen on.
  std::string collective_host = "127.0.0.1";
};

struct ServedReplicas {
  // What the trainer runs other hosts' replicas through.
  std::shared_ptr<training::parallel::RemoteReplicas> replicas;
  int store_port = 0;
};

// Serves the store and places replicas on `pool`'s workers (`pool`
// outlives the result). Errors: UNAVAILABLE when the store cannot listen.
absl::StatusOr<ServedReplicas> ServeReplicas(WorkerPool* pool, const ReplicaStoreOptions& options);

}  // namespace ftd::pool
