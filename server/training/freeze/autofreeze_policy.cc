#include "server/training/freeze/autofreeze_policy.h"

#include <algorithm>
#include <cmath>

namespace ftd::training {

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return values[below] + (values[above] - values[below]) * fraction;
}

AutoFreezePolicy::AutoFreezePolicy(int num_layers, Options options, int initially_frozen)
    : num_layers_(num_layers),
      options_(options),
      frozen_(std::clamp(initially_frozen, 0, std::max(0, num_layers - 1))) {}

AutoFreezePolicy::AutoFreezePolicy(int num_layers, double percentile, int initially_frozen)
    : AutoFreezePolicy(num_layers, Options{percentile}, initially_frozen) {}

int AutoFreezePolicy::max_frozen() const {
  return std::max(0, num_layers_ - std::max(1, options_.keep_trainable));
}

AutoFreezePolicy::Decision AutoFreezePolicy::Decide(const std::vector<double>& raw_norms, double progress) {
  std::vector<double> gradient_norms = raw_norms;
  gradient_norms.resize(num_layers_, 0.0);
  if (options_.smoothing > 0 && has_baseline_) {
    for (int l = frozen_; l < num_layers_; ++l) {
      gradient_norms[l] =
          options_.smoothing * previous_[l] + (1 - options_.smoothing) * gradient_norms[l];
    }
  }
  Decision d;
  d.frozen_before = frozen_;
  d.change_rates.assign(num_layers_, 0.0);
  if (!has_baseline_) {
    has_baseline_ = true;
    previous_ = gradient_norms;
    previous_.resize(num_layers_, 0.0);
    d.baseline = true;
    d.frozen_after = frozen_;
    return d;
  }
  std::vector<double> trainable;
  for (int l = frozen_; l < num_layers_; ++l) {
    const double prev = previous_[l];
    const double cur = l < static_cast<int>(gradient_norms.size()) ? gradient_norms[l] : 0.0;
    d.change_rates[l] = prev != 0 ? std::fabs(prev - cur) / prev : 0.0;
    trainable.push_back(d.change_rates[l]);
  }
  d.threshold = Percentile(trainable, options_.percentile);
  int first_trainable = frozen_;
  while (first_trainable < num_layers_ - 1 && d.change_rates[first_trainable] < d.threshold) {
    ++first_trainable;
  }
  if (options_.freeze_through_first_above) ++first_trainable;
  first_trainable = std::min(first_trainable, max_frozen());
  if (progress < options_.start_fraction) first_trainable = frozen_;
  if (options_.max_layers_per_decision > 0) {
    first_trainable = std::min(first_trainable, frozen_ + options_.max_layers_per_decision);
  }
  frozen_ = std::max(frozen_, first_trainable);
  d.frozen_after = frozen_;
  for (int l = 0; l < num_layers_ && l < static_cast<int>(gradient_norms.size()); ++l) {
    previous_[l] = gradient_norms[l];
  }
  return d;
}

bool AutoFreezePolicy::Restore(const State& state) {
  if (state.frozen < 0 || state.frozen > std::max(0, num_layers_ - 1)) return false;
  if (state.has_baseline && static_cast<int>(state.previous.size()) != num_layers_) return false;
  frozen_ = state.frozen;
  has_baseline_ = state.has_baseline;
  previous_ = state.previous;
  return true;
}

}  // namespace ftd::training
