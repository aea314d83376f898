// Evaluator: the classifier's loss, accuracy and macro-F1 on a dataset.
#pragma once

#include <torch/torch.h>

#include "server/training/engine/encoded_data.h"
#include "server/training/model/bert_model.h"

namespace ftd::training {

struct EvalResult {
  double loss = 0, accuracy = 0, macro_f1 = 0;
};

// Puts `model` in eval mode and runs `data` through it in batches of
// `batch_size`, rows of similar length together (less padding, same results).
// Macro-F1 is over the labels that occur in the truth or the predictions.
// The caller restores train mode.
EvalResult Evaluate(BertClassifierImpl& model, const EncodedData& data, int batch_size,
                    int32_t pad_id, const torch::Device& device);

}  // namespace ftd::training
