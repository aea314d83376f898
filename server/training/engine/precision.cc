#include "server/training/engine/precision.h"

#include <ATen/autocast_mode.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "absl/strings/str_format.h"

namespace ftd::training {
namespace {

using Clock = std::chrono::steady_clock;

bool AutocastEnabled(bool cuda) {
#if TORCH_VERSION_MAJOR >= 2
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void SetAutocast(bool cuda, bool enabled) {
#if TORCH_VERSION_MAJOR >= 2
  const at::DeviceType type = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_enabled(type, enabled);
  at::autocast::set_autocast_dtype(type, at::kBFloat16);
#else
  if (cuda) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
#endif
}

// Seconds for one call of `pass`, best of bursts sized to about 20 ms each
// (at least one call), after a warm-up call. Reading a value back waits for
// a GPU to finish.
double BestSeconds(const std::function<torch::Tensor()>& pass) {
  auto timed = [&](int calls) {
    const auto start = Clock::now();
    torch::Tensor last;
    for (int i = 0; i < calls; ++i) last = pass();
    last.sum().item<float>();
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  const double first = timed(1);
  const int calls = static_cast<int>(std::clamp(0.02 / std::max(first, 1e-6), 1.0, 50.0));
  double best = std::numeric_limits<double>::infinity();
  for (int burst = 0; burst < 3; ++burst) best = std::min(best, timed(calls) / calls);
  return best;
}

}  // namespace

PrecisionTiming MeasureMatrixProducts(const torch::Device& device, const ProductShape& shape) {
  torch::NoGradGuard no_grad;
  const auto options = torch::TensorOptions().device(device).dtype(torch::kFloat);
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({shape.tokens, shape.hidden}, options);
  const torch::Tensor square = torch::randn({shape.hidden, shape.hidden}, options) * 0.05;
  const torch::Tensor up = torch::randn({shape.intermediate, shape.hidden}, options) * 0.05;
  const torch::Tensor down = torch::randn({shape.hidden, shape.intermediate}, options) * 0.05;
  PrecisionTiming timing;
  timing.fp32_seconds = BestSeconds([&] {
    torch::Tensor h = torch::linear(x, square);
    return torch::linear(torch::linear(h, up), down);
  });
  const torch::Tensor square16 = square.to(torch::kBFloat16);
  const torch::Tensor up16 = up.to(torch::kBFloat16);
  const torch::Tensor down16 = down.to(torch::kBFloat16);
  timing.bf16_seconds = BestSeconds([&] {
    torch::Tensor h = torch::linear(x.to(torch::kBFloat16), square16);
    return torch::linear(torch::linear(h, up16), down16);
  });
  return timing;
}

PrecisionTiming PrecisionProbe::Get(const torch::Device& device, const ProductShape& shape) {
  const Key key{device.str(), device.is_cpu() ? torch::get_num_threads() : 0, shape.tokens,
                shape.hidden, shape.intermediate};
  // Held while measuring: two jobs measuring at once would time each other.
  std::lock_guard<std::mutex> lock(mu_);
  auto it = measured_.find(key);
  if (it == measured_.end()) it = measured_.emplace(key, measure_(device, shape)).first;
  return it->second;
}

const char* PrecisionName(v1::Precision precision) {
  switch (precision) {
    case v1::PRECISION_BF16:
      return "bf16";
    case v1::PRECISION_AUTO:
      return "auto";
    default:
      return "fp32";
  }
}

PrecisionChoice ResolvePrecision(const v1::Hyperparameters& hp, const torch::Device& device,
                                 const ProductShape& shape, PrecisionProbe* probe) {
  PrecisionChoice choice;
  switch (hp.precision()) {
    case v1::PRECISION_BF16:
      choice.precision = v1::PRECISION_BF16;
      choice.why = "as the job asks";
      return choice;
    case v1::PRECISION_FP32:
      choice.why = "as the job asks";
      return choice;
    case v1::PRECISION_AUTO:
      break;
    default:
      if (device.is_cuda() && hp.bf16()) {
        choice.precision = v1::PRECISION_BF16;
        choice.why = "the job's bf16 flag, on a GPU";
      } else {
        choice.why = "the default";
      }
      return choice;
  }
  if (probe == nullptr) {
    choice.why = "auto: no measurement in this engine, so the default";
    return choice;
  }
  const PrecisionTiming t = probe->Get(device, shape);
  const double speedup = t.fp32_seconds / std::max(t.bf16_seconds, 1e-12);
  if (speedup >= kBf16MinSpeedup) choice.precision = v1::PRECISION_BF16;
  choice.why = absl::StrFormat(
      "auto: a layer's products (%d tokens, %d wide, %d inner) take %.2f ms in bf16 against "
      "%.2f ms in fp32 on %s (%.2fx; bf16 from %.1fx)",
      shape.tokens, shape.hidden, shape.intermediate, 1e3 * t.bf16_seconds, 1e3 * t.fp32_seconds,
      device.str(), speedup, kBf16MinSpeedup);
  return choice;
}

AutocastScope::AutocastScope(bool enabled, const torch::Device& device)
    : enabled_(enabled), cuda_(device.is_cuda()) {
  if (!enabled_) return;
  was_enabled_ = AutocastEnabled(cuda_);
  SetAutocast(cuda_, true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  SetAutocast(cuda_, was_enabled_);
}

}  // namespace ftd::training
