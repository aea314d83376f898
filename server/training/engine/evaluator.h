// Evaluator: the classifier's loss, accuracy and macro-F1 on a dataset.
#pragma once

#include <torch/torch.h>

#include "server/training/cache/activation_cache.h"
#include "server/training/engine/encoded_data.h"
#include "server/training/model/bert_model.h"

namespace ftd::training {

struct EvalResult {
  double loss = 0, accuracy = 0, macro_f1 = 0;
  // Rows that started from a stored prefix output, and the cache's segments
  // now (with a prefix cache).
  int64_t rows_from_cache = 0;
  std::vector<v1::CacheSegment> cache_segments;
};

// Puts `model` in eval mode and runs `data` through it in batches of
// `batch_size`, rows of similar length together (less padding, same results).
// Macro-F1 is over the labels that occur in the truth or the predictions.
// With `prefix_cache` (the data's activation cache, at depth `frozen` > 0),
// each row starts from its stored output of the frozen prefix, and rows
// without one are stored for the next evaluation. The caller restores train
// mode.
EvalResult Evaluate(BertClassifierImpl& model, const EncodedData& data, int batch_size,
                    int32_t pad_id, const torch::Device& device,
                    JobActivationCache* prefix_cache = nullptr, int frozen = 0);

}  // namespace ftd::training
