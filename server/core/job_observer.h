// What the job manager tells the outside about jobs as they move (the
// daemon's metrics implement it; see server/metrics/metrics_observer.h).
// Every method has a no-op default. Called from the manager's and the job
// threads, some with the manager's lock held: implementations return quickly
// and do not call back into the manager.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/time/time.h"
#include "ftd/v1/ftd.pb.h"
#include "server/training/trainer.h"

namespace ftd::core {

class JobObserver {
 public:
  virtual ~JobObserver() = default;

  // How many stored jobs are in each state, and how many are queued.
  virtual void JobCounts(const std::map<v1::JobState, int64_t>& /*counts*/,
                         int64_t /*queue_length*/) {}
  virtual void JobSubmitted() {}
  virtual void JobFinished(v1::JobState /*state*/) {}
  // From submission to the start.
  virtual void QueueWait(absl::Duration /*wait*/) {}
  // `model`: the base model's folder name, a bounded label.
  virtual void JobStarted(const std::string& /*job_id*/, const std::string& /*model*/,
                          const std::string& /*device*/) {}
  virtual void Step(const std::string& /*job_id*/, const training::StepStats& /*stats*/) {}
  virtual void Evaluation(const std::string& /*job_id*/, const v1::Evaluation& /*evaluation*/) {}
  virtual void FreezeDecision(const std::string& /*job_id*/,
                              const v1::FreezeDecision& /*decision*/) {}
  // The job's run ended, however it ended.
  virtual void JobStopped(const std::string& /*job_id*/) {}
  virtual void DeviceBusy(const std::string& /*device*/, bool /*busy*/) {}
};

}  // namespace ftd::core
