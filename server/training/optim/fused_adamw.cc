#include "server/training/optim/fused_adamw.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace ftd::training {

FusedAdamW::FusedAdamW(std::vector<Group> groups, Options options) : options_(options) {
  for (Group& group : groups) {
    for (torch::Tensor& p : group.params) {
      Param param;
      param.value = p;
      param.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Contiguous);
      param.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Contiguous);
      param.weight_decay = group.weight_decay;
      params_.push_back(std::move(param));
    }
  }
}

double FusedAdamW::GradNorm() const {
  torch::NoGradGuard no_grad;
  // Per-parameter norms stay on their device; one transfer at the end.
  std::vector<torch::Tensor> norms;
  for (const Param& p : params_) {
    const torch::Tensor& g = p.value.grad();
    if (g.defined()) norms.push_back(g.norm().to(torch::kDouble));
  }
  if (norms.empty()) return 0;
  return torch::stack(norms).norm().item<double>();
}

double FusedAdamW::ClipScale(double norm, double max_norm) {
  const double scale = max_norm / (norm + 1e-6);
  return scale < 1 ? scale : 1;
}

void FusedAdamW::Step(double grad_scale) {
  torch::NoGradGuard no_grad;
  for (Param& p : params_) {
    const torch::Tensor& grad = p.value.grad();
    if (grad.defined()) Update(p, grad, grad_scale);
  }
}

void FusedAdamW::Update(Param& p, const torch::Tensor& grad, double grad_scale) {
  ++p.step;
  const double lr = options_.lr, b1 = options_.beta1, b2 = options_.beta2, eps = options_.eps;
  const double bias1 = 1 - std::pow(b1, static_cast<double>(p.step));
  const double bias2 = 1 - std::pow(b2, static_cast<double>(p.step));
  const double decay = 1 - lr * p.weight_decay;
  const double step_size = lr / bias1;
  const double inv_sqrt_bias2 = 1 / std::sqrt(bias2);
  torch::Tensor& value = p.value;
  if (value.device().is_cpu() && value.scalar_type() == torch::kFloat && value.is_contiguous() &&
      grad.scalar_type() == torch::kFloat) {
    const torch::Tensor g = grad.contiguous();
    float* w = value.data_ptr<float>();
    float* m = p.exp_avg.data_ptr<float>();
    float* v = p.exp_avg_sq.data_ptr<float>();
    const float* gp = g.data_ptr<float>();
    const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2);
    const float f1b1 = static_cast<float>(1 - b1), f1b2 = static_cast<float>(1 - b2);
    const float fdecay = static_cast<float>(decay), fstep = static_cast<float>(step_size);
    const float fscale = static_cast<float>(grad_scale), feps = static_cast<float>(eps);
    const float finv = static_cast<float>(inv_sqrt_bias2);
    at::parallel_for(0, value.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float gi = gp[i] * fscale;
        const float mi = fb1 * m[i] + f1b1 * gi;
        const float vi = fb2 * v[i] + f1b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * fdecay - fstep * mi / (std::sqrt(vi) * finv + feps);
      }
    });
    return;
  }
  // The same steps as tensor operations.
  torch::Tensor g = grad_scale == 1 ? grad : grad * grad_scale;
  value.mul_(decay);
  p.exp_avg.mul_(b1).add_(g, 1 - b1);
  p.exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2);
  torch::Tensor denom = (p.exp_avg_sq.sqrt() * inv_sqrt_bias2).add_(eps);
  value.addcdiv_(p.exp_avg, denom, -step_size);
}

void FusedAdamW::ZeroGrad() {
  for (Param& p : params_) p.value.mutable_grad().reset();
}

size_t FusedAdamW::Remove(const std::unordered_set<c10::TensorImpl*>& gone) {
  const size_t before = params_.size();
  params_.erase(
      std::remove_if(params_.begin(), params_.end(),
                     [&](const Param& p) { return gone.count(p.value.unsafeGetTensorImpl()) > 0; }),
      params_.end());
  return before - params_.size();
}

std::optional<FusedAdamW::ParamState> FusedAdamW::StateOf(const torch::Tensor& p) const {
  for (const Param& param : params_) {
    if (param.value.unsafeGetTensorImpl() == p.unsafeGetTensorImpl())
      return ParamState{param.exp_avg, param.exp_avg_sq, param.step};
  }
  return std::nullopt;
}

bool FusedAdamW::RestoreState(const torch::Tensor& p, const ParamState& state) {
  for (Param& param : params_) {
    if (param.value.unsafeGetTensorImpl() != p.unsafeGetTensorImpl()) continue;
    if (!state.exp_avg.defined() || !state.exp_avg_sq.defined() ||
        state.exp_avg.sizes() != param.exp_avg.sizes() ||
        state.exp_avg_sq.sizes() != param.exp_avg_sq.sizes()) {
      return false;
    }
    torch::NoGradGuard no_grad;
    param.exp_avg.copy_(state.exp_avg);
    param.exp_avg_sq.copy_(state.exp_avg_sq);
    param.step = state.step;
    return true;
  }
  return false;
}

}  // namespace ftd::training
