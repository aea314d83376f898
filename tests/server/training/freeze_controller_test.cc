// The freeze controller on the tiny test BERT: the frozen prefix leaves the
// optimizer, stops taking gradients, and AutoFreeze decides from the sums.
#include "server/training/engine/freeze_controller.h"

#include <torch/torch.h>

#include "gtest/gtest.h"
#include "server/training/model/bert_config.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd::training {
namespace {

class FreezeControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("model"), 3);
    ASSERT_OK_AND_ASSIGN(config_, BertConfig::FromModelFolder(dir_.Sub("model")));
    torch::manual_seed(1);
    model_ = BertClassifier(config_, 2);
  }
  size_t Trainable() {
    size_t n = 0;
    for (auto& p : model_->parameters()) n += p.requires_grad();
    return n;
  }
  // One backward pass of a fixed loss, so every parameter has a gradient.
  void Backward() {
    torch::Tensor ids = torch::tensor({{2, 5, 6, 3}, {2, 6, 5, 3}}, torch::kLong);
    torch::Tensor mask = torch::ones_like(ids);
    model_->forward(ids, mask).pow(2).sum().backward();
  }

  ftd::testing::TempDir dir_;
  BertConfig config_;
  BertClassifier model_{nullptr};
};

TEST_F(FreezeControllerTest, AStaticPrefixIsOutOfTheGroupsFromTheStart) {
  FreezeController controller(*model_, std::nullopt, std::nullopt, 2);
  const size_t all = model_->parameters().size();
  std::vector<FusedAdamW::Group> groups = controller.TrainableGroups(0.01);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_DOUBLE_EQ(groups[0].weight_decay, 0.01);
  EXPECT_DOUBLE_EQ(groups[1].weight_decay, 0.0);
  const size_t trained = groups[0].params.size() + groups[1].params.size();
  EXPECT_EQ(trained, Trainable());
  // Embeddings (3 tables + LayerNorm's 2) and two layers of 16 tensors each.
  EXPECT_EQ(all - trained, 5u + 2 * 16);
  EXPECT_LT(controller.TrainableFraction(), 1.0);
  EXPECT_FALSE(controller.decides());
}

TEST_F(FreezeControllerTest, AScheduleFreezesThroughTheOptimizer) {
  FreezeController controller(*model_, std::nullopt, FreezeSchedule::Geometric(3, 0.5), 0);
  FusedAdamW optimizer(controller.TrainableGroups(0.0), FusedAdamW::Options{});
  const size_t before = optimizer.size();
  EXPECT_TRUE(controller.decides());
  EXPECT_FALSE(controller.Decide(optimizer, 1, 0.0).changed());
  Backward();
  FreezeChange change = controller.Decide(optimizer, 2, 0.5);  // ceil(3 * 0.5) = 2
  EXPECT_TRUE(change.changed());
  EXPECT_EQ(change.frozen_before, 0);
  EXPECT_EQ(change.frozen_after, 2);
  EXPECT_FALSE(change.decision.has_value());
  EXPECT_EQ(optimizer.size(), before - (5 + 2 * 16));
  EXPECT_FALSE(model_->bert->embeddings->word_embeddings->weight.requires_grad());
  EXPECT_FALSE(model_->bert->embeddings->word_embeddings->weight.grad().defined());
  EXPECT_TRUE(model_->layer(2).output->dense->weight.requires_grad());
}

TEST_F(FreezeControllerTest, AutoFreezeDecidesFromTheAccumulatedGradients) {
  FreezeController controller(*model_, AutoFreezePolicy(3, 50), std::nullopt, 0);
  FusedAdamW optimizer(controller.TrainableGroups(0.0), FusedAdamW::Options{});
  Backward();
  controller.Accumulate();
  FreezeChange first = controller.Decide(optimizer, 1, 0.1);
  ASSERT_TRUE(first.decision.has_value());
  EXPECT_TRUE(first.decision->baseline);
  // The same gradients again: every change rate is 0 and so is their
  // median, so the first layer is at the threshold and nothing freezes.
  controller.Accumulate();
  FreezeChange second = controller.Decide(optimizer, 1, 0.2);
  ASSERT_TRUE(second.decision.has_value());
  EXPECT_EQ(second.decision->change_rates.size(), 3u);
  for (double eta : second.decision->change_rates) EXPECT_NEAR(eta, 0.0, 1e-6);
  EXPECT_EQ(second.frozen_after, 0);
}

}  // namespace
}  // namespace ftd::training
