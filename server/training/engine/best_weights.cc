#include "server/training/engine/best_weights.h"

#include "absl/strings/str_cat.h"

namespace ftd::training {

void BestWeights::Keep(BertClassifierImpl& model, int64_t step) {
  torch::NoGradGuard no_grad;
  values_.clear();
  for (auto& item : model.named_parameters()) {
    if (!item.value().requires_grad()) continue;
    values_.emplace_back(item.key(), item.value().detach().to(torch::kCPU, /*non_blocking=*/false,
                                                              /*copy=*/true));
  }
  step_ = step;
}

int64_t BestWeights::bytes() const {
  int64_t n = 0;
  for (const auto& [name, value] : values_) n += value.numel() * value.element_size();
  return n;
}

void BestWeights::ApplyTo(BertClassifierImpl& model) const {
  if (values_.empty()) return;
  torch::NoGradGuard no_grad;
  auto params = model.named_parameters();
  for (const auto& [name, value] : values_) {
    if (torch::Tensor* p = params.find(name)) p->copy_(value);
  }
}

void BestWeights::AppendTo(std::vector<std::pair<std::string, torch::Tensor>>& tensors) const {
  for (const auto& [name, value] : values_) tensors.emplace_back(kPrefix + name, value);
}

absl::Status BestWeights::Restore(int64_t step,
                                  const std::map<std::string, torch::Tensor>& tensors,
                                  BertClassifierImpl& model) {
  std::vector<std::pair<std::string, torch::Tensor>> values;
  auto params = model.named_parameters();
  const std::string prefix = kPrefix;
  for (const auto& [key, value] : tensors) {
    if (key.rfind(prefix, 0) != 0) continue;
    const std::string name = key.substr(prefix.size());
    const torch::Tensor* p = params.find(name);
    if (p == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the best weights' tensor \"", key, "\" is not a parameter of the model"));
    }
    if (p->sizes() != value.sizes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the best weights' tensor \"", key, "\" has another shape"));
    }
    values.emplace_back(name, value.to(p->dtype()).to(torch::kCPU, false, true));
  }
  if (step > 0 && values.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the best weights of step ", step, " have no tensors"));
  }
  if (step <= 0 && !values.empty()) {
    return absl::InvalidArgumentError("best weights' tensors without their step");
  }
  step_ = step > 0 ? step : 0;
  values_ = std::move(values);
  return absl::OkStatus();
}

}  // namespace ftd::training
