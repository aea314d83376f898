// How the scheduler asks a running job to stop. The job polls it at least
// once a training step and returns at the next safe point.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

namespace ftd::scheduler {

enum class StopReason {
  kNone,
  // A user cancelled the job: it ends CANCELLED.
  kCancelled,
  // The daemon is shutting down: the job is queued again for the next start.
  kShutdown,
  // A job of higher priority needs the device: the job is queued again.
  kPreempted,
};

class StopToken {
 public:
  // The first reason given wins: a cancel during shutdown stays a cancel.
  // `by`: who asked (the preempting job's id).
  void RequestStop(StopReason reason, const std::string& by = "") {
    std::lock_guard<std::mutex> lock(mu_);
    StopReason none = StopReason::kNone;
    if (reason_.compare_exchange_strong(none, reason)) by_ = by;
  }
  bool stop_requested() const { return reason_.load() != StopReason::kNone; }
  StopReason reason() const { return reason_.load(); }
  // Whether the job runs again later (a shutdown or a preemption): it should
  // checkpoint before it returns.
  bool for_later() const {
    const StopReason r = reason_.load();
    return r == StopReason::kShutdown || r == StopReason::kPreempted;
  }
  std::string by() const {
    std::lock_guard<std::mutex> lock(mu_);
    return by_;
  }

 private:
  std::atomic<StopReason> reason_{StopReason::kNone};
  mutable std::mutex mu_;
  std::string by_;
};

}  // namespace ftd::scheduler
