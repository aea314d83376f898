#include "server/training/model/attention_products.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <limits>

#include "server/training/model/cpu_autocast.h"

namespace ftd::training {
namespace {

// The Fortran BLAS sgemm (column-major), as every BLAS library exports it.
using Sgemm = void (*)(const char* trans_a, const char* trans_b, const int* m, const int* n,
                       const int* k, const float* alpha, const float* a, const int* lda,
                       const float* b, const int* ldb, const float* beta, float* c, const int* ldc);

// The sgemm of the BLAS library LibTorch loaded; null where it exports none
// (a LibTorch with its BLAS linked in statically, such as pip's).
Sgemm LoadedSgemm() {
  static const Sgemm sgemm = reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "sgemm_"));
  return sgemm;
}

// Row-major C (m x n, row stride ldc) = alpha * op(A) op(B), op(A) m x k and
// op(B) k x n, each op the matrix or its transpose. In column-major terms
// that is C^T = op(B)^T op(A)^T, a row-major buffer read column-major being
// its transpose.
struct Matrix {
  const float* data;
  int ld;
  bool transposed;
};
void Multiply(Sgemm sgemm, int m, int n, int k, float alpha, Matrix a, Matrix b, float* c,
              int ldc) {
  const char ta = a.transposed ? 'T' : 'N';
  const char tb = b.transposed ? 'T' : 'N';
  const float beta = 0.0f;
  sgemm(&tb, &ta, &n, &m, &k, &alpha, b.data, &b.ld, a.data, &a.ld, &beta, c, &ldc);
}

// Runs `product(row, head)` for each batch row and head, split over
// LibTorch's threads.
template <typename Product>
void ForEachHead(int64_t batch, int64_t heads, const Product& product) {
  at::parallel_for(0, batch * heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) product(i / heads, i % heads);
  });
}

int Int(int64_t v) { return static_cast<int>(v); }

// Q [B, Lq, H*D] and K [B, Lk, H*D] -> scale * Q_h K_h^T: [B, H, Lq, Lk].
struct ScoresFunction : torch::autograd::Function<ScoresFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& k, int64_t heads, double scale) {
    ctx->save_for_backward({q, k});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["scale"] = scale;
    const int64_t batch = q.size(0), lq = q.size(1), lk = k.size(1), width = q.size(2);
    const int64_t d = width / heads;
    torch::Tensor scores = torch::empty({batch, heads, lq, lk}, q.options());
    const float* qp = q.data_ptr<float>();
    const float* kp = k.data_ptr<float>();
    float* sp = scores.data_ptr<float>();
    const Sgemm sgemm = LoadedSgemm();
    ForEachHead(batch, heads, [&](int64_t b, int64_t h) {
      Multiply(sgemm, Int(lq), Int(lk), Int(d), static_cast<float>(scale),
               {qp + b * lq * width + h * d, Int(width), false},
               {kp + b * lk * width + h * d, Int(width), true}, sp + (b * heads + h) * lq * lk,
               Int(lk));
    });
    return scores;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor& q = saved[0];
    const torch::Tensor& k = saved[1];
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const float scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    const torch::Tensor ds = grads[0].contiguous();
    const int64_t batch = q.size(0), lq = q.size(1), lk = k.size(1), width = q.size(2);
    const int64_t d = width / heads;
    const float* qp = q.data_ptr<float>();
    const float* kp = k.data_ptr<float>();
    const float* dsp = ds.data_ptr<float>();
    const Sgemm sgemm = LoadedSgemm();
    torch::Tensor dq, dk;
    if (ctx->needs_input_grad(0)) {
      dq = torch::empty_like(q);
      float* out = dq.data_ptr<float>();
      ForEachHead(batch, heads, [&](int64_t b, int64_t h) {  // dQ_h = scale dS_h K_h
        Multiply(sgemm, Int(lq), Int(d), Int(lk), scale,
                 {dsp + (b * heads + h) * lq * lk, Int(lk), false},
                 {kp + b * lk * width + h * d, Int(width), false}, out + b * lq * width + h * d,
                 Int(width));
      });
    }
    if (ctx->needs_input_grad(1)) {
      dk = torch::empty_like(k);
      float* out = dk.data_ptr<float>();
      ForEachHead(batch, heads, [&](int64_t b, int64_t h) {  // dK_h = scale dS_h^T Q_h
        Multiply(sgemm, Int(lk), Int(d), Int(lq), scale,
                 {dsp + (b * heads + h) * lq * lk, Int(lk), true},
                 {qp + b * lq * width + h * d, Int(width), false}, out + b * lk * width + h * d,
                 Int(width));
      });
    }
    return {dq, dk, torch::Tensor(), torch::Tensor()};
  }
};

// P [B, H, Lq, Lk] and V [B, Lk, H*D] -> P_h V_h side by side: [B, Lq, H*D].
struct ContextFunction : torch::autograd::Function<ContextFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& probs,
                               const torch::Tensor& v) {
    const torch::Tensor p = probs.contiguous();
    ctx->save_for_backward({p, v});
    const int64_t batch = p.size(0), heads = p.size(1), lq = p.size(2), lk = p.size(3);
    const int64_t width = v.size(2), d = width / heads;
    torch::Tensor context = torch::empty({batch, lq, width}, v.options());
    const float* pp = p.data_ptr<float>();
    const float* vp = v.data_ptr<float>();
    float* cp = context.data_ptr<float>();
    const Sgemm sgemm = LoadedSgemm();
    ForEachHead(batch, heads, [&](int64_t b, int64_t h) {
      Multiply(sgemm, Int(lq), Int(d), Int(lk), 1.0f,
               {pp + (b * heads + h) * lq * lk, Int(lk), false},
               {vp + b * lk * width + h * d, Int(width), false}, cp + b * lq * width + h * d,
               Int(width));
    });
    return context;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor& p = saved[0];
    const torch::Tensor& v = saved[1];
    const torch::Tensor dc = grads[0].contiguous();
    const int64_t batch = p.size(0), heads = p.size(1), lq = p.size(2), lk = p.size(3);
    const int64_t width = v.size(2), d = width / heads;
    const float* pp = p.data_ptr<float>();
    const float* vp = v.data_ptr<float>();
    const float* dcp = dc.data_ptr<float>();
    const Sgemm sgemm = LoadedSgemm();
    torch::Tensor dp, dv;
    if (ctx->needs_input_grad(0)) {
      dp = torch::empty_like(p);
      float* out = dp.data_ptr<float>();
      ForEachHead(batch, heads, [&](int64_t b, int64_t h) {  // dP_h = dC_h V_h^T
        Multiply(sgemm, Int(lq), Int(lk), Int(d), 1.0f,
                 {dcp + b * lq * width + h * d, Int(width), false},
                 {vp + b * lk * width + h * d, Int(width), true}, out + (b * heads + h) * lq * lk,
                 Int(lk));
      });
    }
    if (ctx->needs_input_grad(1)) {
      dv = torch::empty_like(v);
      float* out = dv.data_ptr<float>();
      ForEachHead(batch, heads, [&](int64_t b, int64_t h) {  // dV_h = P_h^T dC_h
        Multiply(sgemm, Int(lk), Int(d), Int(lq), 1.0f,
                 {pp + (b * heads + h) * lq * lk, Int(lk), true},
                 {dcp + b * lq * width + h * d, Int(width), false}, out + b * lk * width + h * d,
                 Int(width));
      });
    }
    return {dp, dv};
  }
};

bool Fits(const torch::Tensor& t) {
  return t.dim() == 3 && t.is_contiguous() && t.numel() > 0 &&
         t.numel() <= std::numeric_limits<int>::max();
}

}  // namespace

bool DirectAttentionProductsApply(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v) {
  if (LoadedSgemm() == nullptr || CpuAutocastEnabled()) return false;
  for (const torch::Tensor* t : {&q, &k, &v}) {
    if (!t->device().is_cpu() || t->scalar_type() != torch::kFloat || !Fits(*t)) return false;
  }
  return q.size(0) == k.size(0) && k.size(0) == v.size(0) && k.size(1) == v.size(1) &&
         q.size(2) == k.size(2) && k.size(2) == v.size(2);
}

torch::Tensor AttentionScores(const torch::Tensor& q, const torch::Tensor& k, int64_t heads,
                              double scale) {
  return ScoresFunction::apply(q, k, heads, scale);
}

torch::Tensor AttentionContext(const torch::Tensor& probs, const torch::Tensor& v) {
  return ContextFunction::apply(probs, v);
}

}  // namespace ftd::training
