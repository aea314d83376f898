// Dropout with a cheap mask on the CPU.
//
// LibTorch's CPU dropout draws each element's keep/drop from a Bernoulli
// distribution one Mersenne Twister call at a time (about 15 ns an element:
// on the 6-layer model, ~18% of a training step). This one takes a single
// 64-bit seed from LibTorch's default CPU generator (so torch::manual_seed
// still makes runs repeatable) and derives every element's 32-bit uniform
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

// `x` with dropout `p` applied when `training` (x itself otherwise).
// Differentiable in x.
torch::Tensor FastDropout(const torch::Tensor& x, double p, bool training);

// The multiplier mask FastDropout uses on the CPU: 0 or 1 / (1 - p) per element,
// float, shaped `sizes`, from `seed`. Exposed for tests.
torch::Tensor FastDropoutMask(torch::IntArrayRef sizes, double p, uint64_t seed);

}  // namespace ftd::training
