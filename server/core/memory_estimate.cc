#include "server/core/memory_estimate.h"

namespace ftd::core {

MemoryEstimate EstimateTrainingMemory(const ModelShape& s, int64_t batch_size,
                                      int64_t sequence_length) {
  const int64_t h = s.hidden_size, i = s.intermediate_size;
  const int64_t embeddings =
      (s.vocab_size + s.max_position_embeddings + s.type_vocab_size) * h + 2 * h;  // + LayerNorm
  const int64_t layer = 4 * h * h + 4 * h      // query, key, value, attention output
                        + 2 * h * i + i + h    // feed-forward
                        + 4 * h;               // two LayerNorms
  const int64_t head = h * h + h + 2 * h + 2;  // pooler, a two-label classifier
  MemoryEstimate e;
  e.parameters = embeddings + s.num_hidden_layers * layer + head;
  e.weights_and_optimizer_bytes = 16 * e.parameters;
  const int64_t tokens = batch_size * sequence_length;
  const int64_t per_token_layer = 11 * h + 2 * i + 2 * s.num_attention_heads * sequence_length;
  e.activation_bytes = 4 * tokens * (s.num_hidden_layers * per_token_layer + 3 * h);
  return e;
}

}  // namespace ftd::core
