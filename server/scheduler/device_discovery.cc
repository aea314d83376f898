#include "server/scheduler/device_discovery.h"

#include <torch/cuda.h>

#include <algorithm>
#include <thread>

namespace ftd::scheduler {

std::vector<Device> DiscoverDevices(int cpu_devices) {
  std::vector<Device> devices;
  const int cuda = static_cast<int>(torch::cuda::device_count());
  for (int i = 0; i < cuda; ++i) {
    devices.push_back({Device::Kind::kCuda, i, "CUDA device " + std::to_string(i)});
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 0; i < cpu_devices; ++i) {
    devices.push_back(
        {Device::Kind::kCpu, i, "CPU slot (" + std::to_string(cores) + " cores on this machine)"});
  }
  return devices;
}

}  // namespace ftd::scheduler
