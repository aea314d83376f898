// StepAgreement: what every replica must do alike, as replica 0 decides it.
//
// A replica that left the loop while the others went on would leave them
// waiting in a collective it never joins. So the decisions that end or
// pause the loop (a cancel, a stop for later, a checkpoint) and the frozen
// depth after each decision point are replica 0's, broadcast to the others
// before they act: one small broadcast a step. Replica 0 is the one that
// sees the job's stop token and clock, and writes the checkpoints.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "server/training/parallel/replica_group.h"

namespace ftd::training::parallel {

struct StepControl {
  enum class Stop { kNone, kCancel, kForLater };
  Stop stop = Stop::kNone;
  // Why the job stops for later: "shutdown", "preemption", ... (kForLater).
  std::string stop_reason;
  // Why a checkpoint is due before the next step ("freeze", "steps",
  // "interval"); empty when none.
  std::string checkpoint;
};

class StepAgreement {
 public:
  // `group` outlives it.
  explicit StepAgreement(ReplicaGroup& group) : group_(group) {}

  // Replica 0's `mine` for every replica (the others' is ignored).
  // Errors: ABORTED when the group failed; INVALID_ARGUMENT for a reason
  // the replicas have no code for.
  absl::StatusOr<StepControl> Agree(const StepControl& mine);
  // Replica 0's number (a frozen depth, a precision, a checkpoint's step)
  // for every replica.
  absl::StatusOr<int64_t> AgreeNumber(int64_t mine);

 private:
  ReplicaGroup& group_;
};

}  // namespace ftd::training::parallel
