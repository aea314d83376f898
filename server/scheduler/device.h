// A place a job can run: one CUDA device, or one CPU slot.
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

  // "cpu:0", "cuda:1", ...
  std::string name() const {
    return (kind == Kind::kCuda ? "cuda:" : "cpu:") + std::to_string(index);
  }
};

}  // namespace ftd::scheduler
