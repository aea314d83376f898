#include "server/training/engine/freeze_controller.h"

#include <algorithm>
#include <unordered_set>

#include "absl/strings/str_cat.h"

namespace ftd::training {

FreezeController::FreezeController(BertClassifierImpl& model,
                                   std::optional<AutoFreezePolicy> policy,
                                   std::optional<FreezeSchedule> schedule, int initially_frozen)
    : model_(model),
      policy_(std::move(policy)),
      schedule_(std::move(schedule)),
      num_layers_(model.num_layers()),
      frozen_(initially_frozen) {
  layer_params_.resize(num_layers_);
  for (auto& item : model_.named_parameters()) {
    total_parameters_ += item.value().numel();
    const int layer = LayerIndex(item.key());
    if (layer < num_layers_) layer_params_[layer].push_back(item.value());
  }
  if (policy_) ResetSums();
}

FreezeController FreezeController::FromSpec(BertClassifierImpl& model, const v1::FreezePolicy& fp) {
  const int layers = model.num_layers();
  std::optional<AutoFreezePolicy> policy;
  if (fp.has_autofreeze()) {
    AutoFreezePolicy::Options o;
    o.percentile = fp.autofreeze().percentile();
    o.freeze_through_first_above = fp.autofreeze().freeze_through_first_above();
    o.max_layers_per_decision = fp.autofreeze().max_layers_per_decision();
    o.smoothing = fp.autofreeze().smoothing();
    o.keep_trainable = std::max(1, fp.autofreeze().keep_trainable());
    o.start_fraction = fp.autofreeze().start_fraction();
    policy.emplace(layers, o);
  }
  std::optional<FreezeSchedule> schedule;
  if (fp.has_geometric()) {
    schedule = FreezeSchedule::Geometric(layers, fp.geometric().alpha());
  } else if (fp.has_linear()) {
    schedule =
        FreezeSchedule::Linear(layers, fp.linear().freeze_start(), fp.linear().freeze_level());
  }
  const int initially_frozen = fp.has_static_() ? fp.static_().frozen_layers() : 0;
  return FreezeController(model, std::move(policy), std::move(schedule), initially_frozen);
}

int FreezeController::LayerIndex(const std::string& name) {
  static const std::string prefix = "bert.encoder.layer.";
  if (name.rfind(prefix, 0) != 0) return 1 << 30;
  return std::stoi(name.substr(prefix.size()));
}

std::vector<FusedAdamW::Group> FreezeController::TrainableGroups(double weight_decay) {
  FusedAdamW::Group decay{{}, weight_decay}, no_decay{{}, 0.0};
  for (auto& item : model_.named_parameters()) {
    const std::string& name = item.key();
    const bool frozen = frozen_ > 0 &&
                        (name.rfind("bert.embeddings.", 0) == 0 || LayerIndex(name) < frozen_) &&
                        name.rfind("bert.pooler", 0) != 0;
    item.value().set_requires_grad(!frozen);
    if (frozen) continue;
    const bool no_wd = name.find("LayerNorm") != std::string::npos ||
                       name.compare(name.size() - 4, 4, "bias") == 0;
    (no_wd ? no_decay : decay).params.push_back(item.value());
  }
  CountTrainable();
  return {std::move(decay), std::move(no_decay)};
}

void FreezeController::ResetSums() {
  gradient_sums_.assign(num_layers_, {});
  for (int l = frozen_; l < num_layers_; ++l) {
    for (const torch::Tensor& p : layer_params_[l])
      gradient_sums_[l].push_back(torch::zeros_like(p));
  }
}

void FreezeController::Accumulate() {
  if (!policy_) return;
  torch::NoGradGuard no_grad;
  for (int l = frozen_; l < num_layers_; ++l) {
    for (size_t i = 0; i < layer_params_[l].size(); ++i) {
      const torch::Tensor& grad = layer_params_[l][i].grad();
      if (grad.defined()) gradient_sums_[l][i].add_(grad);
    }
  }
}

FreezeChange FreezeController::Decide(FusedAdamW& optimizer, int epoch, double progress) {
  FreezeChange change;
  change.frozen_before = change.frozen_after = frozen_;
  if (schedule_) {
    const int depth = schedule_->Depth(epoch, progress);
    if (depth > frozen_) Freeze(depth, optimizer);
    change.frozen_after = frozen_;
    return change;
  }
  if (!policy_) return change;
  std::vector<double> norms(num_layers_, 0.0);
  for (int l = frozen_; l < num_layers_; ++l) {
    double sum = 0;
    for (torch::Tensor& g : gradient_sums_[l]) {
      sum += g.abs().sum().item<double>();
      g.zero_();
    }
    norms[l] = sum;
  }
  change.decision = policy_->Decide(norms, progress);
  if (change.decision->frozen_after > frozen_) Freeze(change.decision->frozen_after, optimizer);
  change.frozen_after = frozen_;
  return change;
}

void FreezeController::Freeze(int to, FusedAdamW& optimizer) {
  std::vector<torch::Tensor> newly_frozen;
  if (frozen_ == 0) {
    for (auto& p : model_.bert->embeddings->parameters()) newly_frozen.push_back(p);
  }
  for (int l = frozen_; l < to; ++l) {
    newly_frozen.insert(newly_frozen.end(), layer_params_[l].begin(), layer_params_[l].end());
    if (l < static_cast<int>(gradient_sums_.size())) gradient_sums_[l].clear();
  }
  std::unordered_set<c10::TensorImpl*> gone;
  for (torch::Tensor& p : newly_frozen) {
    p.set_requires_grad(false);
    p.mutable_grad().reset();
    gone.insert(p.unsafeGetTensorImpl());
  }
  optimizer.Remove(gone);
  frozen_ = to;
  CountTrainable();
}

FreezeController::Snapshot FreezeController::Save() const {
  Snapshot snapshot;
  snapshot.frozen = frozen_;
  if (policy_) {
    snapshot.policy = policy_->state();
    snapshot.gradient_sums = gradient_sums_;
  }
  return snapshot;
}

absl::Status FreezeController::Restore(const Snapshot& snapshot) {
  if (snapshot.frozen < frozen_ || snapshot.frozen >= std::max(1, num_layers_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("frozen depth ", snapshot.frozen, " does not fit ", num_layers_, " layers"));
  }
  if (policy_.has_value() != snapshot.policy.has_value()) {
    return absl::InvalidArgumentError("the freeze policy's state does not match the job's policy");
  }
  if (policy_) {
    if (snapshot.policy->frozen != snapshot.frozen || !policy_->Restore(*snapshot.policy)) {
      return absl::InvalidArgumentError("the AutoFreeze state does not fit the model");
    }
    if (static_cast<int>(snapshot.gradient_sums.size()) != num_layers_) {
      return absl::InvalidArgumentError("the gradient sums do not fit the model's layers");
    }
  }
  frozen_ = snapshot.frozen;
  if (policy_) {
    ResetSums();
    torch::NoGradGuard no_grad;
    for (int l = frozen_; l < num_layers_; ++l) {
      const auto& saved = snapshot.gradient_sums[l];
      if (saved.size() != gradient_sums_[l].size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", l, "'s gradient sums: ", saved.size(), " tensors, expected ",
                         gradient_sums_[l].size()));
      }
      for (size_t i = 0; i < saved.size(); ++i) {
        if (saved[i].sizes() != gradient_sums_[l][i].sizes()) {
          return absl::InvalidArgumentError(
              absl::StrCat("layer ", l, "'s gradient sum ", i, " has another shape"));
        }
        gradient_sums_[l][i].copy_(saved[i]);
      }
    }
  }
  return absl::OkStatus();
}

void FreezeController::CountTrainable() {
  int64_t trained = 0;
  for (const torch::Tensor& p : model_.parameters()) {
    if (p.requires_grad()) trained += p.numel();
  }
  trainable_fraction_ =
      total_parameters_ > 0 ? static_cast<double>(trained) / total_parameters_ : 1;
}

}  // namespace ftd::training
