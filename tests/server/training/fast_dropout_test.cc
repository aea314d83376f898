#include "server/training/model/fast_dropout.h"

#include <torch/torch.h>

#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace ftd::training {
namespace {

TEST(FastDropoutTest, DropsPOfTheElementsAndScalesTheRest) {
  for (double p : {0.1, 0.5, 0.9}) {
    torch::Tensor mask = FastDropoutMask({1000, 1000}, p, 42);
    const double dropped = (mask == 0).to(torch::kDouble).mean().item<double>();
    // 10^6 draws: the standard error is at most 5e-4.
    EXPECT_NEAR(dropped, p, 2.5e-3) << p;
    torch::Tensor kept = mask.masked_select(mask != 0);
    EXPECT_TRUE(torch::allclose(kept, torch::full_like(kept, 1.0 / (1.0 - p)))) << p;
  }
}

TEST(FastDropoutTest, TheSameSeedGivesTheSameMaskForAnyThreadCount) {
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  torch::Tensor one = FastDropoutMask({257, 1031}, 0.1, 7);
  torch::set_num_threads(2);
  torch::Tensor two = FastDropoutMask({257, 1031}, 0.1, 7);
  torch::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, two));
  EXPECT_FALSE(torch::equal(one, FastDropoutMask({257, 1031}, 0.1, 8)));
}

// Neighbouring elements, rows and successive seeds are not correlated: the
// masks of adjacent positions agree as often as independent draws would.
TEST(FastDropoutTest, MasksLookIndependent) {
  torch::Tensor a = (FastDropoutMask({1 << 20}, 0.5, 1) == 0).to(torch::kDouble);
  torch::Tensor b = (FastDropoutMask({1 << 20}, 0.5, 2) == 0).to(torch::kDouble);
  auto correlation = [](const torch::Tensor& x, const torch::Tensor& y) {
    torch::Tensor xc = x - x.mean(), yc = y - y.mean();
    return ((xc * yc).mean() / (xc.std(false) * yc.std(false))).item<double>();
  };
  const int64_t n = a.numel();
  // 1/sqrt(2^20) ~ 1e-3: five standard errors.
  EXPECT_LT(std::abs(correlation(a.narrow(0, 0, n - 1), a.narrow(0, 1, n - 1))), 5e-3);
  EXPECT_LT(std::abs(correlation(a.narrow(0, 0, n - 1024), a.narrow(0, 1024, n - 1024))), 5e-3);
  EXPECT_LT(std::abs(correlation(a, b)), 5e-3);
}

TEST(FastDropoutTest, IsTheIdentityOutOfTrainingAndFollowsItsSeed) {
  torch::Tensor x = torch::randn({64, 32}).requires_grad_();
  EXPECT_TRUE(torch::equal(FastDropout(x, 0.1, /*training=*/false, 1), x));
  EXPECT_TRUE(torch::equal(FastDropout(x, 0.0, /*training=*/true, 1), x));
  torch::Tensor first = FastDropout(x, 0.3, true, 5);
  torch::Tensor again = FastDropout(x, 0.3, true, 5);
  EXPECT_TRUE(torch::equal(first, again));
  EXPECT_FALSE(torch::equal(first, FastDropout(x, 0.3, true, 6)));
  // The gradient is the mask: 0 where dropped, 1 / (1 - p) where kept.
  first.sum().backward();
  torch::Tensor expected = (first != 0).to(torch::kFloat) / 0.7;
  EXPECT_TRUE(torch::allclose(x.grad(), expected));
}

TEST(DropoutStreamTest, IsAPureFunctionOfItsSeedAndDrawsSoFar) {
  DropoutStream a, b;
  a.Reset(7);
  std::vector<uint64_t> seeds;
  for (int i = 0; i < 5; ++i) seeds.push_back(a.Next());
  EXPECT_EQ(a.draws(), 5u);
  // Restored from (seed, draws), it continues where it was.
  b.Reset(7, 3);
  EXPECT_EQ(b.Next(), seeds[3]);
  EXPECT_EQ(b.Next(), seeds[4]);
  // Distinct seeds a draw, and another stream for another seed.
  EXPECT_EQ(std::set<uint64_t>(seeds.begin(), seeds.end()).size(), seeds.size());
  DropoutStream c;
  c.Reset(8);
  EXPECT_NE(c.Next(), seeds[0]);
}

}  // namespace
}  // namespace ftd::training
