// AutoFreezePolicy: decides when a prefix of encoder layers has stopped
// learning (Liu, Agarwal, Venkataraman, "AutoFreeze: Automatically Freezing
// Model Blocks to Accelerate Fine-tuning", 2021), as the authors implement it.
//
// At each decision point the trainer passes G(l): for every encoder layer,
// the L1 norm of its gradient summed over the steps since the last decision
// point (raw, before clipping). For each layer l still trainable,
//   eta(l) = |G_prev(l) - G(l)| / G_prev(l)       (0 where G_prev(l) is 0).
// The threshold is the p-th percentile of eta over the trainable layers
// (linear interpolation, as numpy.percentile computes it). Scanning from the
// first trainable layer, the first layer whose eta is at or above the
// threshold becomes the first trainable layer; every layer before it freezes.
// The first decision point only records the baseline. The frozen set is
// always a prefix, never shrinks, and never takes the last encoder layer.
//
// Options beside the authors' rule (all off by default):
//  - freeze_through_first_above: the first layer at or above the threshold
//    freezes too (PipeTransformer's reading of the rule);
//  - max_layers_per_decision: one decision freezes at most this many layers;
//  - smoothing s in [0, 1): G is an exponential moving average over decision
//    points, G_s = s * G_s(prev) + (1 - s) * G, and eta compares successive G_s;
//  - keep_trainable k >= 1: the last k encoder layers never freeze (the
//    authors' rule keeps the last one);
//  - start_fraction f in [0, 1): no layer freezes before that fraction of the
//    training steps (the points before it still update the change rates).
//
// A plain class fed with numbers: no LibTorch. Not thread-safe.
#pragma once

#include <vector>

namespace ftd::training {

// numpy.percentile(values, p) with linear interpolation; p in [0, 100].
// 0 for no values.
double Percentile(std::vector<double> values, double p);

class AutoFreezePolicy {
 public:
  struct Decision {
    // This point only recorded the baseline (the first decision point).
    bool baseline = false;
    int frozen_before = 0;
    int frozen_after = 0;
    // eta for every encoder layer; 0 for layers frozen before this point.
    std::vector<double> change_rates;
    double threshold = 0;
  };

  struct Options {
    double percentile = 50;  // (0, 100]
    bool freeze_through_first_above = false;
    int max_layers_per_decision = 0;  // 0: no cap
    double smoothing = 0;             // [0, 1)
    int keep_trainable = 1;           // >= 1
    double start_fraction = 0;        // [0, 1)
  };

  // `num_layers` encoder layers; `initially_frozen` layers start frozen.
  AutoFreezePolicy(int num_layers, Options options, int initially_frozen = 0);
  AutoFreezePolicy(int num_layers, double percentile, int initially_frozen = 0);

  // The number of frozen layers (layers 0 .. frozen()-1).
  int frozen() const { return frozen_; }
  // The most layers it ever freezes.
  int max_frozen() const;
  int num_layers() const { return num_layers_; }

  // One decision point at `progress`, the fraction of the training steps
  // done. `gradient_norms` has one entry per encoder layer; entries of
  // frozen layers are ignored.
  Decision Decide(const std::vector<double>& gradient_norms, double progress = 1.0);

  // What the next decision depends on, for a checkpoint.
  struct State {
    int frozen = 0;
    bool has_baseline = false;
    std::vector<double> previous;  // one per encoder layer once has_baseline
  };
  State state() const { return State{frozen_, has_baseline_, previous_}; }
  // Continues from a saved state. False (and no change) when it does not
  // fit this policy's layers.
  bool Restore(const State& state);

 private:
  const int num_layers_;
  const Options options_;
  int frozen_;
  bool has_baseline_ = false;
  std::vector<double> previous_;
};

}  // namespace ftd::training
