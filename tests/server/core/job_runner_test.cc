#include "server/core/job_runner.h"

#include <new>
#include <stdexcept>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftd::core {
namespace {

using ::ftd::testing::StatusIs;
using scheduler::StopReason;
using ::testing::HasSubstr;

TEST(JobRunnerTest, ARunsEndMapsOntoTheJobsOutcome) {
  const absl::Status ok = absl::OkStatus();
  const absl::Status stopped = absl::CancelledError("stopped at step 40");
  const absl::Status broken = absl::UnavailableError("cannot write model.safetensors");
  EXPECT_EQ(ClassifyRun(ok, false, StopReason::kNone), RunOutcome::kSucceeded);
  // Finished before it saw the stop: the work is done, it succeeds.
  EXPECT_EQ(ClassifyRun(ok, true, StopReason::kCancelled), RunOutcome::kSucceeded);
  EXPECT_EQ(ClassifyRun(stopped, true, StopReason::kCancelled), RunOutcome::kCancelled);
  // A user's cancel wins over a shutdown or a preemption that came with it.
  EXPECT_EQ(ClassifyRun(stopped, true, StopReason::kShutdown), RunOutcome::kCancelled);
  EXPECT_EQ(ClassifyRun(stopped, false, StopReason::kShutdown), RunOutcome::kRequeuedForShutdown);
  EXPECT_EQ(ClassifyRun(stopped, false, StopReason::kPreempted), RunOutcome::kRequeuedPreempted);
  // A real error during a shutdown or a preemption fails the job.
  EXPECT_EQ(ClassifyRun(broken, false, StopReason::kShutdown), RunOutcome::kFailed);
  EXPECT_EQ(ClassifyRun(broken, false, StopReason::kPreempted), RunOutcome::kFailed);
  EXPECT_EQ(ClassifyRun(broken, false, StopReason::kNone), RunOutcome::kFailed);
  // A cancel the trainer returned without being asked is an error.
  EXPECT_EQ(ClassifyRun(stopped, false, StopReason::kNone), RunOutcome::kFailed);
  // Efficiency mode: the trainer asked to continue on fewer devices.
  EXPECT_EQ(ClassifyRun(stopped, false, StopReason::kNone, 1), RunOutcome::kRequeuedFewerDevices);
  EXPECT_EQ(ClassifyRun(stopped, true, StopReason::kNone, 1), RunOutcome::kCancelled);
  EXPECT_EQ(ClassifyRun(stopped, false, StopReason::kShutdown, 1),
            RunOutcome::kRequeuedForShutdown);
  EXPECT_EQ(ClassifyRun(broken, false, StopReason::kNone, 1), RunOutcome::kFailed);
  // A worker daemon that left: the job runs again from its checkpoint,
  // unless a user cancelled it; the same code unmarked is an error.
  const absl::Status lost = training::DeviceLost("replica 1 on w1/cpu:0: worker w1 left");
  EXPECT_EQ(ClassifyRun(lost, false, StopReason::kNone), RunOutcome::kRequeuedDeviceLost);
  EXPECT_EQ(ClassifyRun(lost, false, StopReason::kShutdown), RunOutcome::kRequeuedDeviceLost);
  EXPECT_EQ(ClassifyRun(lost, true, StopReason::kCancelled), RunOutcome::kCancelled);
  EXPECT_FALSE(training::IsDeviceLost(broken));
  EXPECT_FALSE(training::IsDeviceLost(absl::OkStatus()));
}

class ThrowingTrainer final : public training::Trainer {
 public:
  explicit ThrowingTrainer(int kind) : kind_(kind) {}
  absl::StatusOr<v1::JobResult> Train(training::TrainingContext&) override {
    if (kind_ == 0) throw std::runtime_error("shape [3, 4] does not match [4, 3]");
    if (kind_ == 1) throw std::bad_alloc();
    throw 42;
  }

 private:
  const int kind_;
};

// The throwing trainers never look at their job.
class NoContext final : public training::TrainingContext {
 public:
  const std::string& job_id() const override { return empty_; }
  const v1::JobSpec& spec() const override { return spec_; }
  const std::vector<std::string>& devices() const override { return devices_; }
  const std::string& output_dir() const override { return empty_; }
  bool StopRequested() const override { return false; }
  void ReportProgress(const v1::Progress&) override {}
  void Emit(v1::JobEvent) override {}
  void RecordFingerprint(const std::string&, const std::string&) override {}

 private:
  const std::string empty_;
  const std::vector<std::string> devices_ = {"cpu:0"};
  const v1::JobSpec spec_;
};

TEST(JobRunnerTest, ATrainersExceptionBecomesTheJobsError) {
  NoContext no_context;
  training::TrainingContext* context = &no_context;
  ThrowingTrainer shape(0), memory(1), other(2);
  EXPECT_THAT(RunGuarded(shape, *context),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("exception: shape [3, 4] does not match [4, 3]")));
  EXPECT_THAT(RunGuarded(memory, *context),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("bad_alloc")));
  EXPECT_THAT(RunGuarded(other, *context),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("unknown exception")));
}

}  // namespace
}  // namespace ftd::core
