#include "server/training/engine/device_memory.h"

#include <torch/torch.h>

#if defined(FTD_WITH_C10_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#if __has_include(<cuda_runtime_api.h>)
#include <cuda_runtime_api.h>
#define FTD_WITH_CUDA_RUNTIME 1
#endif
#endif

namespace ftd::training {

std::optional<int64_t> CudaMemoryUsed(int index) {
#if defined(FTD_WITH_C10_CUDA)
  if (!torch::cuda::is_available() || index < 0 ||
      index >= static_cast<int>(torch::cuda::device_count())) {
    return std::nullopt;
  }
  // Element 0 of each statistic is the aggregate over pool types, in 1.13 and 2.x.
  const auto stats =
      c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  return static_cast<int64_t>(stats.allocated_bytes[0].current);
#else
  (void)index;
  return std::nullopt;
#endif
}

std::optional<CudaDeviceInfo> CudaDevice(int index) {
#if defined(FTD_WITH_CUDA_RUNTIME)
  if (!torch::cuda::is_available() || index < 0 ||
      index >= static_cast<int>(torch::cuda::device_count())) {
    return std::nullopt;
  }
  cudaDeviceProp properties;
  if (cudaGetDeviceProperties(&properties, index) != cudaSuccess) return std::nullopt;
  return CudaDeviceInfo{properties.name, static_cast<int64_t>(properties.totalGlobalMem)};
#else
  (void)index;
  return std::nullopt;
#endif
}

}  // namespace ftd::training
