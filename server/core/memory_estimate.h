// How much memory a fine-tuning job needs, estimated from the model's shape
// and the batch before it is queued, so that a job that cannot fit is
// refused at submit instead of taking the daemon down when it starts.
#pragma once

#include <cstdint>
#include <vector>

#include "ftd/v1/ftd.pb.h"
#include "server/scheduler/device.h"

namespace ftd::core {

// The parts of a BERT config.json the estimate reads.
struct ModelShape {
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
};

struct MemoryEstimate {
  int64_t parameters = 0;
  // float32 weights, gradients and AdamW's two moments: 16 bytes a parameter.
  int64_t weights_and_optimizer_bytes = 0;
  // What the forward pass keeps for the backward pass (float32), for every
  // layer trained from the start (nothing is frozen yet at the first step).
  int64_t activation_bytes = 0;
  int64_t total_bytes() const { return weights_and_optimizer_bytes + activation_bytes; }
};

// For a batch of `batch_size` sequences of `sequence_length` tokens. Per
// layer and token the engine keeps about 11 hidden-size vectors (the
// attention's inputs, query, key, value, context and output, the residual
// sums, LayerNorm outputs and dropout masks), two intermediate-size vectors
// (the feed-forward's input to GELU and its output) and two attention rows
// per head (the softmax output and its dropout mask). A lower bound: the
// runtime (LibTorch, the datasets, allocator slack) comes on top. For the
// 6-layer 256-wide model at batch 32 x 48 it is 402 MB; the daemon's peak
// RSS training it on 24,000 rows was 658 MB (docs/reliability.md).
// With a classifier of `num_labels` labels (its weights grow with them).
MemoryEstimate EstimateTrainingMemory(const ModelShape& shape, int64_t batch_size,
                                      int64_t sequence_length, int64_t num_labels = 2);

// The memory each replica of a job with this device request on `replicas`
// devices may use (0: unknown, not checked): the smallest of the devices it
// may be placed on, so that a job admitted fits wherever it runs. A CUDA
// device has its memory_bytes; the replicas on CPU slots share the job's
// `cpu_memory_bytes` (one process). Devices whose memory is unknown are left
// out.
int64_t MemoryBudget(const v1::DeviceRequest& request, int replicas,
                     const std::vector<scheduler::Device>& devices, int64_t cpu_memory_bytes);

}  // namespace ftd::core
