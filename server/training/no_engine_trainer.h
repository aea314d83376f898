// The trainer the daemon uses until the training engine lands: every job
// fails at once with a message that says so. Honest about what is missing
// rather than pretending to train.
#pragma once

#include "server/training/trainer.h"

namespace ftd::training {

class NoEngineTrainer final : public Trainer {
 public:
  absl::StatusOr<v1::JobResult> Train(TrainingContext& /*context*/) override {
    return absl::UnimplementedError(
        "this build of ftd has no training engine yet; the job was validated and scheduled but "
        "cannot be trained");
  }
};

}  // namespace ftd::training
