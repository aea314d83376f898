#pragma once

#include <ATen/autocast_mode.h>

namespace ftd::training {

// Whether LibTorch's CPU autocast is on in this thread: the fused kernels
// leave such calls to LibTorch, which casts their inputs.
inline bool CpuAutocastEnabled() {
#if TORCH_VERSION_MAJOR >= 2
  return at::autocast::is_autocast_enabled(at::kCPU);
#else
  return at::autocast::is_cpu_enabled();
#endif
}

}  // namespace ftd::training
