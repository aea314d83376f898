// FreezeController: what freezing does to a model and its optimizer, apart
// from the training loop (as Composer's freeze_layers).
//
// It owns the per-layer gradient sums that AutoFreeze decides on, the
// policy, and the optimizer surgery: a layer that freezes stops taking
// gradients and leaves the optimizer with its state. The frozen set is
// always the embeddings plus encoder layers 0..frozen()-1. The loop calls
// Accumulate() after each backward pass and Decide() at each decision
// point, and acts on the FreezeChange it gets back (train mode, cache depth,
// events).
//
// Holds references to the model's parameters; not thread-safe.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ftd/v1/ftd.pb.h"
#include "server/training/freeze/autofreeze_policy.h"
#include "server/training/freeze/freeze_schedule.h"
#include "server/training/model/bert_model.h"
#include "server/training/optim/fused_adamw.h"

namespace ftd::training {

struct FreezeChange {
  int frozen_before = 0;
  int frozen_after = 0;
  // The policy's decision; absent for a static prefix.
  std::optional<AutoFreezePolicy::Decision> decision;
  bool changed() const { return frozen_after > frozen_before; }
};

class FreezeController {
 public:
  // `policy`: the AutoFreeze policy; `schedule`: a schedule by epoch and
  // progress; neither when nothing decides (no freezing, or the static
  // prefix `initially_frozen`).
  FreezeController(BertClassifierImpl& model, std::optional<AutoFreezePolicy> policy,
                   std::optional<FreezeSchedule> schedule, int initially_frozen);
  // The controller for a job's freeze policy (its defaults filled in).
  static FreezeController FromSpec(BertClassifierImpl& model, const v1::FreezePolicy& policy);

  int frozen() const { return frozen_; }
  int num_layers() const { return num_layers_; }
  // Whether Decide() does anything: AutoFreeze or a schedule.
  bool decides() const { return policy_.has_value() || schedule_.has_value(); }
  // Whether AutoFreeze decides (it keeps state between decision points).
  bool has_policy() const { return policy_.has_value(); }

  // Marks the frozen prefix's parameters as not requiring gradients and
  // returns the others in two AdamW groups: with `weight_decay`, and without
  // (biases and LayerNorm weights).
  std::vector<FusedAdamW::Group> TrainableGroups(double weight_decay);

  // Adds the trainable layers' raw gradients (before clipping) to the sums.
  void Accumulate();

  // A decision point during `epoch` (1-based) at `progress` (the fraction of
  // training steps done): for AutoFreeze, G(l) for each trainable layer from
  // the sums (which restart) and the policy's decision; for a schedule, its
  // depth now. Then the freezing asked for.
  FreezeChange Decide(FusedAdamW& optimizer, int epoch, double progress);

  // Parameters that train, over all parameters (kept up to date by
  // TrainableGroups() and each freeze).
  double TrainableFraction() const { return trainable_fraction_; }

  // The encoder layer a parameter name belongs to; a large number for none.
  static int LayerIndex(const std::string& name);

  // What a checkpoint keeps: the frozen depth, the policy's state and the
  // gradient sums since the last decision point.
  struct Snapshot {
    int frozen = 0;
    std::optional<AutoFreezePolicy::State> policy;
    // Per encoder layer: its parameters' summed gradients (empty for frozen
    // layers and without a policy). Shared with the controller, not copied.
    std::vector<std::vector<torch::Tensor>> gradient_sums;
  };
  Snapshot Save() const;
  // Continues from `snapshot` (copies its tensors); call before
  // TrainableGroups(). Errors: INVALID_ARGUMENT naming what does not fit.
  absl::Status Restore(const Snapshot& snapshot);

 private:
  void Freeze(int to, FusedAdamW& optimizer);
  void CountTrainable();
  void ResetSums();

  BertClassifierImpl& model_;
  std::optional<AutoFreezePolicy> policy_;
  std::optional<FreezeSchedule> schedule_;
  const int num_layers_;
  int frozen_;
  int64_t total_parameters_ = 0;
  double trainable_fraction_ = 1;
  // Each encoder layer's parameters and their summed gradients.
  std::vector<std::vector<torch::Tensor>> layer_params_;
  std::vector<std::vector<torch::Tensor>> gradient_sums_;
};

}  // namespace ftd::training
