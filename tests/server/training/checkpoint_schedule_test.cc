#include "server/training/engine/checkpoint_schedule.h"

#include <chrono>

#include "gtest/gtest.h"

namespace ftd::training {
namespace {

using Clock = CheckpointSchedule::Clock;
using std::chrono::seconds;

TEST(CheckpointScheduleTest, DueAfterAFreezeEveryNStepsAndOnceTheIntervalHasPassed) {
  CheckpointSchedule schedule(/*every_steps=*/10, /*interval_seconds=*/60);
  const Clock::time_point t0{};
  schedule.Start(-1, t0);
  EXPECT_EQ(schedule.Due(0, t0), nullptr);  // never before the first step
  EXPECT_EQ(schedule.Due(3, t0), nullptr);
  EXPECT_STREQ(schedule.Due(10, t0), "steps");
  schedule.Froze();
  EXPECT_STREQ(schedule.Due(11, t0), "freeze");  // a freeze first
  schedule.Saved(11, true, t0);
  EXPECT_EQ(schedule.Due(11, t0), nullptr);  // never twice at one step
  EXPECT_TRUE(schedule.Written(11));
  EXPECT_EQ(schedule.Due(12, t0 + seconds(59)), nullptr);
  EXPECT_STREQ(schedule.Due(12, t0 + seconds(60)), "interval");
}

TEST(CheckpointScheduleTest, AFailedWriteRestartsTheIntervalButIsNotWritten) {
  CheckpointSchedule schedule(0, 60);
  const Clock::time_point t0{};
  schedule.Start(-1, t0);
  schedule.Froze();
  schedule.Saved(5, false, t0 + seconds(30));
  EXPECT_FALSE(schedule.Written(5));
  EXPECT_EQ(schedule.Due(6, t0 + seconds(60)), nullptr);  // the interval restarted at 30 s
  EXPECT_STREQ(schedule.Due(6, t0 + seconds(90)), "interval");
  // A resumed run's checkpoint is the last one written.
  CheckpointSchedule resumed(0, 0);
  resumed.Start(40, t0);
  EXPECT_TRUE(resumed.Written(40));
  EXPECT_EQ(resumed.Due(40, t0), nullptr);
}

}  // namespace
}  // namespace ftd::training
