// CUDA devices' memory: what LibTorch's allocator holds (the daemon's
// metrics) and what a device has (the memory check at submit).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ftd::training {

// Bytes allocated in tensors on CUDA device `index`; nullopt when LibTorch
// was built without CUDA or has no such device.
std::optional<int64_t> CudaMemoryUsed(int index);

struct CudaDeviceInfo {
  std::string name;          // "NVIDIA H100 80GB HBM3"
  int64_t memory_bytes = 0;  // all of the device's memory
};
// CUDA device `index`'s name and memory; nullopt without CUDA, without the
// CUDA runtime's headers at build time, or when the device cannot be read.
std::optional<CudaDeviceInfo> CudaDevice(int index);

}  // namespace ftd::training
