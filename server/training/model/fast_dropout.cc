#include "server/training/model/fast_dropout.h"

#include <ATen/Parallel.h>

#include <cmath>

namespace ftd::training {
namespace {

// Chris Wellons' lowbias32: a bijective 32-bit mix with low avalanche bias.
inline uint32_t Mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Elements [begin, end): element i's uniform is two rounds of the mix over
// i and the seed's halves, so any split of the range gives the same mask.
// Compiled for AVX2 too, chosen at load time where the CPU has it.
__attribute__((target_clones("avx2", "default"))) void FillMask(float* out, int64_t begin,
                                                                int64_t end, uint32_t seed_lo,
                                                                uint32_t seed_hi,
                                                                uint32_t threshold, bool drop_all,
                                                                float keep) {
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t u = Mix32(Mix32(static_cast<uint32_t>(i) + seed_lo) ^ seed_hi);
    out[i] = drop_all || u < threshold ? 0.0f : keep;
  }
}

}  // namespace

torch::Tensor FastDropoutMask(torch::IntArrayRef sizes, double p, uint64_t seed) {
  torch::Tensor mask = torch::empty(sizes, torch::TensorOptions().dtype(torch::kFloat));
  float* out = mask.data_ptr<float>();
  // Drop when the uniform u32 is below round(p * 2^32).
  const double scaled = std::round(p * 4294967296.0);
  const bool drop_all = scaled >= 4294967296.0;
  const uint32_t threshold = drop_all ? 0 : static_cast<uint32_t>(scaled);
  const float keep = static_cast<float>(1.0 / (1.0 - p));
  const uint32_t lo = static_cast<uint32_t>(seed), hi = static_cast<uint32_t>(seed >> 32);
  at::parallel_for(0, mask.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    FillMask(out, begin, end, lo, hi, threshold, drop_all, keep);
  });
  return mask;
}

uint64_t DropoutStream::Next() {
  uint64_t z = seed_ + 0x9E3779B97F4A7C15ull * (++draws_);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

torch::Tensor FastDropout(const torch::Tensor& x, double p, bool training, uint64_t seed) {
  if (!training || p <= 0) return x;
  if (!x.device().is_cpu() || p >= 1 ||
      (x.scalar_type() != torch::kFloat && x.scalar_type() != torch::kBFloat16)) {
    return torch::dropout(x, p, /*train=*/true);
  }
  // Under bf16 autocast the mask is bf16 too, so the product stays bf16.
  if (x.scalar_type() == torch::kBFloat16) {
    return x * FastDropoutMask(x.sizes(), p, seed).to(torch::kBFloat16);
  }
  return x * FastDropoutMask(x.sizes(), p, seed);
}

}  // namespace ftd::training
