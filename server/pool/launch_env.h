// The torchrun environment contract (MASTER_ADDR, MASTER_PORT, WORLD_SIZE,
// RANK, LOCAL_RANK), as Kubeflow Trainer's torch runtime, SkyPilot or a
// StatefulSet's pods set it: ftd started with it takes its place in a pool
// without --join or --rendezvous_address. Rank 0 is the coordinator and
// serves the replicas' store on MASTER_PORT; every other rank is a worker
// that joins MASTER_ADDR's API port, named "rank-<RANK>", and offers the
// CUDA device LOCAL_RANK (one process a GPU, as torchrun runs them) or,
// without CUDA, its CPU devices.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace ftd::pool {

struct LaunchEnv {
  std::string master_addr;
  int master_port = 0;
  int world_size = 0;
  int rank = 0;
  int local_rank = -1;  // -1: unset
};

// The contract from `getenv` (the process's, or a test's); nullopt when
// neither MASTER_ADDR nor RANK is set. Errors: INVALID_ARGUMENT naming the
// variable that is missing or not a number in range.
absl::StatusOr<std::optional<LaunchEnv>> ReadLaunchEnv(
    const std::function<const char*(const char*)>& getenv);

// What the contract makes of this daemon.
struct LaunchRole {
  bool coordinator = false;
  std::string rendezvous_address;  // the coordinator's: "0.0.0.0:MASTER_PORT"
  std::string join;                // a worker's: "MASTER_ADDR:api_port"
  std::string worker_name;         // a worker's: "rank-RANK"
  int cuda_device = -1;            // a worker's: LOCAL_RANK where it has CUDA devices
};
// `api_port`: the coordinator's API port (ftd's --address port).
LaunchRole RoleOf(const LaunchEnv& env, int api_port);

}  // namespace ftd::pool
