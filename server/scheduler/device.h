// A place a job can run: one CUDA device, or one CPU slot, of this daemon
// or of a worker daemon attached to it (server/pool/).
#pragma once

#include <cstdint>
#include <string>

namespace ftd::scheduler {

struct Device {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  // The CUDA device index, or the CPU slot number.
  int index = 0;
  // What an operator reads in `ftctl info`, for example "NVIDIA H100 (80 GiB)".
  std::string description;
  // A CUDA device's memory (0: unknown; CPU slots share the daemon's limit).
  int64_t memory_bytes = 0;
  // The worker daemon it belongs to; empty for this daemon's own.
  std::string host;

  bool local() const { return host.empty(); }
  // The device's name on its own host: "cpu:0", "cuda:1", ...
  std::string local_name() const {
    return (kind == Kind::kCuda ? "cuda:" : "cpu:") + std::to_string(index);
  }
  // Its name in the pool: "cpu:0" here, "worker-1/cuda:1" on a worker.
  std::string name() const { return host.empty() ? local_name() : host + "/" + local_name(); }
};

}  // namespace ftd::scheduler
