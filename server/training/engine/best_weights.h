// BestWeights: the weights of a run's best validation point, so that a job
// exports what its best evaluation measured instead of the last step's
// weights (JobSpec.export = EXPORT_BEST), as managed fine-tuning services and
// Determined's checkpoint policies keep the best checkpoint.
//
// Keep() copies only the parameters that still train: a frozen parameter
// never changes again (freezing never thaws), so its value at the end is its
// value at the best point. Once layers freeze the copy is small. The copies
// live on the CPU; a checkpoint carries them ("best/<parameter name>"), so
// that a resumed job exports the same model as an uninterrupted one.
//
// Not thread-safe: the job's training thread uses it.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "server/training/model/bert_model.h"

namespace ftd::training {

class BestWeights {
 public:
  // The checkpoint's tensor names start with this.
  static constexpr char kPrefix[] = "best/";

  // Replaces the kept weights with copies of `model`'s trainable parameters
  // as of training step `step` (>= 1).
  void Keep(BertClassifierImpl& model, int64_t step);

  // The step of the kept weights; 0 when none are kept.
  int64_t step() const { return step_; }
  // The bytes the copies hold.
  int64_t bytes() const;

  // Writes the kept values into `model`'s parameters (nothing when none are
  // kept).
  void ApplyTo(BertClassifierImpl& model) const;

  // What a checkpoint saves: the copies, named kPrefix + parameter name.
  void AppendTo(std::vector<std::pair<std::string, torch::Tensor>>& tensors) const;
  // Continues from a checkpoint: `step` and its kPrefix tensors (step 0: none
  // kept). Errors: INVALID_ARGUMENT naming a tensor that is not one of
  // `model`'s parameters or has another shape, or a step without tensors.
  absl::Status Restore(int64_t step, const std::map<std::string, torch::Tensor>& tensors,
                       BertClassifierImpl& model);

 private:
  int64_t step_ = 0;
  std::vector<std::pair<std::string, torch::Tensor>> values_;  // CPU copies
};

}  // namespace ftd::training
