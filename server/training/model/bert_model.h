// BertForSequenceClassification in LibTorch, computed as Hugging Face
// transformers computes it, and built as blocks so that a forward pass can
// start at any of them:
//
//   block 0        the embeddings       input ids      -> hidden states
//   block 1 .. L   encoder layer 0..L-1 hidden states  -> hidden states
//   head           pooler + classifier  hidden states  -> logits
//
// Parameter names are Hugging Face's ("bert.encoder.layer.3.attention.self.
// query.weight", "classifier.bias"), so checkpoints load and save by name.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>

#include "server/training/model/bert_config.h"
#include "server/training/model/fast_dropout.h"

namespace ftd::training {

// How the model computes; every choice gives the same function (up to
// float rounding and the dropout masks' random stream). The defaults are the
// fastest measured (docs/performance.md, "Engine kernels"); the others are
// kept for benchmarks to compare against.
struct ComputeOptions {
  // Dropout masks from fast_dropout.h instead of torch::dropout.
  bool fast_dropout = true;
  // The last encoder layer computes only the first token ([CLS]), the one
  // the pooler reads: its attention output and feed-forward for the other
  // tokens are never used.
  bool first_token_last_layer = true;
  // The attention's per-head products with one BLAS call each, from the
  // projections in place (attention_products.h), where they apply.
  bool direct_attention_products = true;
  // GELU (erf form) from fast_gelu.h instead of torch::gelu.
  bool fast_gelu = true;
  // Each block's end, LayerNorm(dropout(dense + bias) + residual), in one
  // pass forward and one backward (residual_norm.h), where it applies.
  bool fused_residual_norm = true;
  // Classify() and RunPrefix() run the token-wise work (the projections, the feed-forward
  // and the block ends) on the batch's real tokens only, packed, and only
  // the attention's products on the padded layout: padding's outputs are
  // never read, and the mask keeps them out of every real token's attention.
  bool unpadded_tokens = true;
};

// The real (not padding) tokens of a padded batch, packed row after row.
struct TokenPacking {
  // From the additive mask bias [batch, 1, 1, seq] (0 where attended); none
  // when the batch has no padding or the bias is not of that shape.
  static std::optional<TokenPacking> Of(const torch::Tensor& mask_bias, int64_t batch, int64_t seq);
  // [batch, seq, hidden] -> [tokens, hidden].
  torch::Tensor Pack(const torch::Tensor& padded) const;
  // [tokens, hidden] -> [batch, seq, hidden], zeros at the padding.
  torch::Tensor Unpack(const torch::Tensor& packed) const;

  torch::Tensor index;  // [tokens]: the flat positions b * seq + t of the real tokens
  int64_t batch = 0;
  int64_t seq = 0;
};

// A dropout layer without parameters, in the module's train/eval mode. Its
// CPU masks' seeds come from `stream` (the model's, shared by all its
// dropout layers).
struct DropoutImpl : torch::nn::Module {
  explicit DropoutImpl(double p) : p(p) {}
  torch::Tensor forward(const torch::Tensor& x);
  double p;
  bool fast = true;
  std::shared_ptr<DropoutStream> stream = std::make_shared<DropoutStream>();
};
TORCH_MODULE(Dropout);

struct BertEmbeddingsImpl : torch::nn::Module {
  explicit BertEmbeddingsImpl(const BertConfig& config);
  torch::Tensor forward(const torch::Tensor& input_ids);

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr},
      token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  Dropout dropout{nullptr};
};
TORCH_MODULE(BertEmbeddings);

struct BertSelfAttentionImpl : torch::nn::Module {
  explicit BertSelfAttentionImpl(const BertConfig& config);
  // `mask_bias`: [batch, 1, 1, seq], 0 where attended, a large negative
  // number at padding.
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& mask_bias);
  // The same for the first token's query only: [batch, 1, hidden].
  torch::Tensor forward_first_token(const torch::Tensor& hidden, const torch::Tensor& mask_bias);
  // On packed tokens [tokens, hidden]: the products on the padded layout.
  torch::Tensor forward_packed(const torch::Tensor& packed, const TokenPacking& packing,
                               const torch::Tensor& mask_bias);

  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
  Dropout dropout{nullptr};
  int64_t heads;
  int64_t head_size;
  bool direct_products = true;  // ComputeOptions::direct_attention_products

 private:
  torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& mask_bias, int64_t batch, int64_t queries);
};
TORCH_MODULE(BertSelfAttention);

// dense -> dropout -> residual -> LayerNorm, as BertSelfOutput and BertOutput.
struct BertResidualOutputImpl : torch::nn::Module {
  BertResidualOutputImpl(const BertConfig& config, int64_t in_features);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);

  torch::nn::Linear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  Dropout dropout{nullptr};
  bool fused_norm = true;  // ComputeOptions::fused_residual_norm
};
TORCH_MODULE(BertResidualOutput);

struct BertAttentionImpl : torch::nn::Module {
  explicit BertAttentionImpl(const BertConfig& config);
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& mask_bias);
  torch::Tensor forward_first_token(const torch::Tensor& hidden, const torch::Tensor& mask_bias);
  torch::Tensor forward_packed(const torch::Tensor& packed, const TokenPacking& packing,
                               const torch::Tensor& mask_bias);

  BertSelfAttention self{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertAttention);

struct BertIntermediateImpl : torch::nn::Module {
  explicit BertIntermediateImpl(const BertConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear dense{nullptr};
  std::string activation;
  bool fast_gelu = true;  // ComputeOptions::fast_gelu
};
TORCH_MODULE(BertIntermediate);

struct BertLayerImpl : torch::nn::Module {
  explicit BertLayerImpl(const BertConfig& config);
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& mask_bias);
  // The layer's output at the first token only: [batch, 1, hidden].
  torch::Tensor forward_first_token(const torch::Tensor& hidden, const torch::Tensor& mask_bias);
  // The layer on packed tokens [tokens, hidden] (TokenPacking).
  torch::Tensor forward_packed(const torch::Tensor& packed, const TokenPacking& packing,
                               const torch::Tensor& mask_bias);

  BertAttention attention{nullptr};
  BertIntermediate intermediate{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertLayer);

struct BertEncoderImpl : torch::nn::Module {
  explicit BertEncoderImpl(const BertConfig& config);
  torch::nn::ModuleList layer{nullptr};
};
TORCH_MODULE(BertEncoder);

struct BertPoolerImpl : torch::nn::Module {
  explicit BertPoolerImpl(const BertConfig& config);
  torch::Tensor forward(const torch::Tensor& hidden);
  torch::nn::Linear dense{nullptr};
};
TORCH_MODULE(BertPooler);

struct BertModelImpl : torch::nn::Module {
  explicit BertModelImpl(const BertConfig& config);
  BertEmbeddings embeddings{nullptr};
  BertEncoder encoder{nullptr};
  BertPooler pooler{nullptr};
};
TORCH_MODULE(BertModel);

class BertClassifierImpl : public torch::nn::Module {
 public:
  BertClassifierImpl(const BertConfig& config, int64_t num_labels);

  int num_layers() const { return num_layers_; }

  // [batch, seq] 0/1 -> the additive attention bias the layers take.
  static torch::Tensor MaskBias(const torch::Tensor& attention_mask, torch::ScalarType dtype);

  // Block 0.
  torch::Tensor Embed(const torch::Tensor& input_ids);
  // Encoder layers [from, to) on `hidden` (the input of layer `from`).
  // Every token's output, padding's too, as transformers computes them.
  torch::Tensor RunLayers(torch::Tensor hidden, const torch::Tensor& mask_bias, int from, int to);
  // The same for the real tokens; padding's outputs are zeros where the
  // compute options unpad the tokens (nothing reads them: the mask keeps
  // padding out of every real token's attention).
  torch::Tensor RunPrefix(torch::Tensor hidden, const torch::Tensor& mask_bias, int from, int to);
  // Pooler and classifier on the last layer's output (all tokens, or the
  // first token only).
  torch::Tensor Head(const torch::Tensor& hidden);
  // Encoder layers [from, L) on `hidden` (the input of layer `from`), then
  // the head: logits [batch, labels]. The last layer computes only the
  // first token when the compute options say so.
  torch::Tensor Classify(torch::Tensor hidden, const torch::Tensor& mask_bias, int from);
  // The whole model: logits [batch, labels].
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);

  const ComputeOptions& compute_options() const { return compute_; }
  void SetComputeOptions(const ComputeOptions& options);

  // The seeds of every dropout mask the model draws on the CPU (a job seeds
  // it; a checkpoint saves and restores it).
  DropoutStream& dropout_stream() { return *dropout_stream_; }

  // The encoder layer `i` (0-based).
  BertLayerImpl& layer(int i) { return *bert->encoder->layer[i]->as<BertLayerImpl>(); }

  BertModel bert{nullptr};
  Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};

 private:
  int num_layers_;
  ComputeOptions compute_;
  std::shared_ptr<DropoutStream> dropout_stream_ = std::make_shared<DropoutStream>();
};
TORCH_MODULE(BertClassifier);

// Hugging Face's _init_weights: Linear and Embedding weights ~ N(0, range),
// biases 0, the padding row 0, LayerNorm 1 and 0. Applied to `names` only,
// the normal draws from a generator seeded with `seed` (the job's own, not
// the process-wide one).
void InitializeParameters(BertClassifier& model, const BertConfig& config,
                          const std::vector<std::string>& names, uint64_t seed = 0);

}  // namespace ftd::training
