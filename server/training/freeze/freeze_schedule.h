// FreezeSchedule: freezing by the clock of training rather than by the
// gradients, as other systems do; measured beside AutoFreeze.
//
//  - Geometric (PipeTransformer, He et al. 2021): during epoch e (1-based),
//    ceil(L * (1 - (1 - alpha)^(e - 1))) encoder layers are frozen: none in
//    the first epoch, then a fraction alpha of those still training at each
//    epoch start.
//  - Linear (MosaicML Composer's LayerFreezing): nothing until a fraction
//    freeze_start of training, then a fraction of the layers growing linearly
//    to freeze_level at the end: floor(L * freeze_level * (t - start) /
//    (1 - start)) layers at progress t. Composer applies it at each epoch's
//    end; ftd at each decision point.
// The last encoder layer never freezes. A plain class: no LibTorch.
#pragma once

namespace ftd::training {

class FreezeSchedule {
 public:
  static FreezeSchedule Geometric(int num_layers, double alpha);
  static FreezeSchedule Linear(int num_layers, double freeze_start, double freeze_level);

  // Layers frozen during `epoch` (1-based) at `progress`, the fraction of
  // all training steps done (0..1).
  int Depth(int epoch, double progress) const;

 private:
  enum class Kind { kGeometric, kLinear };
  FreezeSchedule(Kind kind, int num_layers, double a, double b)
      : kind_(kind), num_layers_(num_layers), a_(a), b_(b) {}

  Kind kind_;
  int num_layers_;
  double a_, b_;
};

}  // namespace ftd::training
