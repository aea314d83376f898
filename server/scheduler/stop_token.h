// How the scheduler asks a running job to stop. The job polls it at least
// once a training step and returns at the next safe point.
#pragma once

#include <atomic>

namespace ftd::scheduler {

enum class StopReason {
  kNone,
  // A user cancelled the job: it ends CANCELLED.
  kCancelled,
  // The daemon is shutting down: the job is queued again for the next start.
  kShutdown,
};

class StopToken {
 public:
  // The first reason given wins: a cancel during shutdown stays a cancel.
  void RequestStop(StopReason reason) {
    StopReason none = StopReason::kNone;
    reason_.compare_exchange_strong(none, reason);
  }
  bool stop_requested() const { return reason_.load() != StopReason::kNone; }
  StopReason reason() const { return reason_.load(); }

 private:
  std::atomic<StopReason> reason_{StopReason::kNone};
};

}  // namespace ftd::scheduler
