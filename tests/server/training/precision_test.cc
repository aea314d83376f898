#include "server/training/engine/precision.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

namespace ftd::training {
namespace {

using ::testing::HasSubstr;

const torch::Device kCpu(torch::kCPU);
const ProductShape kShape{64, 32, 128};

v1::Hyperparameters Asking(v1::Precision precision) {
  v1::Hyperparameters hp;
  hp.set_precision(precision);
  return hp;
}

TEST(PrecisionTest, AJobGetsWhatItAsksAndAutoWhatIsMeasuredFaster) {
  int measured = 0;
  PrecisionTiming timing{2e-3, 1e-3};
  PrecisionProbe probe([&](const torch::Device&, const ProductShape&) {
    ++measured;
    return timing;
  });
  EXPECT_EQ(ResolvePrecision(Asking(v1::PRECISION_BF16), kCpu, kShape, &probe).precision,
            v1::PRECISION_BF16);
  EXPECT_EQ(ResolvePrecision(Asking(v1::PRECISION_FP32), kCpu, kShape, &probe).precision,
            v1::PRECISION_FP32);
  EXPECT_EQ(measured, 0);  // only auto measures

  const PrecisionChoice automatic =
      ResolvePrecision(Asking(v1::PRECISION_AUTO), kCpu, kShape, &probe);
  EXPECT_EQ(automatic.precision, v1::PRECISION_BF16);
  EXPECT_THAT(automatic.why, HasSubstr("1.00 ms in bf16 against 2.00 ms in fp32"));
  // Measured once per device, threads and shape, then kept.
  timing = {1e-3, 3e-3};
  EXPECT_EQ(ResolvePrecision(Asking(v1::PRECISION_AUTO), kCpu, kShape, &probe).precision,
            v1::PRECISION_BF16);
  EXPECT_EQ(measured, 1);
  const ProductShape other{128, 32, 128};
  EXPECT_EQ(ResolvePrecision(Asking(v1::PRECISION_AUTO), kCpu, other, &probe).precision,
            v1::PRECISION_FP32);
  EXPECT_EQ(measured, 2);
  // Within the margin, fp32 stays.
  timing = {1.05e-3, 1e-3};
  EXPECT_EQ(ResolvePrecision(Asking(v1::PRECISION_AUTO), kCpu, ProductShape{1, 2, 3}, &probe)
                .precision,
            v1::PRECISION_FP32);
  // Without a probe, auto is fp32.
  EXPECT_EQ(ResolvePrecision(Asking(v1::PRECISION_AUTO), kCpu, kShape, nullptr).precision,
            v1::PRECISION_FP32);
}

TEST(PrecisionTest, TheOlderBf16FlagMeansBf16OnAGpuOnly) {
  v1::Hyperparameters hp;
  hp.set_bf16(true);
  EXPECT_EQ(ResolvePrecision(hp, kCpu, kShape, nullptr).precision, v1::PRECISION_FP32);
  EXPECT_EQ(ResolvePrecision(hp, torch::Device(torch::kCUDA, 0), kShape, nullptr).precision,
            v1::PRECISION_BF16);
  EXPECT_EQ(ResolvePrecision(v1::Hyperparameters(), kCpu, kShape, nullptr).precision,
            v1::PRECISION_FP32);
}

TEST(PrecisionTest, TheMeasurementTimesBothPrecisions) {
  const PrecisionTiming t = MeasureMatrixProducts(kCpu, kShape);
  EXPECT_GT(t.fp32_seconds, 0);
  EXPECT_GT(t.bf16_seconds, 0);
}

// The products run in bf16 inside the scope, in fp32 after it, and the
// weights' casts do not outlive it: a forward pass after an in-place update
// of the weights (what the optimizer does) sees the new weights.
TEST(PrecisionTest, AutocastScopeComputesInBf16AndDropsTheWeightsCastsAtItsEnd) {
  torch::manual_seed(0);
  torch::nn::Linear linear(8, 8);
  const torch::Tensor x = torch::randn({4, 8});
  torch::Tensor before;
  {
    AutocastScope scope(true, kCpu);
    before = linear(x);
    EXPECT_EQ(before.scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(linear(x).scalar_type(), torch::kFloat);
  {
    torch::NoGradGuard no_grad;
    linear->weight.mul_(-1);
  }
  const torch::Tensor expected = linear(x).detach();  // fp32, the new weights
  {
    AutocastScope scope(true, kCpu);
    const torch::Tensor after = linear(x);
    EXPECT_TRUE(torch::allclose(after.to(torch::kFloat), expected, 0.05, 0.05));
    EXPECT_FALSE(torch::allclose(after.to(torch::kFloat), before.to(torch::kFloat), 0.05, 0.05));
  }
  // What autocast caches within a scope (the casts of weights that train)
  // is dropped at its end: the next scope casts the updated weights again.
  torch::Tensor cast;
  {
    AutocastScope scope(true, kCpu);
    cast = at::autocast::cached_cast(torch::kBFloat16, linear->weight, torch::kCPU);
    EXPECT_TRUE(cast.is_same(
        at::autocast::cached_cast(torch::kBFloat16, linear->weight, torch::kCPU)));  // cached
  }
  {
    torch::NoGradGuard no_grad;
    linear->weight.mul_(-1);
  }
  {
    AutocastScope scope(true, kCpu);
    const torch::Tensor again =
        at::autocast::cached_cast(torch::kBFloat16, linear->weight, torch::kCPU);
    EXPECT_FALSE(again.is_same(cast));
    EXPECT_TRUE(torch::allclose(again.to(torch::kFloat), -cast.to(torch::kFloat)));
  }
  // Off: nothing changes.
  {
    AutocastScope scope(false, kCpu);
    EXPECT_EQ(linear(x).scalar_type(), torch::kFloat);
  }
}

}  // namespace
}  // namespace ftd::training
