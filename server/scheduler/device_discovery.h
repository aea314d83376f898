// Builds the device pool from what this machine has.
#pragma once

#include <vector>

#include "server/scheduler/device.h"

namespace ftd::scheduler {

// Every CUDA device LibTorch sees, then `cpu_devices` CPU devices.
std::vector<Device> DiscoverDevices(int cpu_devices);

}  // namespace ftd::scheduler
