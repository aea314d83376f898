// The job manager's observer as the Prometheus metrics implement it.
#pragma once

#include <map>
#include <string>

#include "server/core/job_observer.h"
#include "server/metrics/metrics.h"

namespace ftd::metrics {

class MetricsObserver final : public core::JobObserver {
 public:
  // `metrics` must outlive the observer.
  explicit MetricsObserver(Metrics* metrics) : m_(metrics) {}

  void JobCounts(const std::map<v1::JobState, int64_t>& counts, int64_t queue_length) override {
    m_->SetJobCounts(counts, queue_length);
  }
  void JobSubmitted() override { m_->JobSubmitted(); }
  void JobFinished(v1::JobState state) override { m_->JobFinished(state); }
  void QueueWait(absl::Duration wait) override { m_->ObserveQueueWait(wait); }
  void JobStarted(const std::string& job_id, const std::string& model,
                  const std::string& device) override {
    m_->JobStarted(job_id, model, device);
  }
  void Step(const std::string& job_id, const training::StepStats& stats) override {
    m_->RecordStep(job_id, stats);
  }
  void Evaluation(const std::string& job_id, const v1::Evaluation& evaluation) override {
    m_->RecordEvaluation(job_id, evaluation);
  }
  void FreezeDecision(const std::string& job_id, const v1::FreezeDecision& decision) override {
    m_->RecordFreezeDecision(job_id, decision);
  }
  void JobStopped(const std::string& job_id) override { m_->JobStopped(job_id); }
  void DeviceBusy(const std::string& device, bool busy) override {
    m_->SetDeviceBusy(device, busy);
  }

 private:
  Metrics* const m_;
};

}  // namespace ftd::metrics
