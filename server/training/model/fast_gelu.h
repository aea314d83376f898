// GELU (the exact, erf form BERT uses) on the CPU, cheaper than LibTorch's.
//
// LibTorch 1.13's CPU GELU evaluates erf through an exponential (Abramowitz
// and Stegun 7.1.26), and its backward pass evaluates erf and a second
// exponential. Here erf is a rational function, odd over even polynomials
// in x on [-4, 4] and +-1 beyond, the approximation Eigen and XLA use for
// float (within a few ulp of erf), so the forward pass needs no exponential
// and the backward pass one, for the density exp(-x^2/2) / sqrt(2 pi). The
// loops are plain arithmetic that the compiler vectorises, built for AVX2
// too and chosen at load time where the CPU has it.
//
// For float CPU tensors; FastGelu falls back to torch::gelu for others.
#pragma once

#include <torch/torch.h>

namespace ftd::training {

// gelu(x) = x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2, with gradients.
torch::Tensor FastGelu(const torch::Tensor& x);

}  // namespace ftd::training
