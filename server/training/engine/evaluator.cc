#include "server/training/engine/evaluator.h"

#include <algorithm>
#include <array>
#include <map>
#include <numeric>

namespace ftd::training {

EvalResult Evaluate(BertClassifierImpl& model, const EncodedData& data, int batch_size,
                    int32_t pad_id, const torch::Device& device, JobActivationCache* prefix_cache,
                    int frozen) {
  model.eval();
  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(data.ids.size());
  std::vector<int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  std::stable_sort(rows.begin(), rows.end(),
                   [&](int64_t a, int64_t b) { return data.ids[a].size() < data.ids[b].size(); });
  if (prefix_cache != nullptr && frozen <= 0) prefix_cache = nullptr;
  if (prefix_cache != nullptr) prefix_cache->StartEpoch(rows, batch_size);
  double loss_sum = 0;
  std::vector<int64_t> predicted(n);
  for (int64_t start = 0, b = 0; start < n; start += batch_size, ++b) {
    const size_t count = static_cast<size_t>(std::min<int64_t>(batch_size, n - start));
    Batch batch = MakeBatch(data, rows.data() + start, count, pad_id, device);
    torch::Tensor logits;
    if (prefix_cache != nullptr) {
      const torch::Tensor bias = BertClassifierImpl::MaskBias(batch.mask, torch::kFloat).to(device);
      std::vector<CachedActivation> cached = prefix_cache->Take(b);
      torch::Tensor hidden = PrefixOutput(model, batch.ids, bias, cached, frozen, device);
      prefix_cache->Store(rows.data() + start, count, cached, hidden);
      logits = model.Classify(hidden, bias, frozen).to(torch::kFloat);
    } else {
      logits = model.forward(batch.ids, batch.mask).to(torch::kFloat);
    }
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, batch.labels,
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    torch::Tensor argmax = logits.argmax(1).to(torch::kCPU).contiguous();
    const int64_t* guesses = argmax.data_ptr<int64_t>();
    for (size_t i = 0; i < count; ++i) predicted[rows[start + i]] = guesses[i];
  }
  std::map<int64_t, std::array<int64_t, 3>> counts;  // tp, fp, fn
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t truth = data.labels[i], guess = predicted[i];
    if (truth == guess) {
      ++correct;
      ++counts[truth][0];
    } else {
      ++counts[guess][1];
      ++counts[truth][2];
    }
  }
  double f1_sum = 0;
  for (const auto& [label, c] : counts) {
    const double tp = c[0], fp = c[1], fn = c[2];
    const double precision = tp + fp > 0 ? tp / (tp + fp) : 0;
    const double recall = tp + fn > 0 ? tp / (tp + fn) : 0;
    f1_sum += precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
  }
  EvalResult result;
  if (prefix_cache != nullptr) {
    const v1::CacheReport report = prefix_cache->EndEpoch(0);
    result.rows_from_cache = report.epoch().hits() + report.epoch().partial_hits();
    result.cache_segments.assign(report.segments().begin(), report.segments().end());
  }
  result.loss = n > 0 ? loss_sum / n : 0;
  result.accuracy = n > 0 ? static_cast<double>(correct) / n : 0;
  result.macro_f1 = counts.empty() ? 0 : f1_sum / counts.size();
  return result;
}

}  // namespace ftd::training
