// The data-parallel room on real c10d Gloo process groups: replicas are
// threads of this test, meeting in an in-process store over loopback.
#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/training/parallel/efficiency.h"
#include "server/training/parallel/gradient_reducer.h"
#include "server/training/parallel/replica_group.h"
#include "server/training/parallel/replica_shard.h"
#include "server/training/parallel/step_agreement.h"
#include "tests/testing/status_matchers.h"

namespace ftd::training::parallel {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

// Runs `body(group)` on `world` replicas, each on a thread with a group
// joined through one store.
void OnReplicas(int world, const std::function<void(ReplicaGroup&)>& body,
                std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  Rendezvous rendezvous;
  rendezvous.store = MakeLocalStore();
  rendezvous.store->setTimeout(timeout);
  rendezvous.world_size = world;
  rendezvous.timeout = timeout;
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      Rendezvous mine = rendezvous;
      mine.rank = rank;
      absl::StatusOr<std::unique_ptr<ReplicaGroup>> group =
          ReplicaGroup::Join(mine, torch::Device(torch::kCPU));
      ASSERT_OK(group.status());
      body(**group);
    });
  }
  for (std::thread& t : threads) t.join();
}

TEST(ReplicaShardTest, TheSharesAreTheBatchInOrderAsEvenAsCanBe) {
  for (int replicas : {1, 2, 3, 4}) {
    for (int64_t count : {0, 1, 5, 16, 31}) {
      int64_t next = 0;
      for (int r = 0; r < replicas; ++r) {
        const RowRange share = ReplicaRows(count, r, replicas);
        EXPECT_EQ(share.begin, next) << count << " rows, replica " << r << " of " << replicas;
        EXPECT_GE(share.count, count / replicas);
        EXPECT_LE(share.count, count / replicas + 1);
        next += share.count;
      }
      EXPECT_EQ(next, count);
    }
  }
  EXPECT_EQ(ReplicaRows(5, 0, 2).count, 3);
  EXPECT_EQ(ReplicaRows(5, 1, 2).begin, 3);
}

TEST(ReplicaGroupTest, AGroupOfOneNeedsNoProcessGroup) {
  ReplicaGroup alone;
  std::vector<torch::Tensor> tensors = {torch::ones({3})};
  ASSERT_OK(alone.AllReduceSum(tensors));
  EXPECT_TRUE(torch::equal(tensors[0], torch::ones({3})));
  EXPECT_EQ(alone.allreduce_bytes(), 0);
}

TEST(ReplicaGroupTest, AllReduceSumsAndBroadcastCopiesReplicaZeros) {
  OnReplicas(3, [](ReplicaGroup& group) {
    std::vector<torch::Tensor> tensors = {torch::full({4}, group.rank() + 1.0),
                                          torch::full({2, 2}, 10.0 * group.rank(), torch::kDouble)};
    ASSERT_OK(group.AllReduceSum(tensors));
    EXPECT_TRUE(torch::equal(tensors[0], torch::full({4}, 6.0)));
    EXPECT_TRUE(torch::equal(tensors[1], torch::full({2, 2}, 30.0, torch::kDouble)));
    EXPECT_EQ(group.allreduce_bytes(), 4 * 4 + 4 * 8);
    torch::Tensor t = torch::full({5}, static_cast<int64_t>(group.rank() + 7), torch::kLong);
    ASSERT_OK(group.Broadcast(t, 0));
    EXPECT_TRUE(torch::equal(t, torch::full({5}, int64_t{7}, torch::kLong)));
  });
}

// A replica that leaves closes its connections: the others' next
// collective fails at once, long before the timeout, and says why.
TEST(ReplicaGroupTest, AReplicaThatLeavesFailsTheOthersCollectivesAtOnce) {
  const auto start = std::chrono::steady_clock::now();
  OnReplicas(
      2,
      [](ReplicaGroup& group) {
        if (group.rank() == 1) return;  // leaves: its group closes
        std::vector<torch::Tensor> tensors = {torch::ones({1000})};
        absl::Status s = group.AllReduceSum(tensors);
        EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted, HasSubstr("replica 0 of 2")));
        // And it stays failed.
        EXPECT_THAT(group.AllReduceSum(tensors),
                    StatusIs(absl::StatusCode::kAborted, ::testing::_));
      },
      std::chrono::seconds(60));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

// A replica that stalls makes the others' collective fail at the timeout.
TEST(ReplicaGroupTest, AStalledReplicaFailsTheOthersAtTheTimeout) {
  OnReplicas(
      2,
      [](ReplicaGroup& group) {
        if (group.rank() == 1) {
          std::this_thread::sleep_for(std::chrono::seconds(4));
          return;
        }
        const auto start = std::chrono::steady_clock::now();
        torch::Tensor t = torch::zeros({1});
        EXPECT_THAT(group.Broadcast(t, 1), StatusIs(absl::StatusCode::kAborted, ::testing::_));
        EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
      },
      std::chrono::seconds(2));
}

TEST(StepAgreementTest, EveryReplicaActsOnReplicaZerosDecision) {
  OnReplicas(2, [](ReplicaGroup& group) {
    StepAgreement agreement(group);
    StepControl mine;
    if (group.rank() == 0) {
      mine.stop = StepControl::Stop::kForLater;
      mine.stop_reason = "preemption";
      mine.checkpoint = "interval";
    } else {
      mine.stop = StepControl::Stop::kCancel;  // ignored: replica 0 decides
    }
    absl::StatusOr<StepControl> agreed = agreement.Agree(mine);
    ASSERT_OK(agreed.status());
    EXPECT_EQ(agreed->stop, StepControl::Stop::kForLater);
    EXPECT_EQ(agreed->stop_reason, "preemption");
    EXPECT_EQ(agreed->checkpoint, "interval");
    absl::StatusOr<int64_t> depth = agreement.AgreeNumber(group.rank() == 0 ? 3 : 1);
    ASSERT_OK(depth.status());
    EXPECT_EQ(*depth, 3);
  });
}

// Two replicas' gradients add up to the whole batch's; a parameter only one
// replica has a gradient for gets it on both; one neither has stays without.
TEST(GradientReducerTest, SumsGradientsAndStepSumsOfTheParametersThatTrain) {
  OnReplicas(2, [](ReplicaGroup& group) {
    std::vector<torch::Tensor> params = {torch::zeros({3}).requires_grad_(),
                                         torch::zeros({2, 2}).requires_grad_(),
                                         torch::zeros({4}).requires_grad_()};
    params[0].mutable_grad() = torch::full({3}, group.rank() + 1.0);
    params[1].mutable_grad() = torch::full({2, 2}, 1.0);
    if (group.rank() == 1) params[2].mutable_grad() = torch::full({4}, 5.0);
    GradientReducer reducer(group, GradientReducer::Options{/*bucket_bytes=*/16});
    reducer.Rebuild(params);
    EXPECT_EQ(reducer.buckets(), 3u);  // 12, 16 and 16 bytes: one a bucket
    std::vector<double> sums = {group.rank() + 0.5, 2.0};
    ASSERT_OK(reducer.Reduce(sums));
    EXPECT_DOUBLE_EQ(sums[0], 2.0);
    EXPECT_DOUBLE_EQ(sums[1], 4.0);
    EXPECT_TRUE(torch::equal(params[0].grad(), torch::full({3}, 3.0)));
    EXPECT_TRUE(torch::equal(params[1].grad(), torch::full({2, 2}, 2.0)));
    EXPECT_TRUE(torch::equal(params[2].grad(), torch::full({4}, 5.0)));
    // Frozen: the first parameter leaves the exchange.
    const int64_t before = reducer.bytes_per_step(2);
    reducer.Rebuild({params[1], params[2]});
    EXPECT_EQ(reducer.bytes_per_step(2), before - 3 * 4 - 8);
    for (torch::Tensor& p : params) p.mutable_grad() = torch::Tensor();
    std::vector<double> none = {0.0};
    ASSERT_OK(reducer.Reduce(none));
    EXPECT_FALSE(params[1].grad().defined());
    EXPECT_FALSE(params[2].grad().defined());
  });
}

// With overlap, buckets fill from autograd hooks during backward and start
// their all-reduce as they fill; the sums are the same, in bucket order on
// both replicas whatever order the gradients came in.
TEST(GradientReducerTest, OverlapWithBackwardGivesTheSameSums) {
  OnReplicas(2, [](ReplicaGroup& group) {
    std::vector<torch::Tensor> params = {torch::zeros({3}).requires_grad_(),
                                         torch::zeros({4}).requires_grad_(),
                                         torch::zeros({2}).requires_grad_()};  // unused
    GradientReducer::Options options;
    options.bucket_bytes = 16;
    options.overlap = true;
    GradientReducer reducer(group, options);
    reducer.Rebuild(params);
    for (int step = 1; step <= 2; ++step) {
      reducer.BeginStep();
      const double r = group.rank() + 1.0;
      torch::Tensor loss = (params[0] * torch::full({3}, r)).sum() +
                           (params[1] * torch::full({4}, 10 * r * step)).sum();
      loss.backward();
      std::vector<double> sums = {r};
      ASSERT_OK(reducer.Reduce(sums));
      EXPECT_DOUBLE_EQ(sums[0], 3.0);
      EXPECT_TRUE(torch::equal(params[0].grad(), torch::full({3}, 3.0))) << params[0].grad();
      EXPECT_TRUE(torch::equal(params[1].grad(), torch::full({4}, 30.0 * step)));
      EXPECT_FALSE(params[2].grad().defined());
      for (torch::Tensor& p : params) p.mutable_grad() = torch::Tensor();
    }
  });
}

// Efficiency mode's arithmetic: 2 devices, 1.0 s a step before freezing,
// 0.2 s of it the exchange; after a freeze 0.5 s, 0.1 s of it the
// exchange: on one device (0.5 - 0.1) x 2 = 0.8 s, within 1x the 1.0 s.
TEST(EfficiencyMonitorTest, MovesToTheFewestDevicesThatKeepTheStartingSpeed) {
  EfficiencyMonitor monitor(2, {/*max_step_ratio=*/1.0, /*measure_steps=*/3});
  for (int i = 0; i < 5; ++i) monitor.Record(0, 1.0, 0.2);
  EXPECT_EQ(monitor.ShrinkTo(0), std::nullopt);  // nothing frozen
  monitor.Record(1, 0.5, 0.1);
  monitor.Record(1, 0.5, 0.1);
  EXPECT_EQ(monitor.ShrinkTo(1), std::nullopt);  // 2 of 3 steps measured
  monitor.Record(1, 0.5, 0.1);
  EXPECT_NEAR(monitor.Predict(1, 1), 0.8, 1e-12);
  EXPECT_NEAR(monitor.Predict(1, 2), 0.5, 1e-12);  // what it measured
  EXPECT_EQ(monitor.ShrinkTo(1), 1);
  // A stricter bound keeps both devices.
  EfficiencyMonitor strict(2, {/*max_step_ratio=*/0.7, /*measure_steps=*/1});
  strict.Record(0, 1.0, 0.2);
  strict.Record(1, 0.5, 0.1);
  EXPECT_EQ(strict.ShrinkTo(1), std::nullopt);

  // 4 devices: the exchange on k of them scales with (k-1)/k against 3/4.
  EfficiencyMonitor four(4, {/*max_step_ratio=*/1.0, /*measure_steps=*/1});
  four.Record(0, 1.0, 0.3);
  four.Record(2, 0.45, 0.15);
  EXPECT_NEAR(four.Predict(2, 1), 0.3 * 4, 1e-12);
  EXPECT_NEAR(four.Predict(2, 2), 0.3 * 2 + 0.15 * (0.5 / 0.75), 1e-12);
  EXPECT_EQ(four.ShrinkTo(2), 2);  // 1.2 s on one, 0.7 s on two
  // A job moved to fewer devices keeps its first bound, from its checkpoint.
  EfficiencyMonitor moved(2, {/*max_step_ratio=*/1.0, /*measure_steps=*/1});
  moved.set_baseline_seconds(1.0);
  moved.Record(3, 0.3, 0.05);
  EXPECT_DOUBLE_EQ(moved.baseline_seconds(), 1.0);
  EXPECT_EQ(moved.ShrinkTo(3), 1);
}

}  // namespace
}  // namespace ftd::training::parallel
