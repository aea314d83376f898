#include "server/core/job_projection.h"

#include "gtest/gtest.h"

namespace ftd::core {
namespace {

v1::JobEvent Checkpoint(int64_t step) {
  v1::JobEvent event;
  event.mutable_checkpoint()->set_step(step);
  return event;
}

TEST(JobProjectionTest, StateChangesSetTheStateAndAFinalOneTheEndTime) {
  v1::Job job;
  v1::JobEvent event;
  event.mutable_time()->set_seconds(100);
  event.mutable_state_change()->set_to_state(v1::JOB_STATE_RUNNING);
  ApplyEvent(event, &job);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_FALSE(job.has_end_time());
  event.mutable_state_change()->set_to_state(v1::JOB_STATE_SUCCEEDED);
  ApplyEvent(event, &job);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.end_time().seconds(), 100);
}

TEST(JobProjectionTest, EvaluationsFreezesAndCacheReportsBuildTheRecord) {
  v1::Job job;
  job.mutable_spec()->mutable_activation_cache()->set_dtype(v1::ActivationCache::DTYPE_FP32);
  v1::JobEvent eval;
  eval.mutable_evaluation()->set_accuracy(0.7);
  ApplyEvent(eval, &job);
  v1::JobEvent freeze;
  freeze.mutable_freeze_decision()->set_frozen_after(3);
  freeze.mutable_freeze_decision()->set_total_layers(6);
  freeze.mutable_freeze_decision()->set_trainable_parameter_fraction(0.4);
  ApplyEvent(freeze, &job);
  v1::JobEvent cache;
  cache.mutable_cache()->mutable_epoch()->set_epoch(2);
  cache.mutable_cache()->mutable_totals()->set_hits(5);
  ApplyEvent(cache, &job);
  v1::JobEvent log;
  log.mutable_log()->set_message("ignored");
  ApplyEvent(log, &job);

  EXPECT_EQ(job.result().evaluations_size(), 1);
  EXPECT_EQ(job.result().freeze_timeline_size(), 1);
  EXPECT_EQ(job.freeze().frozen_layers(), 3);
  EXPECT_EQ(job.freeze().total_layers(), 6);
  EXPECT_TRUE(job.cache().enabled());
  EXPECT_EQ(job.cache().dtype(), v1::ActivationCache::DTYPE_FP32);
  EXPECT_EQ(job.cache().totals().hits(), 5);
  EXPECT_EQ(job.cache().epochs_size(), 1);
}

TEST(JobProjectionTest, TheRecordListsTheLastTwoCheckpoints) {
  v1::Job job;
  for (int64_t step : {10, 20, 30}) ApplyEvent(Checkpoint(step), &job);
  ASSERT_EQ(job.checkpoints_size(), kCheckpointsKept);
  EXPECT_EQ(job.checkpoints(0).step(), 20);
  EXPECT_EQ(job.checkpoints(1).step(), 30);
}

TEST(JobProjectionTest, AResumeShowsTheCheckpointsHistoryAndDropsWhatCameAfter) {
  v1::Job job;
  for (double accuracy : {0.5, 0.6, 0.7}) {
    v1::JobEvent eval;
    eval.mutable_evaluation()->set_accuracy(accuracy);
    ApplyEvent(eval, &job);
  }
  ApplyEvent(Checkpoint(20), &job);
  job.mutable_progress()->set_step(35);

  v1::JobResult history;  // the checkpoint had seen two evaluations
  history.add_evaluations()->set_accuracy(0.5);
  history.add_evaluations()->set_accuracy(0.6);
  history.add_freeze_timeline()->set_frozen_after(2);
  v1::CacheUsage cache;
  cache.set_enabled(true);
  cache.mutable_totals()->set_hits(9);
  ApplyResume(history, cache, &job);
  EXPECT_EQ(job.result().evaluations_size(), 2);
  EXPECT_EQ(job.freeze().frozen_layers(), 2);
  EXPECT_EQ(job.cache().totals().hits(), 9);
  EXPECT_EQ(job.progress().step(), 0);
  EXPECT_EQ(job.checkpoints_size(), 1);  // still on disk

  ClearAttempt(&job);
  EXPECT_EQ(job.result().evaluations_size(), 0);
  EXPECT_FALSE(job.has_freeze());
  EXPECT_FALSE(job.has_cache());
}

}  // namespace
}  // namespace ftd::core

namespace ftd::core {
namespace {

// A long job's record stays small: the histories are bounded, the decisions
// that froze something are kept, and what went is counted.
TEST(JobProjectionTest, ALongJobsRecordKeepsItsFreezesAndTheNewestHistory) {
  v1::Job job;
  for (int step = 1; step <= 1000; ++step) {
    v1::JobEvent decision;
    v1::FreezeDecision* d = decision.mutable_freeze_decision();
    d->set_step(step);
    d->set_total_layers(12);
    d->set_frozen_before(step <= 3 ? step - 1 : 3);
    d->set_frozen_after(step <= 3 ? step : 3);
    for (int l = 0; l < 12; ++l) d->add_layer_change_rates(0.5);
    ApplyEvent(decision, &job);
    if (step % 2 == 0) {
      v1::JobEvent evaluation;
      evaluation.mutable_evaluation()->set_step(step);
      ApplyEvent(evaluation, &job);
    }
  }
  const v1::JobResult& result = job.result();
  ASSERT_EQ(result.evaluations_size(), kHistoryKept);
  EXPECT_EQ(result.evaluations_dropped(), 300);
  EXPECT_EQ(result.evaluations(0).step(), 602);  // the newest 200
  ASSERT_EQ(result.freeze_timeline_size(), kHistoryKept);
  EXPECT_EQ(result.freeze_decisions_dropped(), 800);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(result.freeze_timeline(i).step(), i + 1);  // the freezes
  EXPECT_EQ(result.freeze_timeline(3).step(), 804);
  EXPECT_EQ(result.freeze_timeline(kHistoryKept - 1).step(), 1000);
  EXPECT_EQ(job.freeze().frozen_layers(), 3);
  EXPECT_LT(job.ByteSizeLong(), 64u * 1024);
}

}  // namespace
}  // namespace ftd::core
