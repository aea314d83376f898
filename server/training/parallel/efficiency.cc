#include "server/training/parallel/efficiency.h"

namespace ftd::training::parallel {

void EfficiencyMonitor::Record(int depth, double seconds, double exchange_seconds) {
  Totals& t = by_depth_[depth];
  ++t.steps;
  t.seconds += seconds;
  t.exchange_seconds += exchange_seconds;
}

double EfficiencyMonitor::Predict(int depth, int k) const {
  auto it = by_depth_.find(depth);
  if (it == by_depth_.end() || it->second.steps == 0 || k < 1) return 0;
  const double step = it->second.seconds / it->second.steps;
  const double exchange = it->second.exchange_seconds / it->second.steps;
  const double n = devices_;
  const double compute = (step - exchange) * n / k;
  if (k == 1 || devices_ == 1) return compute;
  return compute + exchange * ((k - 1.0) / k) / ((n - 1.0) / n);
}

double EfficiencyMonitor::baseline_seconds() const {
  if (restored_baseline_ > 0) return restored_baseline_;
  auto base = by_depth_.find(0);
  if (base == by_depth_.end() || base->second.steps == 0) return 0;
  return base->second.seconds / base->second.steps;
}

std::optional<int> EfficiencyMonitor::ShrinkTo(int depth) const {
  if (devices_ <= 1 || depth <= 0) return std::nullopt;
  auto now = by_depth_.find(depth);
  const double baseline = baseline_seconds();
  if (baseline <= 0 || now == by_depth_.end() || now->second.steps < options_.measure_steps) {
    return std::nullopt;
  }
  const double bound = options_.max_step_ratio * baseline;
  for (int k = 1; k < devices_; ++k) {
    if (Predict(depth, k) <= bound) return k;
  }
  return std::nullopt;
}

}  // namespace ftd::training::parallel
