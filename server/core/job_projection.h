// The job record as its events make it: a pure function from an event to
// the changes it makes to the job, so that the live record, a recovered one
// and a test all agree.
#pragma once

#include "ftd/v1/ftd.pb.h"

namespace ftd::core {

// How many checkpoints a job keeps (its record lists these).
inline constexpr int kCheckpointsKept = 2;

// Applies `event` to `job`: a state change sets the state (and the end time
// of a final one); progress, evaluations, freeze decisions, cache reports
// and checkpoints update what the record shows of them (histories bounded,
// see BoundHistory). Other events (logs,
// artifacts) leave it as it is.
void ApplyEvent(const v1::JobEvent& event, v1::Job* job);

// What a job resumed from a checkpoint shows: the evaluations, freeze
// decisions and cache counts made before it, as the checkpoint holds them
// (the work after it is lost and done again).
void ApplyResume(const v1::JobResult& history, const v1::CacheUsage& cache, v1::Job* job);

// Forgets what an earlier attempt of the job showed (it starts over).
void ClearAttempt(v1::Job* job);

bool IsFinal(v1::JobState state);

// Evaluations and freeze decisions a job's record holds at most.
inline constexpr int kHistoryKept = 200;

// Bounds the record's histories: the newest kHistoryKept evaluations; the
// freeze decisions that changed the depth and the newest others,
// kHistoryKept in all. Counts what it leaves out.
void BoundHistory(v1::JobResult* result);

}  // namespace ftd::core
