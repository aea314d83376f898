// The job runner: what the scheduler runs for a job on its devices. It has
// the job marked running, gives the trainer its view of the job (a
// TrainingContext whose reports go to the job manager), runs it with an
// exception guard, and has the outcome recorded. The job manager keeps the
// job's record (RunRecorder); what a run's end means for the job is
// ClassifyRun's.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ftd/v1/ftd.pb.h"
#include "server/core/job_observer.h"
#include "server/scheduler/device.h"
#include "server/scheduler/stop_token.h"
#include "server/training/trainer.h"

namespace ftd::core {

// The job manager as a job's run sees it (JobManager implements it).
class RunRecorder {
 public:
  virtual ~RunRecorder() = default;

  struct Started {
    v1::JobSpec spec;
    std::string tenant;
    absl::Time create_time;
  };
  // Records the job RUNNING on `devices`. Nothing when it is not to run now:
  // it is gone, no longer queued, or the store refused the change (it is
  // then queued again after a pause).
  virtual std::optional<Started> StartRun(const std::string& job_id,
                                          const std::vector<std::string>& devices) = 0;
  // Records how the run ended, once its devices are about to be given back.
  virtual void EndRun(const std::string& job_id, const absl::StatusOr<v1::JobResult>& result,
                      const scheduler::StopToken& stop) = 0;

  // What the trainer reports (TrainingContext's methods of the same names).
  virtual std::string CheckpointDir(const std::string& job_id) const = 0;
  virtual void Resumed(const std::string& job_id, v1::Resume resume, const v1::JobResult& history,
                       const v1::CacheUsage& cache) = 0;
  virtual void ReportProgress(const std::string& job_id, const v1::Progress& progress) = 0;
  virtual void Emit(const std::string& job_id, v1::JobEvent event) = 0;
  virtual void RecordFingerprint(const std::string& job_id, const std::string& role,
                                 const std::string& sha256) = 0;
  virtual bool ContinueOn(const std::string& job_id, int devices) = 0;
};

class JobRunner {
 public:
  struct Options {
    training::Trainer* trainer = nullptr;  // not owned
    JobObserver* observer = nullptr;       // not owned, never null
    std::string jobs_dir;                  // jobs' output folders: <jobs_dir>/<id>/
    std::function<absl::Time()> now;
  };
  // `recorder` outlives the runner.
  JobRunner(RunRecorder& recorder, Options options)
      : recorder_(recorder), options_(std::move(options)) {}

  // Runs job `job_id` on `devices` to its end (Scheduler::RunFn).
  void Run(const std::string& job_id, const std::vector<scheduler::Device>& devices,
           const scheduler::StopToken& stop);

 private:
  class Context;  // the trainer's view of the job

  RunRecorder& recorder_;
  const Options options_;
};

// The model label of a job's metrics: the base model's folder name, with its
// parent for a daemon's own output ("job-3/model").
std::string ModelName(const std::string& base_model);

// The paths a spec names, canonical at submit, still are: a folder on the
// way swapped for a symbolic link since then leads nowhere. Errors:
// FAILED_PRECONDITION naming the field.
absl::Status PathsUnchanged(const v1::JobSpec& spec);

// Runs `trainer` for `context`'s job. An exception thrown by the trainer (a
// LibTorch error, std::bad_alloc) becomes INTERNAL with its message, so that
// it fails this job and not the daemon.
absl::StatusOr<v1::JobResult> RunGuarded(training::Trainer& trainer,
                                         training::TrainingContext& context);

enum class RunOutcome {
  kSucceeded,
  kCancelled,             // a user's cancel, also one that came during a shutdown or preemption
  kRequeuedForShutdown,   // resumes from its checkpoint when the daemon restarts
  kRequeuedPreempted,     // resumes from its checkpoint when a device is free
  kRequeuedFewerDevices,  // efficiency mode: resumes from its checkpoint on fewer devices
  kRequeuedDeviceLost,    // a worker daemon's device left: resumes on the devices left
  kFailed,                // with the result's message as the reason
};

// What a run that ended with `result` means for its job, which was
// CANCELLING or not when it ended and was asked to stop for `reason`. A job
// a user cancelled ends CANCELLED however its run ended; a shutdown or a
// preemption requeues it only when the trainer honoured the stop (CANCELLED);
// any other error fails the job, even when a stop was asked for (a real
// error outranks the stop).
// `continue_on` > 0: the trainer asked to continue on that many devices
// (efficiency mode), which a CANCELLED run with no other stop means.
// A run that lost a device (training::IsDeviceLost) runs again from its
// checkpoint, unless a user cancelled it.
RunOutcome ClassifyRun(const absl::Status& result, bool cancelling, scheduler::StopReason reason,
                       int continue_on = 0);

}  // namespace ftd::core
