#include "server/training/engine/run_snapshot.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ftd::training {
namespace {

constexpr char kWeight[] = "model/";
constexpr char kExpAvg[] = "adamw.m/";
constexpr char kExpAvgSq[] = "adamw.v/";

std::string SumName(int layer, size_t index) {
  return absl::StrCat("freeze.sum/", layer, "/", index);
}

const torch::Tensor* Find(const std::map<std::string, torch::Tensor>& tensors,
                          const std::string& name) {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

}  // namespace

std::pair<internal::TrainingCheckpoint, NamedTensors> CaptureRun(const RunProgress& progress,
                                                                 const RunParts& parts,
                                                                 const FusedAdamW& optimizer) {
  internal::TrainingCheckpoint state;
  NamedTensors tensors;
  state.set_format(1);
  state.set_step(progress.step);
  state.set_epoch(progress.epoch);
  state.set_next_batch(progress.next_batch);
  state.set_epoch_seconds(progress.epoch_seconds);
  state.set_epoch_loss_sum(progress.epoch_loss_sum);
  state.set_epoch_samples(progress.epoch_samples);
  state.set_train_seconds(progress.train_seconds);
  state.set_samples_trained(progress.samples_trained);
  state.set_train_loss(progress.train_loss);
  state.set_efficiency_baseline_seconds(progress.efficiency_baseline_seconds);
  for (double s : progress.seconds_by_depth) state.add_seconds_by_depth(s);
  for (int64_t n : progress.steps_by_depth) state.add_steps_by_depth(n);
  for (double b : progress.allreduce_bytes_by_depth) state.add_allreduce_bytes_by_depth(b);
  for (const v1::Evaluation& e : progress.evaluations) *state.add_evaluations() = e;
  *state.mutable_last_evaluation() = progress.last_evaluation;
  *state.mutable_best_evaluation() = progress.best_evaluation;
  for (const v1::FreezeDecision& d : progress.freeze_timeline) *state.add_freeze_timeline() = d;
  for (const v1::CacheStats& c : progress.cache_epochs) *state.add_cache_epochs() = c;
  for (const std::string& d : progress.block_digests) state.add_block_digests(d);
  *state.mutable_last_cache_report() = progress.last_cache_report;
  for (const v1::CacheSegment& s : progress.validation_segments)
    *state.add_validation_segments() = s;

  DropoutStream& stream = parts.model.dropout_stream();
  state.set_dropout_seed(stream.seed());
  state.set_dropout_draws(stream.draws());

  for (const auto& item : parts.model.named_parameters()) {
    tensors.emplace_back(kWeight + item.key(), item.value());
    std::optional<FusedAdamW::ParamState> adam = optimizer.StateOf(item.value());
    if (!adam.has_value()) continue;
    tensors.emplace_back(kExpAvg + item.key(), adam->exp_avg);
    tensors.emplace_back(kExpAvgSq + item.key(), adam->exp_avg_sq);
    (*state.mutable_adamw_steps())[item.key()] = adam->step;
  }

  const FreezeController::Snapshot freeze = parts.freeze.Save();
  state.set_frozen(freeze.frozen);
  if (freeze.policy.has_value()) {
    state.set_policy_has_baseline(freeze.policy->has_baseline);
    for (double v : freeze.policy->previous) state.add_policy_previous(v);
    for (size_t l = 0; l < freeze.gradient_sums.size(); ++l) {
      for (size_t i = 0; i < freeze.gradient_sums[l].size(); ++i) {
        tensors.emplace_back(SumName(static_cast<int>(l), i), freeze.gradient_sums[l][i]);
      }
    }
  }
  if (parts.train_cache != nullptr) {
    *state.mutable_train_cache() = parts.train_cache->SaveProgress();
  }
  if (parts.validation_cache != nullptr) {
    *state.mutable_validation_cache() = parts.validation_cache->SaveProgress();
  }
  return {std::move(state), std::move(tensors)};
}

absl::StatusOr<RunProgress> RestoreRun(const internal::TrainingCheckpoint& state,
                                       const std::map<std::string, torch::Tensor>& tensors,
                                       const RunParts& parts) {
  {
    torch::NoGradGuard no_grad;
    for (auto& item : parts.model.named_parameters()) {
      const torch::Tensor* saved = Find(tensors, kWeight + item.key());
      if (saved == nullptr || saved->sizes() != item.value().sizes()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the checkpoint lacks weight ", item.key(), " or has another shape"));
      }
      item.value().copy_(*saved);
    }
  }
  parts.model.dropout_stream().Reset(state.dropout_seed(), state.dropout_draws());

  FreezeController::Snapshot freeze;
  freeze.frozen = state.frozen();
  if (parts.freeze.has_policy()) {
    AutoFreezePolicy::State policy;
    policy.frozen = state.frozen();
    policy.has_baseline = state.policy_has_baseline();
    policy.previous.assign(state.policy_previous().begin(), state.policy_previous().end());
    freeze.policy = policy;
    freeze.gradient_sums.resize(parts.freeze.num_layers());
    for (int l = state.frozen(); l < parts.freeze.num_layers(); ++l) {
      for (size_t i = 0;; ++i) {
        const torch::Tensor* sum = Find(tensors, SumName(l, i));
        if (sum == nullptr) break;
        freeze.gradient_sums[l].push_back(*sum);
      }
    }
  }
  RETURN_IF_ERROR(parts.freeze.Restore(freeze));

  if (parts.train_cache != nullptr && state.has_train_cache()) {
    RETURN_IF_ERROR(parts.train_cache->RestoreProgress(state.train_cache()));
  }
  if (parts.validation_cache != nullptr && state.has_validation_cache()) {
    RETURN_IF_ERROR(parts.validation_cache->RestoreProgress(state.validation_cache()));
  }

  RunProgress progress;
  progress.step = state.step();
  progress.epoch = state.epoch();
  progress.next_batch = state.next_batch();
  progress.epoch_seconds = state.epoch_seconds();
  progress.epoch_loss_sum = state.epoch_loss_sum();
  progress.epoch_samples = state.epoch_samples();
  progress.train_seconds = state.train_seconds();
  progress.samples_trained = state.samples_trained();
  progress.train_loss = state.train_loss();
  progress.efficiency_baseline_seconds = state.efficiency_baseline_seconds();
  progress.seconds_by_depth.assign(state.seconds_by_depth().begin(),
                                   state.seconds_by_depth().end());
  progress.steps_by_depth.assign(state.steps_by_depth().begin(), state.steps_by_depth().end());
  progress.allreduce_bytes_by_depth.assign(state.allreduce_bytes_by_depth().begin(),
                                           state.allreduce_bytes_by_depth().end());
  progress.evaluations.assign(state.evaluations().begin(), state.evaluations().end());
  progress.last_evaluation = state.last_evaluation();
  progress.best_evaluation = state.best_evaluation();
  progress.freeze_timeline.assign(state.freeze_timeline().begin(), state.freeze_timeline().end());
  progress.cache_epochs.assign(state.cache_epochs().begin(), state.cache_epochs().end());
  progress.block_digests.assign(state.block_digests().begin(), state.block_digests().end());
  progress.last_cache_report = state.last_cache_report();
  progress.validation_segments.assign(state.validation_segments().begin(),
                                      state.validation_segments().end());
  return progress;
}

absl::Status RestoreOptimizer(const internal::TrainingCheckpoint& state,
                              const std::map<std::string, torch::Tensor>& tensors,
                              BertClassifierImpl& model, FusedAdamW& optimizer) {
  for (auto& item : model.named_parameters()) {
    if (!optimizer.StateOf(item.value()).has_value()) continue;
    const torch::Tensor* m = Find(tensors, kExpAvg + item.key());
    const torch::Tensor* v = Find(tensors, kExpAvgSq + item.key());
    auto step = state.adamw_steps().find(item.key());
    if (m == nullptr || v == nullptr || step == state.adamw_steps().end() ||
        !optimizer.RestoreState(item.value(), FusedAdamW::ParamState{*m, *v, step->second})) {
      return absl::InvalidArgumentError(
          absl::StrCat("the checkpoint lacks AdamW's state of ", item.key()));
    }
  }
  return absl::OkStatus();
}

}  // namespace ftd::training
