// The end of each attention and feed-forward block in one pass:
// LayerNorm(dropout(h + bias) + residual), with its gradients.
//
// Unfused, LibTorch runs it as five element-wise passes forward (the linear
// layer's bias add, the dropout mask's product, the residual add, the layer
// norm's statistics and its output) and four backward (the layer norm's,
// the mask's product, the bias gradient's column sums, the residual's
// accumulation), each over the whole [tokens, hidden] activation. Here each
// token's row is read once forward (its normalised values and 1/std are kept
// for the backward pass) and once backward, where the bias, gamma and beta
// gradients are summed in the same pass.
//
// The dropout mask is FastDropoutMask's, from the same seed, so the fused
// and unfused paths give the same values. Column sums are taken in fixed
// blocks of rows and added in block order: the same result for any number
// of threads.
//
// For float CPU tensors outside autocast; ResidualNormApplies says when.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace ftd::training {

// Whether FusedResidualNorm covers a residual like this one: float, on the
// CPU, with bf16 autocast off, its last dimension the size of `bias`,
// `gamma` and `beta` (float CPU vectors too). `h` must then be float on the
// CPU and shaped as `residual` (FusedResidualNorm falls back otherwise).
bool ResidualNormApplies(const torch::Tensor& residual, const torch::Tensor& bias,
                         const torch::Tensor& gamma, const torch::Tensor& beta);

// layer_norm(dropout(h + bias) + residual) over the last dimension, with the
// dropout mask FastDropoutMask(h.sizes(), p, seed) where p > 0 (none where
// p == 0), differentiable in h, bias, residual, gamma and beta.
torch::Tensor FusedResidualNorm(const torch::Tensor& h, const torch::Tensor& bias,
                                const torch::Tensor& residual, const torch::Tensor& gamma,
                                const torch::Tensor& beta, double eps, double p, uint64_t seed);

}  // namespace ftd::training
