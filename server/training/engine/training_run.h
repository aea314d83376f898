// TrainingRun: one replica's run of a fine-tuning job. It loads the job's
// inputs and weights, resumes from the newest checkpoint, trains the epochs
// (freezing as the policy decides, reading the frozen prefix's outputs from
// the activation cache) and, on replica 0, validates, checkpoints and
// exports the model.
//
// A job on one device is one run in a group of one; a job on N devices runs
// N of them, one a device, in a ReplicaGroup (parallel/): each trains on its
// share of every batch, the gradients of the layers that still train are
// summed across them after each backward pass (GradientReducer), and the
// decisions that must be alike (stop, checkpoint, frozen depth, precision)
// are replica 0's (StepAgreement). The replicas' weights stay identical, so
// a checkpoint of replica 0 is the job's.
#pragma once

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"
#include "server/training/engine/bert_trainer.h"
#include "server/training/parallel/replica_group.h"
#include "server/training/trainer.h"

namespace ftd::training {

// Runs one replica of `context`'s job on context.devices()[group.rank()].
// Returns the job's result on replica 0 (an empty one on the others);
// CANCELLED when it stopped on request; may throw LibTorch's errors.
absl::StatusOr<v1::JobResult> RunTraining(TrainingContext& context,
                                          const BertTrainer::Options& options,
                                          parallel::ReplicaGroup& group);

}  // namespace ftd::training
