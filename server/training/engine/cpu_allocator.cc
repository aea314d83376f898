#include "server/training/engine/cpu_allocator.h"

#include <malloc.h>

#include <cstddef>

#include "absl/strings/str_cat.h"

namespace ftd::training {

absl::Status KeepFreedMemory() {
  // glibc's largest mmap threshold on 64-bit: 4 MiB * sizeof(long).
  constexpr int kMmapThreshold = 32 << 20;
  // Freed memory stays with the process up to this much at the heap's top.
  constexpr int kTrimThreshold = 1 << 30;
  if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) != 1) {
    return absl::InternalError(
        absl::StrCat("mallopt(M_MMAP_THRESHOLD, ", kMmapThreshold, ") failed"));
  }
  if (mallopt(M_TRIM_THRESHOLD, kTrimThreshold) != 1) {
    return absl::InternalError(
        absl::StrCat("mallopt(M_TRIM_THRESHOLD, ", kTrimThreshold, ") failed"));
  }
  // One arena: the job threads' heaps otherwise come from per-thread arenas
  // of 64 MiB mappings, which shrink and grow again.
  if (mallopt(M_ARENA_MAX, 1) != 1) return absl::InternalError("mallopt(M_ARENA_MAX, 1) failed");
  return absl::OkStatus();
}

}  // namespace ftd::training
