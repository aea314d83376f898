#include "server/training/model/bert_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>
#include <set>

#include "server/training/model/attention_products.h"
#include "server/training/model/fast_dropout.h"
#include "server/training/model/fast_gelu.h"
#include "server/training/model/residual_norm.h"

namespace ftd::training {

namespace nn = torch::nn;

torch::Tensor DropoutImpl::forward(const torch::Tensor& x) {
  if (fast) {
    if (!is_training() || p <= 0) return x;
    return FastDropout(x, p, /*training=*/true, stream->Next());
  }
  return torch::dropout(x, p, is_training());
}

std::optional<TokenPacking> TokenPacking::Of(const torch::Tensor& mask_bias, int64_t batch,
                                             int64_t seq) {
  if (!mask_bias.defined() || mask_bias.numel() != batch * seq || mask_bias.dim() != 4 ||
      mask_bias.size(0) != batch || mask_bias.size(3) != seq) {
    return std::nullopt;
  }
  torch::Tensor index = (mask_bias.reshape({batch * seq}) == 0).nonzero().squeeze(1);
  if (index.size(0) == batch * seq || index.size(0) == 0) return std::nullopt;
  return TokenPacking{std::move(index), batch, seq};
}

torch::Tensor TokenPacking::Pack(const torch::Tensor& padded) const {
  return padded.reshape({batch * seq, padded.size(-1)}).index_select(0, index);
}

torch::Tensor TokenPacking::Unpack(const torch::Tensor& packed) const {
  return torch::zeros({batch * seq, packed.size(-1)}, packed.options())
      .index_copy(0, index, packed)
      .view({batch, seq, packed.size(-1)});
}

BertEmbeddingsImpl::BertEmbeddingsImpl(const BertConfig& c) {
  word_embeddings = register_module(
      "word_embeddings",
      nn::Embedding(nn::EmbeddingOptions(c.vocab_size, c.hidden_size).padding_idx(c.pad_token_id)));
  position_embeddings = register_module("position_embeddings",
                                        nn::Embedding(c.max_position_embeddings, c.hidden_size));
  token_type_embeddings =
      register_module("token_type_embeddings", nn::Embedding(c.type_vocab_size, c.hidden_size));
  LayerNorm = register_module(
      "LayerNorm", nn::LayerNorm(nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  dropout = register_module("dropout", Dropout(c.hidden_dropout_prob));
}

torch::Tensor BertEmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  const int64_t seq = input_ids.size(1);
  auto positions = torch::arange(seq, input_ids.options().dtype(torch::kLong)).unsqueeze(0);
  // One segment: token type 0 everywhere.
  auto embeddings = word_embeddings(input_ids) + position_embeddings(positions) +
                    token_type_embeddings->weight[0];
  return dropout(LayerNorm(embeddings));
}

BertSelfAttentionImpl::BertSelfAttentionImpl(const BertConfig& c)
    : heads(c.num_attention_heads), head_size(c.hidden_size / c.num_attention_heads) {
  query = register_module("query", nn::Linear(c.hidden_size, c.hidden_size));
  key = register_module("key", nn::Linear(c.hidden_size, c.hidden_size));
  value = register_module("value", nn::Linear(c.hidden_size, c.hidden_size));
  dropout = register_module("dropout", Dropout(c.attention_probs_dropout_prob));
}

torch::Tensor BertSelfAttentionImpl::Attend(const torch::Tensor& q, const torch::Tensor& k,
                                            const torch::Tensor& v, const torch::Tensor& mask_bias,
                                            int64_t batch, int64_t queries) {
  const int64_t seq = k.size(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_size));
  if (direct_products && DirectAttentionProductsApply(q, k, v)) {
    auto probs = dropout(torch::softmax(AttentionScores(q, k, heads, scale) + mask_bias, -1));
    return AttentionContext(probs, v);
  }
  auto split = [&](const torch::Tensor& x, int64_t len) {
    return x.view({batch, len, heads, head_size}).transpose(1, 2);
  };
  auto scores = torch::matmul(split(q, queries), split(k, seq).transpose(-1, -2)) /
                std::sqrt(static_cast<double>(head_size));
  auto probs = dropout(torch::softmax(scores + mask_bias, -1));
  return torch::matmul(probs, split(v, seq))
      .transpose(1, 2)
      .reshape({batch, queries, heads * head_size});
}

torch::Tensor BertSelfAttentionImpl::forward(const torch::Tensor& hidden,
                                             const torch::Tensor& mask_bias) {
  return Attend(query(hidden), key(hidden), value(hidden), mask_bias, hidden.size(0),
                hidden.size(1));
}

torch::Tensor BertSelfAttentionImpl::forward_first_token(const torch::Tensor& hidden,
                                                         const torch::Tensor& mask_bias) {
  return Attend(query(hidden.narrow(1, 0, 1)), key(hidden), value(hidden), mask_bias,
                hidden.size(0), 1);
}

torch::Tensor BertSelfAttentionImpl::forward_packed(const torch::Tensor& packed,
                                                    const TokenPacking& packing,
                                                    const torch::Tensor& mask_bias) {
  return packing.Pack(Attend(packing.Unpack(query(packed)), packing.Unpack(key(packed)),
                             packing.Unpack(value(packed)), mask_bias, packing.batch, packing.seq));
}

BertResidualOutputImpl::BertResidualOutputImpl(const BertConfig& c, int64_t in_features) {
  dense = register_module("dense", nn::Linear(in_features, c.hidden_size));
  LayerNorm = register_module(
      "LayerNorm", nn::LayerNorm(nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  dropout = register_module("dropout", Dropout(c.hidden_dropout_prob));
}

torch::Tensor BertResidualOutputImpl::forward(const torch::Tensor& x,
                                              const torch::Tensor& residual) {
  // Dropout's fused form needs its fast masks (the same ones, from the same
  // point of the stream); evaluation has none.
  const bool drop = is_training() && dropout->p > 0;
  if (fused_norm && (!drop || dropout->fast) && x.device().is_cpu() &&
      x.scalar_type() == torch::kFloat &&
      ResidualNormApplies(residual, dense->bias, LayerNorm->weight, LayerNorm->bias)) {
    return FusedResidualNorm(torch::matmul(x, dense->weight.t()), dense->bias, residual,
                             LayerNorm->weight, LayerNorm->bias, LayerNorm->options.eps(),
                             drop ? dropout->p : 0.0, drop ? dropout->stream->Next() : 0);
  }
  return LayerNorm(dropout(dense(x)) + residual);
}

BertAttentionImpl::BertAttentionImpl(const BertConfig& c) {
  self = register_module("self", BertSelfAttention(c));
  output = register_module("output", BertResidualOutput(c, c.hidden_size));
}

torch::Tensor BertAttentionImpl::forward(const torch::Tensor& hidden,
                                         const torch::Tensor& mask_bias) {
  return output(self(hidden, mask_bias), hidden);
}

torch::Tensor BertAttentionImpl::forward_first_token(const torch::Tensor& hidden,
                                                     const torch::Tensor& mask_bias) {
  return output(self->forward_first_token(hidden, mask_bias), hidden.narrow(1, 0, 1));
}

torch::Tensor BertAttentionImpl::forward_packed(const torch::Tensor& packed,
                                                const TokenPacking& packing,
                                                const torch::Tensor& mask_bias) {
  return output(self->forward_packed(packed, packing, mask_bias), packed);
}

BertIntermediateImpl::BertIntermediateImpl(const BertConfig& c) : activation(c.hidden_act) {
  dense = register_module("dense", nn::Linear(c.hidden_size, c.intermediate_size));
}

torch::Tensor BertIntermediateImpl::forward(const torch::Tensor& x) {
  auto h = dense(x);
  if (activation == "relu") return torch::relu(h);
  if (activation == "gelu") return fast_gelu ? FastGelu(h) : torch::gelu(h);
  return torch::gelu(h, "tanh");
}

BertLayerImpl::BertLayerImpl(const BertConfig& c) {
  attention = register_module("attention", BertAttention(c));
  intermediate = register_module("intermediate", BertIntermediate(c));
  output = register_module("output", BertResidualOutput(c, c.intermediate_size));
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& hidden, const torch::Tensor& mask_bias) {
  auto attended = attention(hidden, mask_bias);
  return output(intermediate(attended), attended);
}

torch::Tensor BertLayerImpl::forward_first_token(const torch::Tensor& hidden,
                                                 const torch::Tensor& mask_bias) {
  auto attended = attention->forward_first_token(hidden, mask_bias);
  return output(intermediate(attended), attended);
}

torch::Tensor BertLayerImpl::forward_packed(const torch::Tensor& packed,
                                            const TokenPacking& packing,
                                            const torch::Tensor& mask_bias) {
  auto attended = attention->forward_packed(packed, packing, mask_bias);
  return output(intermediate(attended), attended);
}

BertEncoderImpl::BertEncoderImpl(const BertConfig& c) {
  layer = register_module("layer", nn::ModuleList());
  for (int i = 0; i < c.num_hidden_layers; ++i) layer->push_back(BertLayer(c));
}

BertPoolerImpl::BertPoolerImpl(const BertConfig& c) {
  dense = register_module("dense", nn::Linear(c.hidden_size, c.hidden_size));
}

torch::Tensor BertPoolerImpl::forward(const torch::Tensor& hidden) {
  return torch::tanh(dense(hidden.select(1, 0)));
}

BertModelImpl::BertModelImpl(const BertConfig& c) {
  embeddings = register_module("embeddings", BertEmbeddings(c));
  encoder = register_module("encoder", BertEncoder(c));
  pooler = register_module("pooler", BertPooler(c));
}

BertClassifierImpl::BertClassifierImpl(const BertConfig& c, int64_t num_labels)
    : num_layers_(c.num_hidden_layers) {
  bert = register_module("bert", BertModel(c));
  dropout = register_module("dropout", Dropout(c.classifier_dropout));
  classifier = register_module("classifier", nn::Linear(c.hidden_size, num_labels));
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* d = module->as<DropoutImpl>()) d->stream = dropout_stream_;
  }
}

torch::Tensor BertClassifierImpl::MaskBias(const torch::Tensor& attention_mask,
                                           torch::ScalarType dtype) {
  const double lowest = dtype == torch::kFloat ? std::numeric_limits<float>::lowest() : -1e4;
  auto inverted = 1.0 - attention_mask.to(dtype);
  return (inverted * lowest).unsqueeze(1).unsqueeze(2);
}

torch::Tensor BertClassifierImpl::Embed(const torch::Tensor& input_ids) {
  return bert->embeddings(input_ids);
}

torch::Tensor BertClassifierImpl::RunLayers(torch::Tensor hidden, const torch::Tensor& mask_bias,
                                            int from, int to) {
  for (int i = from; i < to; ++i) hidden = layer(i).forward(hidden, mask_bias);
  return hidden;
}

torch::Tensor BertClassifierImpl::Head(const torch::Tensor& hidden) {
  return classifier(dropout(bert->pooler(hidden)));
}

torch::Tensor BertClassifierImpl::RunPrefix(torch::Tensor hidden, const torch::Tensor& mask_bias,
                                            int from, int to) {
  if (!compute_.unpadded_tokens || from >= to || !hidden.device().is_cpu()) {
    return RunLayers(std::move(hidden), mask_bias, from, to);
  }
  std::optional<TokenPacking> packing = TokenPacking::Of(mask_bias, hidden.size(0), hidden.size(1));
  if (!packing) return RunLayers(std::move(hidden), mask_bias, from, to);
  torch::Tensor packed = packing->Pack(hidden);
  for (int i = from; i < to; ++i) packed = layer(i).forward_packed(packed, *packing, mask_bias);
  return packing->Unpack(packed);
}

torch::Tensor BertClassifierImpl::Classify(torch::Tensor hidden, const torch::Tensor& mask_bias,
                                           int from) {
  if (!compute_.first_token_last_layer || from >= num_layers_) {
    return Head(RunPrefix(std::move(hidden), mask_bias, from, num_layers_));
  }
  hidden = RunPrefix(std::move(hidden), mask_bias, from, num_layers_ - 1);
  return Head(layer(num_layers_ - 1).forward_first_token(hidden, mask_bias));
}

torch::Tensor BertClassifierImpl::forward(const torch::Tensor& input_ids,
                                          const torch::Tensor& attention_mask) {
  auto bias = MaskBias(attention_mask, torch::kFloat).to(input_ids.device());
  return Classify(Embed(input_ids), bias, 0);
}

void BertClassifierImpl::SetComputeOptions(const ComputeOptions& options) {
  compute_ = options;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* d = module->as<DropoutImpl>()) d->fast = options.fast_dropout;
    if (auto* a = module->as<BertSelfAttentionImpl>()) {
      a->direct_products = options.direct_attention_products;
    }
    if (auto* i = module->as<BertIntermediateImpl>()) i->fast_gelu = options.fast_gelu;
    if (auto* o = module->as<BertResidualOutputImpl>()) o->fused_norm = options.fused_residual_norm;
  }
}

void InitializeParameters(BertClassifier& model, const BertConfig& config,
                          const std::vector<std::string>& names, uint64_t seed) {
  std::set<std::string> wanted(names.begin(), names.end());
  torch::NoGradGuard no_grad;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    if (!wanted.count(name)) continue;
    torch::Tensor& p = item.value();
    const bool layer_norm = name.find("LayerNorm") != std::string::npos;
    const bool bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (layer_norm) {
      p.fill_(bias ? 0.0 : 1.0);
    } else if (bias) {
      p.zero_();
    } else {
      p.normal_(0.0, config.initializer_range, generator);
      if (name == "bert.embeddings.word_embeddings.weight") p[config.pad_token_id].zero_();
    }
  }
}

}  // namespace ftd::training
