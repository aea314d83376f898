#include "server/training/engine/encoded_data.h"

#include <algorithm>

namespace ftd::training {

EncodedData Encode(const WordPieceTokenizer& tokenizer, const TextDataset& data,
                   std::vector<int64_t> labels, int max_length) {
  EncodedData out;
  out.ids.reserve(data.texts.size());
  for (const std::string& text : data.texts) out.ids.push_back(tokenizer.Encode(text, max_length));
  out.labels = std::move(labels);
  return out;
}

Batch MakeBatch(const EncodedData& data, const int64_t* rows, size_t count, int32_t pad_id,
                const torch::Device& device) {
  size_t longest = 0;
  for (size_t i = 0; i < count; ++i) longest = std::max(longest, data.ids[rows[i]].size());
  std::vector<int64_t> ids(count * longest, pad_id), mask(count * longest, 0), labels(count);
  for (size_t i = 0; i < count; ++i) {
    const auto& row = data.ids[rows[i]];
    std::copy(row.begin(), row.end(), ids.begin() + i * longest);
    std::fill(mask.begin() + i * longest, mask.begin() + i * longest + row.size(), 1);
    labels[i] = data.labels[rows[i]];
  }
  const int64_t b = static_cast<int64_t>(count), s = static_cast<int64_t>(longest);
  auto options = torch::TensorOptions().dtype(torch::kLong);
  Batch batch;
  batch.ids = torch::from_blob(ids.data(), {b, s}, options).clone().to(device);
  batch.mask = torch::from_blob(mask.data(), {b, s}, options).clone().to(device);
  batch.labels = torch::from_blob(labels.data(), {b}, options).clone().to(device);
  return batch;
}

}  // namespace ftd::training
