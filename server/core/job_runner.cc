#include "server/core/job_runner.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace ftd::core {

absl::StatusOr<v1::JobResult> RunGuarded(training::Trainer& trainer,
                                         training::TrainingContext& context) {
  try {
    return trainer.Train(context);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("training stopped on an exception: ", e.what()));
  } catch (...) {
    return absl::InternalError("training stopped on an unknown exception");
  }
}

RunOutcome ClassifyRun(const absl::Status& result, bool cancelling, scheduler::StopReason reason) {
  if (result.ok()) return RunOutcome::kSucceeded;
  if (cancelling || reason == scheduler::StopReason::kCancelled) return RunOutcome::kCancelled;
  if (absl::IsCancelled(result) && reason == scheduler::StopReason::kShutdown) {
    return RunOutcome::kRequeuedForShutdown;
  }
  if (absl::IsCancelled(result) && reason == scheduler::StopReason::kPreempted) {
    return RunOutcome::kRequeuedPreempted;
  }
  return RunOutcome::kFailed;
}

}  // namespace ftd::core
