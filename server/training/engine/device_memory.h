// What LibTorch's allocator holds on a CUDA device, for the daemon's metrics.
#pragma once

#include <cstdint>
#include <optional>

namespace ftd::training {

// Bytes allocated in tensors on CUDA device `index`; nullopt when LibTorch
// was built without CUDA or has no such device.
std::optional<int64_t> CudaMemoryUsed(int index);

}  // namespace ftd::training
