#include "server/training/model/residual_norm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "server/training/model/cpu_autocast.h"
#include "server/training/model/fast_dropout.h"

namespace ftd::training {
namespace {

// Rows a block of the column sums covers: fixed, so that the sums do not
// depend on the thread count.
constexpr int64_t kBlockRows = 64;

// Rows [begin, end) of n columns: z = (h + bias) * mask + r, then
// y = (z - mean) / std * gamma + beta; keeps xhat = (z - mean) / std and
// 1 / std. `mask` may be null (no dropout).
__attribute__((target_clones("avx2", "default"))) void ForwardRows(
    const float* __restrict__ h, const float* __restrict__ bias, const float* __restrict__ mask,
    const float* __restrict__ r, const float* __restrict__ gamma, const float* __restrict__ beta,
    float* __restrict__ y, float* __restrict__ xhat, float* __restrict__ rstd, int64_t begin,
    int64_t end, int64_t n, float eps) {
  for (int64_t row = begin; row < end; ++row) {
    const float* __restrict__ hr = h + row * n;
    const float* __restrict__ rr = r + row * n;
    float* __restrict__ zr = xhat + row * n;
    float* __restrict__ yr = y + row * n;
    float sum = 0;
    if (mask != nullptr) {
      const float* __restrict__ mr = mask + row * n;
      for (int64_t j = 0; j < n; ++j) {
        zr[j] = (hr[j] + bias[j]) * mr[j] + rr[j];
        sum += zr[j];
      }
    } else {
      for (int64_t j = 0; j < n; ++j) {
        zr[j] = hr[j] + bias[j] + rr[j];
        sum += zr[j];
      }
    }
    const float mean = sum / static_cast<float>(n);
    float squares = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float d = zr[j] - mean;
      squares += d * d;
    }
    const float inv = 1.0f / std::sqrt(squares / static_cast<float>(n) + eps);
    rstd[row] = inv;
    for (int64_t j = 0; j < n; ++j) {
      const float x = (zr[j] - mean) * inv;
      zr[j] = x;
      yr[j] = x * gamma[j] + beta[j];
    }
  }
}

// Rows [begin, end): the gradients of z (written to dr) and of h (dz * mask,
// to dh), and this block's column sums of dy * xhat, dy and dh added to
// `sums` ([3, n]: gamma's, beta's, the bias's).
__attribute__((target_clones("avx2", "default"))) void BackwardRows(
    const float* __restrict__ dy, const float* __restrict__ xhat, const float* __restrict__ rstd,
    const float* __restrict__ gamma, const float* __restrict__ mask, float* __restrict__ dr,
    float* __restrict__ dh, float* __restrict__ sums, int64_t begin, int64_t end, int64_t n) {
  float* __restrict__ dgamma = sums;
  float* __restrict__ dbeta = sums + n;
  float* __restrict__ dbias = sums + 2 * n;
  for (int64_t row = begin; row < end; ++row) {
    const float* __restrict__ dyr = dy + row * n;
    const float* __restrict__ xr = xhat + row * n;
    float* __restrict__ drr = dr + row * n;
    float* __restrict__ dhr = dh + row * n;
    float a = 0, b = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float g = dyr[j] * gamma[j];
      a += g;
      b += g * xr[j];
    }
    a /= static_cast<float>(n);
    b /= static_cast<float>(n);
    const float inv = rstd[row];
    for (int64_t j = 0; j < n; ++j) {
      const float dz = inv * (dyr[j] * gamma[j] - a - xr[j] * b);
      drr[j] = dz;
      dgamma[j] += dyr[j] * xr[j];
      dbeta[j] += dyr[j];
    }
    if (mask != nullptr) {
      const float* __restrict__ mr = mask + row * n;
      for (int64_t j = 0; j < n; ++j) dhr[j] = drr[j] * mr[j];
    } else {
      for (int64_t j = 0; j < n; ++j) dhr[j] = drr[j];
    }
    for (int64_t j = 0; j < n; ++j) dbias[j] += dhr[j];
  }
}

// Blocks a task takes: about 32k elements.
int64_t GrainBlocks(int64_t n) { return std::max<int64_t>(1, (1 << 15) / (kBlockRows * n)); }

struct ResidualNormFunction : torch::autograd::Function<ResidualNormFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& h_in,
                               const torch::Tensor& bias_in, const torch::Tensor& residual_in,
                               const torch::Tensor& gamma_in, const torch::Tensor& beta_in,
                               double eps, double p, int64_t seed) {
    const torch::Tensor h = h_in.contiguous();
    const torch::Tensor residual = residual_in.contiguous();
    const torch::Tensor bias = bias_in.contiguous();
    const torch::Tensor gamma = gamma_in.contiguous();
    const torch::Tensor beta = beta_in.contiguous();
    const int64_t n = h.size(-1);
    const int64_t rows = h.numel() / n;
    torch::Tensor mask;
    if (p > 0) mask = FastDropoutMask(h.sizes(), p, static_cast<uint64_t>(seed));
    torch::Tensor y = torch::empty_like(h);
    torch::Tensor xhat = torch::empty_like(h);
    torch::Tensor rstd = torch::empty({rows}, h.options());
    const float* hp = h.data_ptr<float>();
    const float* bp = bias.data_ptr<float>();
    const float* mp = mask.defined() ? mask.data_ptr<float>() : nullptr;
    const float* rp = residual.data_ptr<float>();
    const float* gp = gamma.data_ptr<float>();
    const float* betap = beta.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    float* xp = xhat.data_ptr<float>();
    float* sp = rstd.data_ptr<float>();
    const float e = static_cast<float>(eps);
    const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
    at::parallel_for(0, blocks, GrainBlocks(n), [&](int64_t begin, int64_t end) {
      ForwardRows(hp, bp, mp, rp, gp, betap, yp, xp, sp, begin * kBlockRows,
                  std::min(rows, end * kBlockRows), n, e);
    });
    ctx->save_for_backward({xhat, rstd, gamma, mask});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& xhat = saved[0];
    const torch::Tensor& rstd = saved[1];
    const torch::Tensor& gamma = saved[2];
    const torch::Tensor& mask = saved[3];
    const torch::Tensor dy = grads[0].contiguous();
    const int64_t n = xhat.size(-1);
    const int64_t rows = xhat.numel() / n;
    const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
    torch::Tensor dr = torch::empty_like(xhat);
    torch::Tensor dh = torch::empty_like(xhat);
    std::vector<float> partial(static_cast<size_t>(blocks * 3 * n), 0.0f);
    const float* dyp = dy.data_ptr<float>();
    const float* xp = xhat.data_ptr<float>();
    const float* sp = rstd.data_ptr<float>();
    const float* gp = gamma.data_ptr<float>();
    const float* mp = mask.defined() ? mask.data_ptr<float>() : nullptr;
    float* drp = dr.data_ptr<float>();
    float* dhp = dh.data_ptr<float>();
    at::parallel_for(0, blocks, GrainBlocks(n), [&](int64_t begin, int64_t end) {
      for (int64_t block = begin; block < end; ++block) {
        BackwardRows(dyp, xp, sp, gp, mp, drp, dhp, partial.data() + block * 3 * n,
                     block * kBlockRows, std::min(rows, (block + 1) * kBlockRows), n);
      }
    });
    // The blocks' sums in block order, in double.
    std::vector<double> total(static_cast<size_t>(3 * n), 0.0);
    for (int64_t block = 0; block < blocks; ++block) {
      const float* s = partial.data() + block * 3 * n;
      for (int64_t j = 0; j < 3 * n; ++j) total[j] += s[j];
    }
    torch::Tensor sums[3];
    for (int k = 0; k < 3; ++k) {
      sums[k] = torch::empty({n}, xhat.options());
      float* out = sums[k].data_ptr<float>();
      for (int64_t j = 0; j < n; ++j) out[j] = static_cast<float>(total[k * n + j]);
    }
    return {dh, sums[2], dr, sums[0], sums[1], torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

bool FloatCpu(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat;
}

}  // namespace

bool ResidualNormApplies(const torch::Tensor& residual, const torch::Tensor& bias,
                         const torch::Tensor& gamma, const torch::Tensor& beta) {
  if (CpuAutocastEnabled()) return false;
  for (const torch::Tensor* t : {&residual, &bias, &gamma, &beta}) {
    if (!FloatCpu(*t)) return false;
  }
  if (residual.dim() < 1 || residual.size(-1) == 0) return false;
  const int64_t n = residual.size(-1);
  for (const torch::Tensor* t : {&bias, &gamma, &beta}) {
    if (t->dim() != 1 || t->size(0) != n) return false;
  }
  return true;
}

torch::Tensor FusedResidualNorm(const torch::Tensor& h, const torch::Tensor& bias,
                                const torch::Tensor& residual, const torch::Tensor& gamma,
                                const torch::Tensor& beta, double eps, double p, uint64_t seed) {
  if (!ResidualNormApplies(residual, bias, gamma, beta) || !FloatCpu(h) ||
      h.sizes() != residual.sizes() || p >= 1) {
    torch::Tensor z = FastDropout(h + bias, p, /*training=*/p > 0, seed);
    return torch::layer_norm(z + residual, {h.size(-1)}, gamma, beta, eps);
  }
  return ResidualNormFunction::apply(h, bias, residual, gamma, beta, eps, p,
                                     static_cast<int64_t>(seed));
}

}  // namespace ftd::training
