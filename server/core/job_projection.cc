#include "server/core/job_projection.h"

namespace ftd::core {

bool IsFinal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

namespace {

void SetFreeze(const v1::FreezeDecision& d, v1::Job* job) {
  v1::FreezeState* freeze = job->mutable_freeze();
  freeze->set_frozen_layers(d.frozen_after());
  freeze->set_total_layers(d.total_layers());
  freeze->set_trainable_parameter_fraction(d.trainable_parameter_fraction());
}

}  // namespace

void ApplyEvent(const v1::JobEvent& event, v1::Job* job) {
  switch (event.kind_case()) {
    case v1::JobEvent::kStateChange:
      job->set_state(event.state_change().to_state());
      if (IsFinal(event.state_change().to_state())) *job->mutable_end_time() = event.time();
      break;
    case v1::JobEvent::kProgress:
      *job->mutable_progress() = event.progress();
      break;
    case v1::JobEvent::kEvaluation:
      *job->mutable_result()->add_evaluations() = event.evaluation();
      BoundHistory(job->mutable_result());
      break;
    case v1::JobEvent::kFreezeDecision:
      *job->mutable_result()->add_freeze_timeline() = event.freeze_decision();
      SetFreeze(event.freeze_decision(), job);
      BoundHistory(job->mutable_result());
      break;
    case v1::JobEvent::kCache: {
      const v1::CacheReport& report = event.cache();
      v1::CacheUsage* usage = job->mutable_cache();
      usage->set_enabled(true);
      usage->set_dtype(job->spec().activation_cache().dtype());
      *usage->mutable_totals() = report.totals();
      if (report.epoch().epoch() > 0) *usage->add_epochs() = report.epoch();
      *usage->mutable_segments() = report.segments();
      if (!report.disabled_reason().empty()) usage->set_disabled_reason(report.disabled_reason());
      break;
    }
    case v1::JobEvent::kCheckpoint: {
      auto* list = job->mutable_checkpoints();
      *list->Add() = event.checkpoint();
      if (list->size() > kCheckpointsKept) list->DeleteSubrange(0, list->size() - kCheckpointsKept);
      break;
    }
    default:
      break;
  }
}

void ApplyResume(const v1::JobResult& history, const v1::CacheUsage& cache, v1::Job* job) {
  ClearAttempt(job);
  *job->mutable_result()->mutable_evaluations() = history.evaluations();
  *job->mutable_result()->mutable_freeze_timeline() = history.freeze_timeline();
  if (!history.freeze_timeline().empty()) SetFreeze(*history.freeze_timeline().rbegin(), job);
  BoundHistory(job->mutable_result());
  if (cache.enabled()) *job->mutable_cache() = cache;
}

void BoundHistory(v1::JobResult* result) {
  auto* evaluations = result->mutable_evaluations();
  if (evaluations->size() > kHistoryKept) {
    const int extra = evaluations->size() - kHistoryKept;
    evaluations->DeleteSubrange(0, extra);
    result->set_evaluations_dropped(result->evaluations_dropped() + extra);
  }
  auto* timeline = result->mutable_freeze_timeline();
  if (timeline->size() <= kHistoryKept) return;
  // The oldest decisions that changed nothing go first.
  int extra = timeline->size() - kHistoryKept;
  google::protobuf::RepeatedPtrField<v1::FreezeDecision> kept;
  for (int i = 0; i < timeline->size(); ++i) {
    const v1::FreezeDecision& d = timeline->Get(i);
    if (extra > 0 && d.frozen_after() == d.frozen_before()) {
      --extra;
      result->set_freeze_decisions_dropped(result->freeze_decisions_dropped() + 1);
      continue;
    }
    *kept.Add() = d;
  }
  timeline->Swap(&kept);
}

void ClearAttempt(v1::Job* job) {
  job->clear_progress();
  job->mutable_result()->clear_evaluations();
  job->mutable_result()->clear_freeze_timeline();
  job->mutable_result()->clear_evaluations_dropped();
  job->mutable_result()->clear_freeze_decisions_dropped();
  job->clear_freeze();
  job->clear_cache();
}

}  // namespace ftd::core
