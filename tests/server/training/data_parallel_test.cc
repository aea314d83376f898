// A job on several devices through the training engine: two CPU replicas
// (threads, a real Gloo process group over loopback) against one, on the
// tiny BERT.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>

#include "absl/strings/str_replace.h"
#include "common/fs_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/training/engine/bert_trainer.h"
#include "server/training/model/safetensors.h"
#include "tests/testing/activation_store.h"
#include "tests/testing/fake_training_context.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd::training {
namespace {

using ::ftd::testing::StatusIs;
using FakeContext = ftd::testing::FakeTrainingContext;
using ::testing::HasSubstr;

// How far apart the weights of a run on two replicas and of one on one
// device may be after 16 AdamW steps (learning rate 1e-3), as the root mean
// square over all 20,290 weights. The replicas add up the same gradients in
// another order: float rounding, which AdamW's normalised update carries
// into the weights, fully where a gradient is near zero (a rounding can turn
// its sign). Measured: 1.1e-5 (at most 7e-4, 27 weights above 1e-4); with
// the freeze and the cache 1.5e-5. Replicas that skip the all-reduce (each
// trains on its half) differ by 2.4e-3 and 4.4e-3, 200 times more.
constexpr double kTolerance = 5e-5;

struct WeightDifference {
  int64_t weights = 0;
  double max = 0;
  double rms = 0;     // root mean square over every weight
  int64_t above = 0;  // weights that differ by more than 1e-4
};

// How two exported models' weights differ.
WeightDifference CompareWeights(const std::string& a_dir, const std::string& b_dir) {
  auto a = SafetensorsFile::Open(a_dir + "/model.safetensors");
  auto b = SafetensorsFile::Open(b_dir + "/model.safetensors");
  EXPECT_TRUE(a.ok() && b.ok());
  if (!a.ok() || !b.ok()) return {0, INFINITY, INFINITY, 0};
  WeightDifference d;
  double sum = 0;
  int64_t n = 0;
  EXPECT_EQ((*a)->tensors().size(), (*b)->tensors().size());
  for (const TensorInfo& t : (*a)->tensors()) {
    const TensorInfo* u = (*b)->Find(t.name);
    EXPECT_NE(u, nullptr) << t.name;
    if (u == nullptr || t.dtype != DType::kF32) continue;
    std::string_view x = (*a)->Data(t), y = (*b)->Data(*u);
    EXPECT_EQ(x.size(), y.size()) << t.name;
    const auto* p = reinterpret_cast<const float*>(x.data());
    const auto* q = reinterpret_cast<const float*>(y.data());
    for (size_t i = 0; i < std::min(x.size(), y.size()) / sizeof(float); ++i) {
      const double e = std::fabs(static_cast<double>(p[i]) - q[i]);
      d.max = std::max(d.max, e);
      sum += e * e;
      ++n;
      if (e > 1e-4) ++d.above;
    }
  }
  d.rms = n > 0 ? std::sqrt(sum / n) : 0;
  d.weights = n;
  std::cerr << "weights differ by at most " << d.max << ", rms " << d.rms << ", " << d.above
            << " of " << n << " by more than 1e-4\n";
  return d;
}

class DataParallelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("model"));
    // Without dropout, one replica and two draw no masks, and their runs
    // compute the same thing (with dropout each replica draws its own).
    ASSERT_OK_AND_ASSIGN(std::string config, ReadFile(dir_.Sub("model/config.json")));
    ftd::testing::WriteFile(
        dir_.Sub("model/config.json"),
        absl::StrReplaceAll(
            config,
            {{"\"hidden_dropout_prob\": 0.1", "\"hidden_dropout_prob\": 0.0"},
             {"\"attention_probs_dropout_prob\": 0.1", "\"attention_probs_dropout_prob\": 0.0"}}));
    ftd::testing::WriteSentimentCsv(dir_.Sub("train.csv"), 256, 1);
    ftd::testing::WriteSentimentCsv(dir_.Sub("valid.csv"), 64, 2);
    spec_ = ftd::testing::TinyJobSpec(dir_.Sub("model"), dir_.Sub("train.csv"),
                                      dir_.Sub("valid.csv"), /*epochs=*/1,
                                      /*learning_rate=*/1e-3);
    spec_.mutable_hyperparameters()->set_evaluations_per_epoch(1);
    spec_.set_export_weights(v1::EXPORT_WEIGHTS_FINAL);
  }

  BertTrainer::Options Options(storage::ActivationStore* store = nullptr) {
    BertTrainer::Options options;
    options.cpu_threads = 1;
    options.activation_store = store;
    options.checkpoint_interval_seconds = 0;
    options.collective_timeout_seconds = 20;
    return options;
  }

  ftd::testing::TempDir dir_;
  v1::JobSpec spec_;
};

TEST_F(DataParallelTest, TwoReplicasWithHalfTheBatchEachEqualOneWithTheWholeBatch) {
  BertTrainer trainer(Options());
  FakeContext one(spec_, dir_.Sub("one"), {"cpu:0"});
  ASSERT_OK_AND_ASSIGN(v1::JobResult a, trainer.Train(one));
  FakeContext two(spec_, dir_.Sub("two"), {"cpu:0", "cpu:1"});
  ASSERT_OK_AND_ASSIGN(v1::JobResult b, trainer.Train(two));

  const WeightDifference difference = CompareWeights(dir_.Sub("one/model"), dir_.Sub("two/model"));
  EXPECT_LE(difference.rms, kTolerance);
  // The same steps, losses and evaluation, reported once (by replica 0).
  ASSERT_EQ(one.progress_.size(), 16u);
  ASSERT_EQ(two.progress_.size(), 16u);
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(two.progress_[i].step(), one.progress_[i].step());
    EXPECT_NEAR(two.progress_[i].loss(), one.progress_[i].loss(), 1e-5) << i;
  }
  ASSERT_EQ(b.evaluations_size(), 1);
  EXPECT_NEAR(b.evaluations(0).loss(), a.evaluations(0).loss(), 1e-4);
  // What the replicas exchanged: every weight's gradient each step (and a
  // few numbers of the step).
  EXPECT_EQ(b.metrics().at("replicas"), 2);
  const double per_step = b.metrics().at("allreduce_bytes") / 16;
  EXPECT_GE(per_step, 4.0 * difference.weights);
  EXPECT_LE(per_step, 4.0 * difference.weights + 4096);
  EXPECT_EQ(a.metrics().count("allreduce_bytes"), 0u);
}

// A freeze in the middle of the run (a linear schedule from the start: the
// first layer at half of training, step 24 of 48), with the activation
// cache: each replica reads and writes the entries of its rows, and the
// frozen layers leave the exchange.
TEST_F(DataParallelTest, TheSameWithAFreezeAndTheCacheAndFrozenLayersSendNothing) {
  spec_.mutable_hyperparameters()->set_epochs(3);
  auto* linear = spec_.mutable_freeze_policy()->mutable_linear();
  linear->set_freeze_start(0);
  linear->set_freeze_level(1);
  linear->set_evaluations_per_epoch(4);
  spec_.mutable_activation_cache()->set_enabled(true);
  spec_.mutable_activation_cache()->set_dtype(v1::ActivationCache::DTYPE_FP32);

  ASSERT_OK_AND_ASSIGN(ftd::testing::TestActivationStore store_a,
                       ftd::testing::OpenActivationStore(dir_.Sub("db-a")));
  BertTrainer one_device(Options(store_a.store.get()));
  FakeContext one(spec_, dir_.Sub("one"), {"cpu:0"});
  ASSERT_OK_AND_ASSIGN(v1::JobResult a, one_device.Train(one));
  ASSERT_OK_AND_ASSIGN(ftd::testing::TestActivationStore store_b,
                       ftd::testing::OpenActivationStore(dir_.Sub("db-b")));
  BertTrainer two_devices(Options(store_b.store.get()));
  FakeContext two(spec_, dir_.Sub("two"), {"cpu:0", "cpu:1"});
  ASSERT_OK_AND_ASSIGN(v1::JobResult b, two_devices.Train(two));

  ASSERT_GE(a.freeze_timeline_size(), 1);
  ASSERT_EQ(b.freeze_timeline_size(), a.freeze_timeline_size());
  for (int i = 0; i < a.freeze_timeline_size(); ++i) {
    EXPECT_EQ(b.freeze_timeline(i).step(), a.freeze_timeline(i).step());
    EXPECT_EQ(b.freeze_timeline(i).frozen_after(), a.freeze_timeline(i).frozen_after());
  }
  EXPECT_LE(CompareWeights(dir_.Sub("one/model"), dir_.Sub("two/model")).rms, kTolerance);
  // The cache served the second epoch's rows on both, whichever replica
  // had stored them: the job's counts are one device's.
  const v1::CacheStats want = one.CacheTotals(), got = two.CacheTotals();
  EXPECT_GT(want.hits(), 0);
  EXPECT_EQ(got.examples(), want.examples());
  EXPECT_EQ(got.hits(), want.hits());
  EXPECT_EQ(got.misses(), want.misses());
  // After the freeze a step exchanges fewer bytes: the embeddings and the
  // first layer no longer send theirs. One device exchanges none.
  ASSERT_EQ(two.steps_.size(), 48u);
  const int64_t freeze_step = a.freeze_timeline(0).step();
  ASSERT_GT(freeze_step, 1);
  const int64_t before = two.steps_.front().allreduce_bytes;
  EXPECT_GT(before, 0);
  // (The position embeddings alone are 32 x 32 floats.)
  for (int64_t i = 0; i < 48; ++i) {
    if (i < freeze_step) {
      EXPECT_GE(two.steps_[i].allreduce_bytes, before) << i;
    } else {
      EXPECT_LE(two.steps_[i].allreduce_bytes, before - 32 * 32 * 4) << i;
    }
  }
  for (const StepStats& s : one.steps_) EXPECT_EQ(s.allreduce_bytes, 0);
}

// Replicas stop together at replica 0's step, write one checkpoint, and a
// resume on two devices continues every replica's dropout stream: the
// weights are those of an uninterrupted run, bit for bit. A resume on one
// device continues the same run too.
TEST_F(DataParallelTest, StopsTogetherCheckpointsAndResumesBitForBit) {
  // Dropout on: each replica's own stream must survive the checkpoint.
  ftd::testing::WriteTinyBert(dir_.Sub("model"));
  spec_.mutable_hyperparameters()->set_epochs(2);
  spec_.mutable_hyperparameters()->set_checkpoint_every_steps(5);
  BertTrainer trainer(Options());

  FakeContext whole(spec_, dir_.Sub("whole"), {"cpu:0", "cpu:1"});
  whole.checkpoint_dir_ = dir_.Sub("whole/checkpoints");
  ASSERT_OK(trainer.Train(whole).status());

  FakeContext part(spec_, dir_.Sub("part"), {"cpu:0", "cpu:1"});
  part.checkpoint_dir_ = dir_.Sub("part/checkpoints");
  part.stop_after_ = 13;
  part.stop_for_later_ = true;
  EXPECT_THAT(trainer.Train(part), StatusIs(absl::StatusCode::kCancelled, HasSubstr("stopped")));
  EXPECT_EQ(part.progress_.size(), 13u);
  FakeContext rest(spec_, dir_.Sub("part"), {"cpu:0", "cpu:1"});
  rest.checkpoint_dir_ = dir_.Sub("part/checkpoints");
  ASSERT_OK(trainer.Train(rest).status());
  ASSERT_EQ(rest.resumed_.size(), 1u);
  EXPECT_EQ(rest.resumed_[0].step(), 13);
  ASSERT_OK_AND_ASSIGN(std::string want, ReadFile(dir_.Sub("whole/model/model.safetensors")));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(dir_.Sub("part/model/model.safetensors")));
  EXPECT_TRUE(want == got) << "the resumed job's weights differ";

  // The same checkpoint resumes on one device (the run is the same run).
  FakeContext again(spec_, dir_.Sub("again"), {"cpu:0", "cpu:1"});
  again.checkpoint_dir_ = dir_.Sub("again/checkpoints");
  again.stop_after_ = 13;
  again.stop_for_later_ = true;
  EXPECT_THAT(trainer.Train(again), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  FakeContext alone(spec_, dir_.Sub("again"), {"cpu:0"});
  alone.checkpoint_dir_ = dir_.Sub("again/checkpoints");
  ASSERT_OK(trainer.Train(alone).status());
  ASSERT_EQ(alone.resumed_.size(), 1u);
  EXPECT_EQ(alone.progress_.front().step(), 14);
}

// Efficiency mode: after the freeze (a linear schedule from the start: the
// first layer at step 16 of 32) and `measure_steps` steps at the new depth, the job asks to
// continue on one device and stops with a checkpoint; resumed on one device
// it finishes, and its weights are those of any 2-device run stopped at that
// step and resumed on one device.
TEST_F(DataParallelTest, EfficiencyModeContinuesOnFewerDevicesFromACheckpoint) {
  ftd::testing::WriteTinyBert(dir_.Sub("model"));  // with dropout
  spec_.mutable_hyperparameters()->set_epochs(2);
  auto* linear = spec_.mutable_freeze_policy()->mutable_linear();
  linear->set_freeze_start(0);
  linear->set_freeze_level(1);
  linear->set_evaluations_per_epoch(4);
  auto* efficiency = spec_.mutable_efficiency();
  efficiency->set_enabled(true);
  efficiency->set_max_step_ratio(1000);  // any step is cheap enough: the test wants the move
  efficiency->set_measure_steps(2);
  BertTrainer trainer(Options());

  FakeContext two(spec_, dir_.Sub("a"), {"cpu:0", "cpu:1"});
  two.checkpoint_dir_ = dir_.Sub("a/checkpoints");
  EXPECT_THAT(trainer.Train(two),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("continue on fewer devices")));
  EXPECT_EQ(two.continue_on_, 1);
  std::vector<v1::FreezeDecision> freezes;
  for (const auto& e : two.events_) {
    if (e.has_freeze_decision() && e.freeze_decision().frozen_after() > 0) {
      freezes.push_back(e.freeze_decision());
    }
  }
  ASSERT_FALSE(freezes.empty());
  const int64_t stop_step = static_cast<int64_t>(two.progress_.size());
  EXPECT_EQ(stop_step, freezes.front().step() + 2);  // two steps measured at the new depth
  EXPECT_THAT(two.logs(), HasSubstr("efficiency mode: with 1 layer frozen a step on 1 device"));
  FakeContext one(spec_, dir_.Sub("a"), {"cpu:0"});
  one.checkpoint_dir_ = dir_.Sub("a/checkpoints");
  ASSERT_OK(trainer.Train(one).status());
  ASSERT_EQ(one.resumed_.size(), 1u);
  EXPECT_EQ(one.resumed_[0].step(), stop_step);

  // The reference: 2 devices stopped for later at that step, 1 to the end.
  spec_.mutable_efficiency()->set_enabled(false);
  FakeContext part(spec_, dir_.Sub("b"), {"cpu:0", "cpu:1"});
  part.checkpoint_dir_ = dir_.Sub("b/checkpoints");
  part.stop_after_ = static_cast<int>(stop_step);
  part.stop_for_later_ = true;
  EXPECT_THAT(trainer.Train(part), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  FakeContext rest(spec_, dir_.Sub("b"), {"cpu:0"});
  rest.checkpoint_dir_ = dir_.Sub("b/checkpoints");
  ASSERT_OK(trainer.Train(rest).status());
  ASSERT_OK_AND_ASSIGN(std::string want, ReadFile(dir_.Sub("b/model/model.safetensors")));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(dir_.Sub("a/model/model.safetensors")));
  EXPECT_TRUE(want == got) << "the job moved to one device is not the 1-device resume";

  // A daemon that declines keeps the job on its devices to the end.
  spec_.mutable_efficiency()->set_enabled(true);
  FakeContext declined(spec_, dir_.Sub("c"), {"cpu:0", "cpu:1"});
  declined.checkpoint_dir_ = dir_.Sub("c/checkpoints");
  declined.accept_continue_on_ = false;
  ASSERT_OK(trainer.Train(declined).status());
}

// A replica that cannot run fails the job with its own reason, within the
// collective timeout, and the others do not wait for ever.
TEST_F(DataParallelTest, AFailingReplicaFailsTheJobWithItsReason) {
  BertTrainer::Options options = Options();
  options.collective_timeout_seconds = 3;
  BertTrainer trainer(options);
  FakeContext context(spec_, dir_.Sub("out"), {"cpu:0", "cuda:7"});
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<v1::JobResult> result = trainer.Train(context);
  EXPECT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("replica 1 on cuda:7"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("out/model")));
}

}  // namespace
}  // namespace ftd::training
