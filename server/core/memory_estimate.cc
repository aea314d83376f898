#include "server/core/memory_estimate.h"

#include <algorithm>

namespace ftd::core {

MemoryEstimate EstimateTrainingMemory(const ModelShape& s, int64_t batch_size,
                                      int64_t sequence_length, int64_t num_labels) {
  const int64_t h = s.hidden_size, i = s.intermediate_size;
  const int64_t embeddings =
      (s.vocab_size + s.max_position_embeddings + s.type_vocab_size) * h + 2 * h;  // + LayerNorm
  const int64_t layer = 4 * h * h + 4 * h    // query, key, value, attention output
                        + 2 * h * i + i + h  // feed-forward
                        + 4 * h;             // two LayerNorms
  const int64_t head = h * h + h + num_labels * h + num_labels;  // pooler, the classifier
  MemoryEstimate e;
  e.parameters = embeddings + s.num_hidden_layers * layer + head;
  e.weights_and_optimizer_bytes = 16 * e.parameters;
  const int64_t tokens = batch_size * sequence_length;
  const int64_t per_token_layer = 11 * h + 2 * i + 2 * s.num_attention_heads * sequence_length;
  // ... and each sequence's logits and their gradient.
  e.activation_bytes = 4 * tokens * (s.num_hidden_layers * per_token_layer + 3 * h) +
                       4 * 2 * batch_size * num_labels;
  return e;
}

int64_t MemoryBudget(const v1::DeviceRequest& request, int replicas,
                     const std::vector<scheduler::Device>& devices, int64_t cpu_memory_bytes) {
  replicas = std::max(1, replicas);
  int64_t budget = 0;
  for (const scheduler::Device& d : devices) {
    const bool cuda = d.kind == scheduler::Device::Kind::kCuda;
    bool may_use = false;
    switch (request.kind()) {
      case v1::DeviceRequest::KIND_CPU:
        may_use = !cuda;
        break;
      case v1::DeviceRequest::KIND_CUDA:
        // Several CUDA devices are any of them.
        may_use = cuda && (replicas > 1 || d.index == request.cuda_index());
        break;
      default:  // ANY: a GPU when one is free, else a CPU slot
        may_use = true;
        break;
    }
    const int64_t bytes = cuda ? d.memory_bytes : cpu_memory_bytes / replicas;
    if (may_use && bytes > 0) budget = budget == 0 ? bytes : std::min(budget, bytes);
  }
  return budget;
}

}  // namespace ftd::core
