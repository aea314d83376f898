// Dropout with a cheap mask on the CPU.
//
// LibTorch's CPU dropout draws each element's keep/drop from a Bernoulli
// distribution one Mersenne Twister call at a time (about 15 ns an element:
// on the 6-layer model, ~18% of a training step). This one takes a single
// 64-bit seed for each mask (from the model's DropoutStream: a job's own
// stream, not the process-wide generator, so concurrent jobs stay
// repeatable and a checkpoint restores it as two numbers) and derives every
// element's 32-bit uniform
// from a counter-based hash of (seed, index): the same mask for any number
// of threads, vectorised (AVX2 where the CPU has it). An element is dropped
// when its uniform is below round(p * 2^32), so the drop probability is p to
// within 2^-33. A tensor of more than 2^32 elements would repeat the stream. Kept elements are
// scaled by 1 / (1 - p), as torch's dropout.
//
// Other devices and dtypes use torch::dropout (CUDA's is fused already).
#pragma once

#include <torch/torch.h>

namespace ftd::training {

// The seeds of one model's dropout masks: the i-th mask's seed is a
// SplitMix64 hash of (seed, i). Not thread-safe (one training thread).
class DropoutStream {
 public:
  void Reset(uint64_t seed, uint64_t draws = 0) {
    seed_ = seed;
    draws_ = draws;
  }
  uint64_t Next();
  uint64_t seed() const { return seed_; }
  uint64_t draws() const { return draws_; }

 private:
  uint64_t seed_ = 0;
  uint64_t draws_ = 0;
};

// `x` with dropout `p` applied when `training` (x itself otherwise), the
// mask from `seed`. Differentiable in x.
torch::Tensor FastDropout(const torch::Tensor& x, double p, bool training, uint64_t seed);

// The multiplier mask FastDropout uses on the CPU: 0 or 1 / (1 - p) per element,
// float, shaped `sizes`, from `seed`. Exposed for tests.
torch::Tensor FastDropoutMask(torch::IntArrayRef sizes, double p, uint64_t seed);

}  // namespace ftd::training
