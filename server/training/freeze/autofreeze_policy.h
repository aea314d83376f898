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

  // `num_layers` encoder layers; `percentile` in (0, 100]; `initially_frozen`
  // layers start frozen.
  AutoFreezePolicy(int num_layers, double percentile, int initially_frozen = 0);

  // The number of frozen layers (layers 0 .. frozen()-1).
  int frozen() const { return frozen_; }
  int num_layers() const { return num_layers_; }

  // One decision point. `gradient_norms` has one entry per encoder layer;
  // entries of frozen layers are ignored.
  Decision Decide(const std::vector<double>& gradient_norms);

 private:
  const int num_layers_;
  const double percentile_;
  int frozen_;
  bool has_baseline_ = false;
  std::vector<double> previous_;
};

}  // namespace ftd::training
