#include "server/training/model/fast_gelu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace ftd::training {
namespace {

// erf(z) for float: Eigen's and XLA's rational approximation on [-4, 4]
// (erf rounds to +-1 in float beyond); NaN stays NaN.
inline float Erf(float z) {
  const float x = std::min(std::max(z, -4.0f), 4.0f);
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return x * p / q;
}

// exp(a) for a <= 0, within a few ulp; below -87 it returns exp(-87)
// (about 1.6e-38), which the caller multiplies away.
inline float ExpNonPositive(float a) {
  a = std::max(a, -87.0f);
  // n = round(a / ln 2) by the 1.5 * 2^23 trick, which vectorises anywhere.
  const float n = (a * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (a - n * 0.693359375f) - n * -2.12194440e-4f;  // Cody-Waite
  float p = 1.9875691500e-4f;  // Cephes' expf polynomial on [-ln2/2, ln2/2]
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n >= -126
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

__attribute__((target_clones("avx2", "default"))) void GeluForward(const float* x, float* y,
                                                                   int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) y[i] = x[i] * (0.5f + 0.5f * Erf(x[i] * kSqrtHalf));
}

// d/dx x Phi(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
__attribute__((target_clones("avx2", "default"))) void GeluBackward(const float* x, const float* dy,
                                                                    float* dx, int64_t begin,
                                                                    int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float v = x[i];
    const float cdf = 0.5f + 0.5f * Erf(v * kSqrtHalf);
    dx[i] = dy[i] * (cdf + v * kInvSqrt2Pi * ExpNonPositive(-0.5f * v * v));
  }
}

constexpr int64_t kGrain = 1 << 15;

struct GeluFunction : torch::autograd::Function<GeluFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input) {
    const torch::Tensor x = input.contiguous();
    ctx->save_for_backward({x});
    torch::Tensor y = torch::empty_like(x);
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, x.numel(), kGrain,
                     [&](int64_t begin, int64_t end) { GeluForward(xp, yp, begin, end); });
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::Tensor x = ctx->get_saved_variables()[0];
    const torch::Tensor dy = grads[0].contiguous();
    torch::Tensor dx = torch::empty_like(x);
    const float* xp = x.data_ptr<float>();
    const float* dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    at::parallel_for(0, x.numel(), kGrain,
                     [&](int64_t begin, int64_t end) { GeluBackward(xp, dyp, dxp, begin, end); });
    return {dx};
  }
};

}  // namespace

torch::Tensor FastGelu(const torch::Tensor& x) {
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat) return torch::gelu(x);
  return GeluFunction::apply(x);
}

}  // namespace ftd::training
