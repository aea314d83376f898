// BestWeights on the tiny test BERT: what it keeps, what it writes back, and
// its round trip through a checkpoint's tensors.
#include "server/training/engine/best_weights.h"

#include <torch/torch.h>

#include <map>

#include "gtest/gtest.h"
#include "server/training/model/bert_config.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd::training {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

class BestWeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("model"), 2);
    ASSERT_OK_AND_ASSIGN(config_, BertConfig::FromModelFolder(dir_.Sub("model")));
    torch::manual_seed(1);
    model_ = BertClassifier(config_, 2);
  }
  // Adds `x` to every parameter.
  void Shift(double x) {
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters()) p.add_(x);
  }
  std::map<std::string, torch::Tensor> Values() {
    std::map<std::string, torch::Tensor> out;
    for (auto& item : model_->named_parameters()) out[item.key()] = item.value().clone();
    return out;
  }

  ftd::testing::TempDir dir_;
  BertConfig config_;
  BertClassifier model_{nullptr};
};

// Only the parameters that still train are copied; writing back restores
// them and leaves the frozen ones as they are.
TEST_F(BestWeightsTest, KeepsTheTrainableParametersAndWritesThemBack) {
  for (auto& item : model_->named_parameters()) {
    if (item.key().rfind("bert.embeddings.", 0) == 0) item.value().set_requires_grad(false);
  }
  BestWeights best;
  EXPECT_EQ(best.step(), 0);
  const auto at_best = Values();
  best.Keep(*model_, 12);
  EXPECT_EQ(best.step(), 12);
  int64_t trainable_bytes = 0;
  for (auto& p : model_->parameters()) {
    if (p.requires_grad()) trainable_bytes += p.numel() * 4;
  }
  EXPECT_EQ(best.bytes(), trainable_bytes);

  Shift(0.5);
  best.ApplyTo(*model_);
  for (auto& item : model_->named_parameters()) {
    const torch::Tensor& want = at_best.at(item.key());
    if (item.value().requires_grad()) {
      EXPECT_TRUE(torch::equal(item.value(), want)) << item.key();
    } else {
      EXPECT_TRUE(torch::allclose(item.value(), want + 0.5)) << item.key() << " was not kept";
    }
  }
}

TEST_F(BestWeightsTest, TravelsThroughACheckpointsTensors) {
  BestWeights best;
  const auto at_best = Values();
  best.Keep(*model_, 7);
  std::vector<std::pair<std::string, torch::Tensor>> saved;
  best.AppendTo(saved);
  ASSERT_EQ(saved.size(), at_best.size());
  std::map<std::string, torch::Tensor> tensors(saved.begin(), saved.end());
  tensors["bert.embeddings.word_embeddings.weight"] = torch::zeros({1});  // not ours: ignored
  for (const auto& [name, value] : tensors) {
    if (name.rfind(BestWeights::kPrefix, 0) != 0) continue;
    EXPECT_TRUE(at_best.count(name.substr(5))) << name;
  }

  BestWeights restored;
  ASSERT_OK(restored.Restore(7, tensors, *model_));
  EXPECT_EQ(restored.step(), 7);
  Shift(-1);
  restored.ApplyTo(*model_);
  for (auto& item : model_->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), at_best.at(item.key()))) << item.key();

  // None kept: step 0 and no tensors.
  BestWeights none;
  ASSERT_OK(none.Restore(0, {}, *model_));
  EXPECT_EQ(none.step(), 0);
}

TEST_F(BestWeightsTest, RefusesTensorsThatDoNotFitTheModel) {
  BestWeights best;
  EXPECT_THAT(best.Restore(3, {{"best/bert.pooler.dense.weight", torch::zeros({2, 2})}}, *model_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("another shape")));
  EXPECT_THAT(best.Restore(3, {{"best/no.such.parameter", torch::zeros({2})}}, *model_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a parameter")));
  EXPECT_THAT(best.Restore(3, {}, *model_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no tensors")));
  EXPECT_EQ(best.step(), 0);
}

}  // namespace
}  // namespace ftd::training
