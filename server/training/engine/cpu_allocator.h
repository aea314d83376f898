// Keeps the memory of freed tensors for the next step on the CPU.
//
// A training step allocates and frees the same few hundred activation and
// gradient buffers, many above glibc's threshold for serving an allocation
// with its own mmap (128 KiB, growing with use). Each such buffer is mapped,
// faulted in page by page and unmapped again every step: on the 6-layer
// model that kernel work was a quarter of the step (docs/performance.md,
// "Engine kernels"). KeepFreedMemory() raises the mmap threshold to glibc's
// maximum and stops the heap from returning its top to the system, so freed
// buffers are reused as they are.
#pragma once

#include "absl/status/status.h"

namespace ftd::training {

// Call once at start, before the first tensor. Returns what glibc refused.
absl::Status KeepFreedMemory();

}  // namespace ftd::training
