// CheckpointSchedule: when a running job writes a checkpoint between two
// steps, beside the Checkpointer that writes it. Due after a deeper freeze
// (the frozen prefix then stops changing: a resume must not retrain it),
// every `every_steps` steps (a job's checkpoint_every_steps), and once
// `interval_seconds` of training have passed since the last one; never twice
// at one step, never before the first step.
#pragma once

#include <chrono>
#include <cstdint>

namespace ftd::training {

class CheckpointSchedule {
 public:
  using Clock = std::chrono::steady_clock;

  CheckpointSchedule(int64_t every_steps, double interval_seconds)
      : every_steps_(every_steps), interval_seconds_(interval_seconds) {}

  // Starts the interval's clock (the loop's start; a resumed job's checkpoint
  // is at `step`).
  void Start(int64_t step, Clock::time_point now) {
    last_step_ = step;
    last_time_ = now;
  }

  // The layers frozen deepened: the next boundary writes one.
  void Froze() { freeze_since_ = true; }

  // Why a checkpoint is due before the step after `step` ("freeze",
  // "steps", "interval"), or nullptr.
  const char* Due(int64_t step, Clock::time_point now) const {
    if (step == 0 || step == last_step_) return nullptr;
    if (freeze_since_) return "freeze";
    if (every_steps_ > 0 && step % every_steps_ == 0) return "steps";
    if (interval_seconds_ > 0 &&
        std::chrono::duration<double>(now - last_time_).count() >= interval_seconds_) {
      return "interval";
    }
    return nullptr;
  }

  // Whether a checkpoint at `step` would repeat the last one.
  bool Written(int64_t step) const { return step == last_step_; }

  // A checkpoint was attempted at `step` (the interval restarts either way);
  // `ok`: it was written.
  void Saved(int64_t step, bool ok, Clock::time_point now) {
    last_time_ = now;
    freeze_since_ = false;
    if (ok) last_step_ = step;
  }

 private:
  const int64_t every_steps_;
  const double interval_seconds_;
  int64_t last_step_ = -1;
  Clock::time_point last_time_{};
  bool freeze_since_ = false;
};

}  // namespace ftd::training
