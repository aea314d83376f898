#include "server/training/freeze/freeze_schedule.h"

#include <algorithm>
#include <cmath>

namespace ftd::training {

FreezeSchedule FreezeSchedule::Geometric(int num_layers, double alpha) {
  return FreezeSchedule(Kind::kGeometric, num_layers, alpha, 0);
}

FreezeSchedule FreezeSchedule::Linear(int num_layers, double freeze_start, double freeze_level) {
  return FreezeSchedule(Kind::kLinear, num_layers, freeze_start, freeze_level);
}

int FreezeSchedule::Depth(int epoch, double progress) const {
  const int most = std::max(0, num_layers_ - 1);
  double depth = 0;
  if (kind_ == Kind::kGeometric) {
    const double kept = std::pow(1 - a_, std::max(0, epoch - 1));
    // The tolerance keeps an exact product (6 * 2/3 = 4) from rounding up.
    depth = std::ceil(num_layers_ * (1 - kept) - 1e-9);
  } else if (progress > a_) {
    const double fraction = std::min(1.0, (progress - a_) / (1 - a_)) * b_;
    depth = std::floor(num_layers_ * fraction + 1e-9);
  }
  return std::clamp(static_cast<int>(depth), 0, most);
}

}  // namespace ftd::training
