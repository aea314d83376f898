// The self-attention's two batched products on the CPU, one BLAS call a head.
//
// LibTorch 1.13 multiplies the heads' [B, H, L, D] views (torch::matmul) by
// copying them to contiguous buffers and then calling addmm through the
// dispatcher once for each batch row and head, with three select() calls each:
// on the 6-layer model's step, 36 products of 128 small GEMMs each, which took
// 2-3 times what their arithmetic takes (docs/performance.md). These take the
// projections as the linear layers give them ([B, L, H*D], contiguous),
// address each head's slice through its row stride instead of copying it, and
// call the BLAS library's sgemm directly; the context comes out as [B, L, H*D],
// the layout the output projection reads, so no transpose is copied either.
// Their backward passes are the same kind of products.
//
// For float CPU tensors outside autocast, where a BLAS sgemm is loaded (as in
// Debian's LibTorch, which links OpenBLAS): DirectAttentionProductsApply()
// says whether they can run; the model falls back to torch::matmul otherwise.
#pragma once

#include <torch/torch.h>

namespace ftd::training {

// Whether AttentionScores and AttentionContext can run on these tensors.
bool DirectAttentionProductsApply(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v);

// scale * q_h k_h^T for each batch row and head h, where q is [B, Lq, H*D] and
// k is [B, Lk, H*D]: [B, H, Lq, Lk].
torch::Tensor AttentionScores(const torch::Tensor& q, const torch::Tensor& k, int64_t heads,
                              double scale);

// probs_h v_h for each batch row and head h, where probs is [B, H, Lq, Lk]
// and v is [B, Lk, H*D], the heads side by side: [B, Lq, H*D].
torch::Tensor AttentionContext(const torch::Tensor& probs, const torch::Tensor& v);

}  // namespace ftd::training
