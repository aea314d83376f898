// Loading and saving BertClassifier weights in Hugging Face's layout.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/bert_model.h"
#include "server/training/model/safetensors.h"

namespace ftd::training {

// A safetensors tensor as a LibTorch tensor of its own dtype (a copy).
// Errors: UNIMPLEMENTED for a dtype LibTorch has no match for.
absl::StatusOr<torch::Tensor> ToTensor(const SafetensorsFile& file, const TensorInfo& info);

struct LoadReport {
  // The model's parameters the checkpoint lacks (initialised as
  // transformers does).
  std::vector<std::string> initialized;
  // The checkpoint's tensors the model does not use (an MLM head, say).
  std::vector<std::string> unused;
};

// Loads <dir>/model.safetensors, or the shards that
// <dir>/model.safetensors.index.json names, into `model` (F32, F16 or BF16;
// keys with or without the "bert." prefix; LayerNorm gamma/beta too).
// Missing parameters are initialised with InitializeParameters, from
// `init_seed`.
// Errors name the file or the tensor: DATA_LOSS for a corrupt file,
// INVALID_ARGUMENT for a shape mismatch or a malformed index, NOT_FOUND when
// there are no weights.
absl::StatusOr<LoadReport> LoadWeights(const std::string& dir, const BertConfig& config,
                                       BertClassifier& model, uint64_t init_seed = 0);

// Writes a Hugging Face BertForSequenceClassification folder into `out_dir`:
// config.json (architectures, id2label, label2id), vocab.txt and
// tokenizer_config.json copied from `base_dir`, model.safetensors (F32).
absl::Status SaveModel(const std::string& out_dir, const std::string& base_dir,
                       const BertConfig& config, const std::vector<std::string>& labels,
                       BertClassifier& model);

}  // namespace ftd::training
