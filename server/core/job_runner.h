// The job runner's pure parts: running a trainer with an exception guard, and
// what a run's end means for the job. The job manager (job_manager.h) runs
// jobs with these on the scheduler's threads and records the outcome.
#pragma once

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"
#include "server/scheduler/stop_token.h"
#include "server/training/trainer.h"

namespace ftd::core {

// Runs `trainer` for `context`'s job. An exception thrown by the trainer (a
// LibTorch error, std::bad_alloc) becomes INTERNAL with its message, so that
// it fails this job and not the daemon.
absl::StatusOr<v1::JobResult> RunGuarded(training::Trainer& trainer,
                                         training::TrainingContext& context);

enum class RunOutcome {
  kSucceeded,
  kCancelled,            // a user's cancel, also one that came during a shutdown or preemption
  kRequeuedForShutdown,  // resumes from its checkpoint when the daemon restarts
  kRequeuedPreempted,    // resumes from its checkpoint when a device is free
  kFailed,               // with the result's message as the reason
};

// What a run that ended with `result` means for its job, which was
// CANCELLING or not when it ended and was asked to stop for `reason`. A job
// a user cancelled ends CANCELLED however its run ended; a shutdown or a
// preemption requeues it only when the trainer honoured the stop (CANCELLED);
// any other error fails the job, even when a stop was asked for (a real
// error outranks the stop).
RunOutcome ClassifyRun(const absl::Status& result, bool cancelling, scheduler::StopReason reason);

}  // namespace ftd::core
