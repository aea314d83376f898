#include "server/training/optim/fused_adamw.h"

#include <torch/torch.h>

#include "gtest/gtest.h"

namespace ftd::training {
namespace {

// FusedAdamW against torch::optim::AdamW with clip_grad_norm_: the same
// parameters after 20 steps of the same gradients, with weight decay in one
// group and none in the other, and clipping that bites.
TEST(FusedAdamWTest, MatchesTorchAdamWWithClipping) {
  torch::manual_seed(0);
  std::vector<torch::Tensor> ours, theirs;
  for (auto shape : std::vector<std::vector<int64_t>>{{300, 70}, {70}, {5, 3, 9}}) {
    torch::Tensor p = torch::randn(shape);
    ours.push_back(p.clone());
    theirs.push_back(p.clone());
  }
  FusedAdamW::Options o;
  o.lr = 1e-2;
  FusedAdamW fused({{{ours[0], ours[2]}, 0.1}, {{ours[1]}, 0.0}}, o);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{theirs[0], theirs[2]},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-2).weight_decay(0.1).eps(1e-8)));
  groups.emplace_back(std::vector<torch::Tensor>{theirs[1]},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-2).weight_decay(0).eps(1e-8)));
  torch::optim::AdamW reference(std::move(groups));
  for (int step = 0; step < 20; ++step) {
    const double lr = 1e-2 * (20 - step) / 20.0;
    for (size_t i = 0; i < ours.size(); ++i) {
      torch::Tensor g = torch::randn(ours[i].sizes()) * (step % 3 + 1);
      ours[i].mutable_grad() = g.clone();
      theirs[i].mutable_grad() = g.clone();
    }
    const double norm = fused.GradNorm();
    const double reference_norm = torch::nn::utils::clip_grad_norm_(theirs, 1.0);
    EXPECT_NEAR(norm, reference_norm, 1e-4 * reference_norm);
    ASSERT_LT(FusedAdamW::ClipScale(norm, 1.0), 1.0);  // clipping is exercised
    fused.set_lr(lr);
    for (auto& group : reference.param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    }
    fused.Step(FusedAdamW::ClipScale(norm, 1.0));
    reference.step();
  }
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_LT((ours[i] - theirs[i]).abs().max().item<double>(), 1e-5) << i;
  }
}

TEST(FusedAdamWTest, RemovedParametersAndOnesWithoutGradientsStayPut) {
  torch::Tensor a = torch::ones({4}), b = torch::ones({4}), c = torch::ones({4});
  FusedAdamW::Options o;
  o.lr = 0.1;
  FusedAdamW fused({{{a, b, c}, 0.0}}, o);
  EXPECT_EQ(fused.Remove({b.unsafeGetTensorImpl()}), 1u);
  EXPECT_EQ(fused.size(), 2u);
  a.mutable_grad() = torch::ones({4});
  b.mutable_grad() = torch::ones({4});
  fused.Step();
  EXPECT_TRUE(torch::allclose(a, torch::full({4}, 0.9f)));  // first Adam step: lr * sign
  EXPECT_TRUE(torch::equal(b, torch::ones({4})));           // removed
  EXPECT_TRUE(torch::equal(c, torch::ones({4})));           // no gradient
  fused.ZeroGrad();
  EXPECT_FALSE(a.grad().defined());
}

}  // namespace
}  // namespace ftd::training
