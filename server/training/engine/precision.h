// A job's compute precision: fp32, or bf16 mixed precision (the matrix
// products in bf16 under LibTorch's autocast, with fp32 master weights,
// optimizer state, loss, softmax and layer norms), and PRECISION_AUTO's
// choice between them, measured per device and shape.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "ftd/v1/ftd.pb.h"

namespace ftd::training {

// The matrix products of one encoder layer's forward pass: `tokens` rows
// (batch x sequence) through hidden x hidden and hidden x intermediate.
struct ProductShape {
  int64_t tokens = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;
};

// Seconds for one pass over a shape's products, in each precision.
struct PrecisionTiming {
  double fp32_seconds = 0;
  double bf16_seconds = 0;
};

// Times the products of `shape` on `device` in fp32 and in bf16 (as autocast
// runs them: the activations cast, the weights cast once), best of a few
// bursts, with the calling thread's LibTorch threads. Well under a second
// where bf16 has hardware; a few seconds where it is emulated.
PrecisionTiming MeasureMatrixProducts(const torch::Device& device, const ProductShape& shape);

// PRECISION_AUTO's measurements, each taken once per device, thread count
// and shape, and kept for the daemon's life. Thread-safe.
class PrecisionProbe {
 public:
  using Measure = std::function<PrecisionTiming(const torch::Device&, const ProductShape&)>;
  explicit PrecisionProbe(Measure measure = MeasureMatrixProducts)
      : measure_(std::move(measure)) {}

  PrecisionTiming Get(const torch::Device& device, const ProductShape& shape);

 private:
  using Key = std::tuple<std::string, int, int64_t, int64_t, int64_t>;
  const Measure measure_;
  std::mutex mu_;
  std::map<Key, PrecisionTiming> measured_;
};

// What a job computes with, and why (for its log).
struct PrecisionChoice {
  v1::Precision precision = v1::PRECISION_FP32;  // FP32 or BF16
  std::string why;
};

// PRECISION_AUTO takes bf16 only where it is this much faster than fp32, so
// that noise in the measurement does not flip a job to the slower one.
inline constexpr double kBf16MinSpeedup = 1.1;

// The precision a job computes with on `device`: its `precision`; unset,
// the older `bf16` flag on a GPU, else fp32; PRECISION_AUTO asks `probe`
// (fp32 without one).
PrecisionChoice ResolvePrecision(const v1::Hyperparameters& hp, const torch::Device& device,
                                 const ProductShape& shape, PrecisionProbe* probe);

// "fp32" or "bf16".
const char* PrecisionName(v1::Precision precision);

// bf16 autocast on the device for the scope's lifetime when `enabled`, as
// torch.autocast does: the casts of the weights are cached within the
// outermost scope and dropped at its end, so that the next forward pass
// sees the weights the optimizer updated since.
class AutocastScope {
 public:
  AutocastScope(bool enabled, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  const bool enabled_;
  const bool cuda_;
  bool was_enabled_ = false;
};

}  // namespace ftd::training
