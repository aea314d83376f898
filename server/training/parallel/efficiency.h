// Efficiency mode (the AutoFreeze paper's): a job on several devices gives
// devices back to the queue once freezing has made its steps cheap enough
// to run on fewer at the speed it started with.
//
// The monitor records each step's time, and the part of it spent exchanging
// gradients, by frozen depth. Once `measure_steps` steps have run at a new
// depth, it predicts the step on k < N devices from them: the compute part
// spreads over k devices instead of N, and the exchange (a ring all-reduce,
// 2 (k-1)/k of the bytes through each replica) scales with (k-1)/k, none on
// one device:
//
//   t(k) = (t - e) N / k + e ((k-1)/k) / ((N-1)/N)
//
// with t and e the mean step and exchange seconds measured at this depth on
// N devices. The job moves to the fewest k whose t(k) is at most
// `max_step_ratio` times its mean step on all its devices before the first
// freeze (carried in its checkpoints, so that a job moved to fewer devices
// may move again after its next freeze).
// Pure arithmetic: no LibTorch, unit-tested alone.
#pragma once

#include <map>
#include <optional>

namespace ftd::training::parallel {

class EfficiencyMonitor {
 public:
  struct Options {
    double max_step_ratio = 1.0;
    int measure_steps = 8;
  };
  EfficiencyMonitor(int devices, Options options) : devices_(devices), options_(options) {}

  // A step at frozen depth `depth`: `seconds` in all, `exchange_seconds` of
  // them in the gradient exchange.
  void Record(int depth, double seconds, double exchange_seconds);

  // The devices to continue on at `depth` (fewer than now), or nothing:
  // without a freeze, with fewer than measure_steps steps measured at this
  // depth, or when no smaller number keeps the step within the bound.
  std::optional<int> ShrinkTo(int depth) const;

  // The predicted step seconds on `k` devices at `depth` (needs steps there).
  double Predict(int depth, int k) const;

  // The step the bound is relative to: the mean step at depth 0 measured
  // here, or the one a checkpoint carried over from the job's run on more
  // devices (0: none yet).
  double baseline_seconds() const;
  void set_baseline_seconds(double seconds) { restored_baseline_ = seconds; }

 private:
  struct Totals {
    int steps = 0;
    double seconds = 0, exchange_seconds = 0;
  };
  const int devices_;
  const Options options_;
  std::map<int, Totals> by_depth_;
  double restored_baseline_ = 0;
};

}  // namespace ftd::training::parallel
