// Gives the memory that bursts of requests leave free back to the system.
//
// glibc's malloc keeps freed memory in its arenas (one per thread that
// allocated, up to 8 a core): after hundreds of clients the daemon's
// resident size stays where the burst left it, though the memory is free.
// Every `interval`, malloc_trim(0) returns the free pages of every arena.
// It costs a walk of the free lists (about a millisecond for a few hundred
// MiB). Elsewhere than glibc it does nothing.
#pragma once

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ftd::daemon {

class MemoryTrimmer {
 public:
  // interval <= 0: never trims (and starts no thread).
  explicit MemoryTrimmer(absl::Duration interval);
  ~MemoryTrimmer();
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

  // Trims now; whether any memory went back.
  static bool TrimNow();

 private:
  void Run();

  const absl::Duration interval_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ftd::daemon
