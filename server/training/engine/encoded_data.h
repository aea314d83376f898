// A dataset as the model takes it: token ids per row and label ids, and the
// padded batches made from them.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "server/training/data/text_dataset.h"
#include "server/training/tokenizer/wordpiece_tokenizer.h"

namespace ftd::training {

struct EncodedData {
  std::vector<std::vector<int32_t>> ids;
  std::vector<int64_t> labels;
  size_t size() const { return ids.size(); }
};

EncodedData Encode(const WordPieceTokenizer& tokenizer, const TextDataset& data,
                   std::vector<int64_t> labels, int max_length);

struct Batch {
  torch::Tensor ids, mask, labels;  // [b, s], [b, s], [b]
};

// Rows `rows[0..count)` padded with `pad_id` to the longest of them.
Batch MakeBatch(const EncodedData& data, const int64_t* rows, size_t count, int32_t pad_id,
                const torch::Device& device);

}  // namespace ftd::training
