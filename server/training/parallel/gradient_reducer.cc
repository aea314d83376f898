#include "server/training/parallel/gradient_reducer.h"

#include <utility>

namespace ftd::training::parallel {

GradientReducer::GradientReducer(ReplicaGroup& group, Options options)
    : group_(group), options_(options) {}

GradientReducer::~GradientReducer() { RemoveHooks(); }

void GradientReducer::RemoveHooks() {
  for (auto& [param, handle] : hooks_) param.remove_hook(handle);
  hooks_.clear();
}

void GradientReducer::Rebuild(const std::vector<torch::Tensor>& params) {
  RemoveHooks();
  buckets_.clear();
  params_ = static_cast<int64_t>(params.size());
  // Last layers first: backward produces their gradients first.
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const torch::Tensor& p = *it;
    const int64_t bytes = p.numel() * p.element_size();
    const bool fits =
        !buckets_.empty() && buckets_.back().options.dtype() == p.options().dtype() &&
        buckets_.back().options.device() == p.device() &&
        (buckets_.back().numel + p.numel()) * p.element_size() <= options_.bucket_bytes;
    if (!fits || bytes > options_.bucket_bytes) {
      buckets_.push_back(Bucket{});
      buckets_.back().element_size = static_cast<int64_t>(p.element_size());
      buckets_.back().options = p.options().requires_grad(false);
    }
    Bucket& bucket = buckets_.back();
    bucket.params.push_back(p);
    bucket.offsets.push_back(bucket.numel);
    bucket.numel += p.numel();
  }
  if (!options_.overlap || group_.alone()) return;
  // Each gradient goes into its bucket as backward computes it, and a bucket
  // whose gradients are all in starts its all-reduce while backward goes on.
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t i = 0; i < buckets_[b].params.size(); ++i) {
      torch::Tensor& p = buckets_[b].params[i];
      const unsigned handle =
          p.register_hook([this, b, i](const torch::Tensor& grad) { Ready(b, i, grad); });
      hooks_.emplace_back(p, handle);
    }
  }
}

int64_t GradientReducer::bytes_per_step(size_t step_sums) const {
  int64_t bytes = 0;
  for (const Bucket& b : buckets_) bytes += b.numel * b.element_size;
  // The step's sums and one flag a parameter, as doubles.
  return bytes + static_cast<int64_t>((step_sums + static_cast<size_t>(params_)) * sizeof(double));
}

void GradientReducer::BeginStep() {
  if (!options_.overlap || group_.alone()) return;
  for (Bucket& bucket : buckets_) {
    bucket.flat = torch::empty({bucket.numel}, bucket.options);
    bucket.written.assign(bucket.params.size(), false);
    bucket.pending = static_cast<int64_t>(bucket.params.size());
  }
  next_launch_ = 0;
  started_ = true;
  hook_status_ = absl::OkStatus();
}

void GradientReducer::Ready(size_t b, size_t i, const torch::Tensor& grad) {
  if (!started_ || !hook_status_.ok()) return;
  Bucket& bucket = buckets_[b];
  if (bucket.written[i]) return;
  {
    torch::NoGradGuard no_grad;
    bucket.flat.narrow(0, bucket.offsets[i], bucket.params[i].numel()).copy_(grad.reshape({-1}));
  }
  bucket.written[i] = true;
  --bucket.pending;
  // In bucket order on every replica: c10d pairs collectives by their order.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    hook_status_ = group_.StartAllReduceSum(buckets_[next_launch_].flat);
    ++next_launch_;
    if (!hook_status_.ok()) return;
  }
}

absl::Status GradientReducer::Reduce(std::vector<double>& step_sums) {
  if (group_.alone()) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  const bool overlapped = started_;
  started_ = false;
  if (!hook_status_.ok()) {
    (void)group_.WaitAll();
    return hook_status_;
  }
  // The step's sums, then whether each parameter has a gradient here
  // (summed: how many replicas have one).
  torch::Tensor extra =
      torch::zeros({static_cast<int64_t>(step_sums.size()) + params_}, torch::kDouble);
  double* e = extra.data_ptr<double>();
  for (size_t i = 0; i < step_sums.size(); ++i) e[i] = step_sums[i];
  int64_t flag = static_cast<int64_t>(step_sums.size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    if (!overlapped) bucket.flat = torch::empty({bucket.numel}, bucket.options);
    for (size_t i = 0; i < bucket.params.size(); ++i) {
      torch::Tensor& p = bucket.params[i];
      if (overlapped) {
        if (bucket.written[i]) {
          e[flag] = 1;
        } else {  // no gradient came: zeros, before its bucket starts
          bucket.flat.narrow(0, bucket.offsets[i], p.numel()).zero_();
        }
      } else {
        torch::Tensor slice = bucket.flat.narrow(0, bucket.offsets[i], p.numel());
        const torch::Tensor& grad = p.grad();
        if (grad.defined()) {
          slice.copy_(grad.reshape({-1}));
          e[flag] = 1;
        } else {
          slice.zero_();
        }
      }
      ++flag;
    }
    // Without overlap every bucket starts here; with it, those that did not
    // fill during backward (a gradient that never came).
    if (!overlapped || b >= next_launch_) {
      if (absl::Status s = group_.StartAllReduceSum(bucket.flat); !s.ok()) return s;
    }
  }
  if (overlapped) next_launch_ = buckets_.size();
  if (absl::Status s = group_.StartAllReduceSum(extra); !s.ok()) return s;
  if (absl::Status s = group_.WaitAll(); !s.ok()) return s;
  for (size_t i = 0; i < step_sums.size(); ++i) step_sums[i] = e[i];
  flag = static_cast<int64_t>(step_sums.size());
  for (Bucket& bucket : buckets_) {
    for (size_t i = 0; i < bucket.params.size(); ++i) {
      torch::Tensor& p = bucket.params[i];
      if (e[flag] > 0) {
        p.mutable_grad() = bucket.flat.narrow(0, bucket.offsets[i], p.numel()).view(p.sizes());
      } else {
        p.mutable_grad() = torch::Tensor();
      }
      ++flag;
    }
    bucket.flat = torch::Tensor();  // the parameters hold views of it now
  }
  return absl::OkStatus();
}

}  // namespace ftd::training::parallel
