// FusedAdamW: AdamW (Loshchilov & Hutter) as torch.optim.AdamW computes it,
// in one pass over each parameter instead of LibTorch's nine tensor
// operations, with gradient clipping folded into the same pass.
//
// For each parameter with a gradient g, at its step t (counted per
// parameter, as torch does), learning rate lr and weight decay wd:
//   p <- p * (1 - lr * wd)
//   g <- g * grad_scale                     (clipping; 1 when not clipping)
//   m <- b1 * m + (1 - b1) * g
//   v <- b2 * v + (1 - b2) * g * g
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// float32 CPU parameters take the fused loop (split across LibTorch's intra-op
// threads); others (CUDA, bf16) the same formula in tensor operations.
//
// Owns the moment estimates; the parameters are shared with the model.
// Not thread-safe: one training thread calls it.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <unordered_set>
#include <vector>

namespace ftd::training {

class FusedAdamW {
 public:
  struct Options {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
  };
  // Parameters sharing a weight decay.
  struct Group {
    std::vector<torch::Tensor> params;
    double weight_decay = 0;
  };

  FusedAdamW(std::vector<Group> groups, Options options);

  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }

  // The L2 norm of all gradients together (undefined gradients count 0).
  double GradNorm() const;
  // torch.nn.utils.clip_grad_norm_'s factor for `max_norm` given the norm:
  // min(1, max_norm / (norm + 1e-6)).
  static double ClipScale(double norm, double max_norm);

  // One update of every parameter that has a gradient, its gradient
  // multiplied by `grad_scale` first.
  void Step(double grad_scale = 1.0);

  // Drops every gradient (set to undefined), so that the next backward pass
  // writes fresh ones instead of adding into zeros.
  void ZeroGrad();

  // Stops updating the parameters in `gone` and frees their state. Returns
  // how many it held.
  size_t Remove(const std::unordered_set<c10::TensorImpl*>& gone);

  size_t size() const { return params_.size(); }

  // One parameter's state: its moment estimates and step count.
  struct ParamState {
    torch::Tensor exp_avg, exp_avg_sq;
    int64_t step = 0;
  };
  // The state of parameter `p` (shared, not copied); nullopt when the
  // optimizer does not update `p`.
  std::optional<ParamState> StateOf(const torch::Tensor& p) const;
  // Replaces `p`'s state with a copy of `state` (a checkpoint's). False when
  // the optimizer does not update `p` or a shape differs.
  bool RestoreState(const torch::Tensor& p, const ParamState& state);

 private:
  struct Param {
    torch::Tensor value, exp_avg, exp_avg_sq;
    double weight_decay = 0;
    int64_t step = 0;
  };
  void Update(Param& p, const torch::Tensor& grad, double grad_scale);

  Options options_;
  std::vector<Param> params_;
};

}  // namespace ftd::training
