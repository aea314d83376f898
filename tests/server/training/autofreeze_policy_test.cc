#include "server/training/freeze/autofreeze_policy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/training/freeze/freeze_schedule.h"

namespace ftd::training {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;

TEST(PercentileTest, InterpolatesLinearlyAsNumpyDoes) {
  // numpy.percentile([1, 2, 3, 4], 25) == 1.75; [..., 50] == 2.5
  EXPECT_DOUBLE_EQ(Percentile({4, 1, 3, 2}, 25), 1.75);
  EXPECT_DOUBLE_EQ(Percentile({4, 1, 3, 2}, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4}, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4}, 100), 4);
  // numpy.percentile([0.01, 0.02, 0.5, 0.8], 50) == 0.26
  EXPECT_NEAR(Percentile({0.01, 0.02, 0.5, 0.8}, 50), 0.26, 1e-12);
  // numpy.percentile([10, 20, 30], 90) == 28.0
  EXPECT_NEAR(Percentile({10, 20, 30}, 90), 28.0, 1e-12);
  EXPECT_DOUBLE_EQ(Percentile({5}, 37), 5);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
}

TEST(AutoFreezePolicyTest, TheFirstDecisionPointOnlyRecordsTheBaseline) {
  AutoFreezePolicy policy(4, 50);
  AutoFreezePolicy::Decision d = policy.Decide({10, 10, 10, 10});
  EXPECT_TRUE(d.baseline);
  EXPECT_EQ(d.frozen_before, 0);
  EXPECT_EQ(d.frozen_after, 0);
  EXPECT_EQ(policy.frozen(), 0);
}

TEST(AutoFreezePolicyTest, FreezesThePrefixBeforeTheFirstLayerAtOrAboveTheThreshold) {
  AutoFreezePolicy policy(4, 50);
  policy.Decide({10, 10, 10, 10});
  // eta = [0.01, 0.02, 0.5, 0.8]; the median with interpolation is 0.26.
  AutoFreezePolicy::Decision d = policy.Decide({9.9, 9.8, 5, 2});
  EXPECT_FALSE(d.baseline);
  EXPECT_THAT(d.change_rates, ElementsAre(DoubleNear(0.01, 1e-12), DoubleNear(0.02, 1e-12),
                                          DoubleNear(0.5, 1e-12), DoubleNear(0.8, 1e-12)));
  EXPECT_NEAR(d.threshold, 0.26, 1e-12);
  EXPECT_EQ(d.frozen_before, 0);
  EXPECT_EQ(d.frozen_after, 2);
  EXPECT_EQ(policy.frozen(), 2);
}

TEST(AutoFreezePolicyTest, APrefixNeverSkipsALayer) {
  AutoFreezePolicy policy(4, 50);
  policy.Decide({10, 10, 10, 10});
  // eta = [0.01, 0.9, 0.01, 0.5], threshold 0.255: layer 1 is still
  // learning, so layer 2 stays trainable although its eta is low.
  AutoFreezePolicy::Decision d = policy.Decide({9.9, 1, 9.9, 5});
  EXPECT_NEAR(d.threshold, 0.255, 1e-12);
  EXPECT_EQ(d.frozen_after, 1);
}

TEST(AutoFreezePolicyTest, TiesAtTheThresholdKeepTheLayerTraining) {
  AutoFreezePolicy policy(3, 50);
  policy.Decide({4, 4, 4});
  // Every eta is 0.5, so is the threshold: the first layer is at it.
  AutoFreezePolicy::Decision d = policy.Decide({2, 6, 2});
  EXPECT_DOUBLE_EQ(d.threshold, 0.5);
  EXPECT_EQ(d.frozen_after, 0);
}

TEST(AutoFreezePolicyTest, ZeroGradientsGiveAZeroChangeRate) {
  AutoFreezePolicy policy(3, 50);
  policy.Decide({0, 0, 0});
  AutoFreezePolicy::Decision d = policy.Decide({5, 5, 5});
  EXPECT_THAT(d.change_rates, ElementsAre(0, 0, 0));
  EXPECT_EQ(d.threshold, 0);
  EXPECT_EQ(d.frozen_after, 0);  // eta 0 is at the threshold 0
  // A layer whose previous norm was 0 has eta 0 and freezes when others move.
  AutoFreezePolicy fresh(3, 50);
  fresh.Decide({0, 4, 4});
  d = fresh.Decide({1, 2, 8});  // eta = [0, 0.5, 1], threshold 0.5
  EXPECT_THAT(d.change_rates, ElementsAre(0, 0.5, 1));
  EXPECT_EQ(d.frozen_after, 1);
}

TEST(AutoFreezePolicyTest, TheLastLayerNeverFreezesAndFrozenLayersNeverThaw) {
  AutoFreezePolicy policy(3, 100);
  policy.Decide({1, 1, 1});
  // p = 100: the threshold is the largest eta, here the last layer's.
  AutoFreezePolicy::Decision d = policy.Decide({1, 1, 3});
  EXPECT_EQ(d.frozen_after, 2);
  // Only the last layer trains now; whatever the numbers, it stays so, and
  // the frozen layers' numbers are ignored.
  for (int i = 0; i < 3; ++i) {
    d = policy.Decide({100, 0.001, 1.0 + i});
    EXPECT_EQ(d.frozen_before, 2);
    EXPECT_EQ(d.frozen_after, 2);
    EXPECT_EQ(d.change_rates[0], 0);
    EXPECT_EQ(d.change_rates[1], 0);
  }
}

TEST(AutoFreezePolicyTest, ChangeRatesComeFromTheLastDecisionPoint) {
  AutoFreezePolicy policy(4, 50);
  policy.Decide({8, 8, 8, 8});
  policy.Decide({8, 8, 4, 2});  // eta = [0, 0, 0.5, 0.75]: threshold 0.25, frozen 2
  ASSERT_EQ(policy.frozen(), 2);
  // Against the previous point ([.., .., 4, 2]), not the baseline.
  AutoFreezePolicy::Decision d = policy.Decide({0, 0, 4, 1});
  EXPECT_THAT(d.change_rates, ElementsAre(0, 0, 0, 0.5));
  EXPECT_DOUBLE_EQ(d.threshold, 0.25);
  EXPECT_EQ(d.frozen_after, 3);  // layer 2 (eta 0) is below the threshold; layer 3 is last
}

TEST(AutoFreezePolicyTest, StartsFromAStaticPrefixWhenAsked) {
  AutoFreezePolicy policy(6, 50, 2);
  EXPECT_EQ(policy.frozen(), 2);
  EXPECT_EQ(AutoFreezePolicy(6, 50, 9).frozen(), 5);
}

// PipeTransformer's reading: the first layer at or above the threshold
// freezes too (eta = [0.01, 0.02, 0.5, 0.8], threshold 0.26: the authors'
// rule freezes 2, this one 3), and never the last layer.
TEST(AutoFreezePolicyTest, FreezingThroughTheFirstLayerAboveTakesOneMore) {
  AutoFreezePolicy::Options o;
  o.freeze_through_first_above = true;
  AutoFreezePolicy policy(4, o);
  policy.Decide({10, 10, 10, 10});
  EXPECT_EQ(policy.Decide({9.9, 9.8, 5, 2}).frozen_after, 3);
  EXPECT_EQ(policy.Decide({1, 1, 1, 1}).frozen_after, 3);  // the last layer stays
}

TEST(AutoFreezePolicyTest, ACapLimitsOneDecision) {
  AutoFreezePolicy::Options o;
  o.max_layers_per_decision = 1;
  AutoFreezePolicy policy(4, o);
  policy.Decide({10, 10, 10, 10});
  EXPECT_EQ(policy.Decide({9.9, 9.8, 5, 2}).frozen_after, 1);  // 2 without the cap
}

// keep_trainable 2: with eta = [0, 0, 0, 0.5] and p = 100 (threshold 0.5)
// the authors' rule would freeze 3 of 4; the last two layers keep training.
TEST(AutoFreezePolicyTest, TheLastKeepTrainableLayersNeverFreeze) {
  AutoFreezePolicy::Options o;
  o.percentile = 100;
  o.keep_trainable = 2;
  AutoFreezePolicy policy(4, o);
  EXPECT_EQ(policy.max_frozen(), 2);
  policy.Decide({10, 10, 10, 10});
  EXPECT_EQ(policy.Decide({10, 10, 10, 5}).frozen_after, 2);
  EXPECT_EQ(policy.Decide({1, 1, 1, 1}).frozen_after, 2);
}

// start_fraction 0.5 (p = 100): the points before half of training measure
// the change rates (and report them) but freeze nothing; the first one after
// freezes.
TEST(AutoFreezePolicyTest, NothingFreezesBeforeTheStartFraction) {
  AutoFreezePolicy::Options o;
  o.percentile = 100;
  o.start_fraction = 0.5;
  AutoFreezePolicy policy(4, o);
  policy.Decide({10, 10, 10, 10}, 0.1);
  AutoFreezePolicy::Decision d = policy.Decide({10, 10, 5, 2}, 0.2);
  EXPECT_THAT(d.change_rates, ElementsAre(0, 0, 0.5, 0.8));
  EXPECT_EQ(d.frozen_after, 0);
  // Against the point at 0.2 ([.., .., 5, 2]), not the baseline.
  d = policy.Decide({10, 10, 5, 1}, 0.5);
  EXPECT_THAT(d.change_rates, ElementsAre(0, 0, 0, 0.5));
  EXPECT_EQ(d.frozen_after, 3);
}

// Smoothing s = 0.5: G_s = 0.5 * previous G_s + 0.5 * G; eta compares
// successive G_s. Baseline 10 everywhere; then G = [9.9, 9.8, 5, 2] gives
// G_s = [9.95, 9.9, 7.5, 6], eta = [0.005, 0.01, 0.25, 0.4].
TEST(AutoFreezePolicyTest, SmoothingAveragesTheGradientSums) {
  AutoFreezePolicy::Options o;
  o.smoothing = 0.5;
  AutoFreezePolicy policy(4, o);
  policy.Decide({10, 10, 10, 10});
  AutoFreezePolicy::Decision d = policy.Decide({9.9, 9.8, 5, 2});
  EXPECT_THAT(d.change_rates, ElementsAre(DoubleNear(0.005, 1e-12), DoubleNear(0.01, 1e-12),
                                          DoubleNear(0.25, 1e-12), DoubleNear(0.4, 1e-12)));
  EXPECT_NEAR(d.threshold, 0.13, 1e-12);  // numpy.percentile([.005, .01, .25, .4], 50)
  EXPECT_EQ(d.frozen_after, 2);
}

// PipeTransformer, alpha 1/3, 6 layers: 0, ceil(2) = 2, ceil(3.33) = 4,
// ceil(4.22) = 5, then capped at 5 (the last layer trains).
TEST(FreezeScheduleTest, GeometricFreezesAShareOfWhatStillTrainsEachEpoch) {
  FreezeSchedule g = FreezeSchedule::Geometric(6, 1.0 / 3);
  EXPECT_EQ(g.Depth(1, 0.0), 0);
  EXPECT_EQ(g.Depth(2, 0.9), 2);
  EXPECT_EQ(g.Depth(3, 0.0), 4);
  EXPECT_EQ(g.Depth(4, 0.0), 5);
  EXPECT_EQ(g.Depth(9, 0.0), 5);
}

// Composer, start 0.5, level 1.0, 6 layers: nothing before half of
// training, then floor(6 * (t - 0.5) / 0.5): 1 at 0.6, 3 at 0.75, 5 (cap) at 1.
TEST(FreezeScheduleTest, LinearGrowsFromTheStartToTheLevel) {
  FreezeSchedule l = FreezeSchedule::Linear(6, 0.5, 1.0);
  EXPECT_EQ(l.Depth(1, 0.0), 0);
  EXPECT_EQ(l.Depth(2, 0.5), 0);
  EXPECT_EQ(l.Depth(2, 0.6), 1);
  EXPECT_EQ(l.Depth(3, 0.75), 3);
  EXPECT_EQ(l.Depth(4, 1.0), 5);
  EXPECT_EQ(FreezeSchedule::Linear(6, 0.0, 0.5).Depth(4, 1.0), 3);
}

}  // namespace
}  // namespace ftd::training
