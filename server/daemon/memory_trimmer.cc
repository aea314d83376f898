#include "server/daemon/memory_trimmer.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ftd::daemon {

MemoryTrimmer::MemoryTrimmer(absl::Duration interval) : interval_(interval) {
  if (interval_ > absl::ZeroDuration()) thread_ = std::thread([this] { Run(); });
}

MemoryTrimmer::~MemoryTrimmer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool MemoryTrimmer::TrimNow() {
#if defined(__GLIBC__)
  return malloc_trim(0) == 1;
#else
  return false;
#endif
}

void MemoryTrimmer::Run() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const absl::Time until = absl::Now() + interval_;
    while (!stopping_ && absl::Now() < until) {
      mu_.AwaitWithDeadline(absl::Condition(&stopping_), until);
    }
    if (stopping_) break;
    mu_.Unlock();
    TrimNow();
    mu_.Lock();
  }
}

}  // namespace ftd::daemon
