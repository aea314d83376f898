#include "server/training/model/bert_model.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/training/engine/precision.h"
#include "server/training/model/attention_products.h"
#include "server/training/model/bert_weights.h"
#include "server/training/model/checkpoint.h"
#include "server/training/model/fast_dropout.h"
#include "server/training/model/fast_gelu.h"
#include "server/training/model/residual_norm.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::training {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kModel[] = FTD_SOURCE_DIR "/examples/models/bert-mini-6l-256h";
constexpr char kGolden[] = FTD_SOURCE_DIR "/tests/testdata/golden/encoder_golden.safetensors";

torch::Tensor Golden(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* info = file.Find(name);
  EXPECT_NE(info, nullptr) << name;
  return *ToTensor(file, *info);
}

// transformers' BertModel (fp32, CPU, eval) on a padded batch of 16 x 31:
// the embeddings output and every layer's hidden states, within 1e-4.
TEST(BertModelTest, MatchesTransformersLayerByLayer) {
  ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(kModel));
  BertClassifier model(config, 2);
  ASSERT_OK_AND_ASSIGN(LoadReport report, LoadWeights(kModel, config, model));
  EXPECT_THAT(report.initialized, Contains("bert.pooler.dense.weight"));
  EXPECT_THAT(report.initialized, Contains("classifier.weight"));
  EXPECT_EQ(report.initialized.size(), 4u);  // pooler and classifier, weight and bias
  EXPECT_THAT(report.unused, Contains(HasSubstr("cls.predictions")));
  model->eval();
  torch::NoGradGuard no_grad;

  ASSERT_OK_AND_ASSIGN(auto golden, SafetensorsFile::Open(kGolden));
  torch::Tensor ids = Golden(*golden, "input_ids");
  torch::Tensor mask = Golden(*golden, "attention_mask");
  torch::Tensor bias = BertClassifierImpl::MaskBias(mask, torch::kFloat);
  torch::Tensor hidden = model->Embed(ids);
  double worst = 0;
  for (int layer = 0; layer <= config.num_hidden_layers; ++layer) {
    if (layer > 0) hidden = model->RunLayers(hidden, bias, layer - 1, layer);
    torch::Tensor expected = Golden(*golden, "hidden_states." + std::to_string(layer));
    double error = (hidden - expected).abs().max().item<double>();
    worst = std::max(worst, error);
    EXPECT_LT(error, 1e-4) << "hidden_states." << layer;
  }
  EXPECT_LT((hidden - Golden(*golden, "last_hidden_state")).abs().max().item<double>(), 1e-4);
  // Running from any block gives the same as running through.
  torch::Tensor at3 = model->RunLayers(model->Embed(ids), bias, 0, 3);
  EXPECT_TRUE(torch::allclose(model->RunLayers(at3, bias, 3, config.num_hidden_layers), hidden));
  RecordProperty("max_abs_error", std::to_string(worst));
  // The real tokens alone, unpadded (the golden batch has padding): the same
  // outputs there, zeros at the padding.
  ASSERT_TRUE(model->compute_options().unpadded_tokens);
  ASSERT_LT(mask.sum().item<int64_t>(), mask.numel());
  torch::Tensor real = mask.unsqueeze(2).to(torch::kFloat);
  torch::Tensor unpadded = model->RunPrefix(model->Embed(ids), bias, 0, config.num_hidden_layers);
  EXPECT_LT(((unpadded - hidden) * real).abs().max().item<double>(), 1e-5);
  EXPECT_EQ((unpadded * (1 - real)).abs().max().item<double>(), 0);
}

// The attention's direct products against torch::matmul on the heads' views,
// forward and backward, with queries and keys of different lengths (and a
// single query, as the first-token-only last layer has).
TEST(AttentionProductsTest, MatchTorchMatmulForEveryHeadWithGradients) {
  torch::manual_seed(5);
  const int64_t batch = 3, heads = 4, d = 8, keys = 7;
  for (int64_t queries : {5, 1}) {
    SCOPED_TRACE(queries);
    auto leaf = [](torch::IntArrayRef sizes) {
      return torch::randn(sizes, torch::kFloat).requires_grad_();
    };
    torch::Tensor q = leaf({batch, queries, heads * d}), k = leaf({batch, keys, heads * d}),
                  v = leaf({batch, keys, heads * d});
    ASSERT_TRUE(DirectAttentionProductsApply(q, k, v));
    auto split = [&](const torch::Tensor& x) {
      return x.view({batch, x.size(1), heads, d}).transpose(1, 2);
    };
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    // Probabilities that depend on the scores, so that their gradient flows
    // back through both products.
    torch::Tensor scores = AttentionScores(q, k, heads, scale);
    torch::Tensor context = AttentionContext(torch::softmax(scores, -1), v);
    torch::Tensor ref_scores = torch::matmul(split(q), split(k).transpose(-1, -2)) * scale;
    torch::Tensor ref_context = torch::matmul(torch::softmax(ref_scores, -1), split(v))
                                    .transpose(1, 2)
                                    .reshape({batch, queries, heads * d});
    EXPECT_LT((scores - ref_scores).abs().max().item<double>(), 1e-5);
    EXPECT_LT((context - ref_context).abs().max().item<double>(), 1e-5);

    torch::Tensor weights = torch::randn(context.sizes());
    auto grads = torch::autograd::grad({(context * weights).sum()}, {q, k, v});
    auto ref_grads = torch::autograd::grad({(ref_context * weights).sum()}, {q, k, v});
    for (int i = 0; i < 3; ++i) {
      SCOPED_TRACE(i);
      EXPECT_GT(ref_grads[i].abs().max().item<double>(), 1e-3);
      EXPECT_LT((grads[i] - ref_grads[i]).abs().max().item<double>(), 1e-5);
    }
  }
}

TEST(AttentionProductsTest, LeaveToTorchWhatTheyDoNotCover) {
  torch::Tensor x = torch::randn({2, 3, 8});
  EXPECT_TRUE(DirectAttentionProductsApply(x, x, x));
  EXPECT_FALSE(DirectAttentionProductsApply(x.to(torch::kDouble), x, x));
  EXPECT_FALSE(DirectAttentionProductsApply(x, x.transpose(0, 1), x));  // not contiguous
  EXPECT_FALSE(DirectAttentionProductsApply(x, x, torch::randn({2, 4, 8})));  // keys != values
  EXPECT_FALSE(DirectAttentionProductsApply(x, x, torch::randn({2, 3, 8, 1})));
  AutocastScope bf16(/*enabled=*/true, torch::Device(torch::kCPU));
  EXPECT_FALSE(DirectAttentionProductsApply(x, x, x));
}

// FastGelu against GELU in double precision, values and gradients, over
// both tails (where 1 + erf(x / sqrt 2) cancels, and where erf rounds to 1).
TEST(FastGeluTest, MatchesGeluInDoublePrecisionWithGradients) {
  torch::Tensor exact = torch::linspace(-12, 12, 480001, torch::kDouble).requires_grad_();
  torch::Tensor x = exact.detach().to(torch::kFloat).requires_grad_();
  torch::Tensor y = FastGelu(x);
  torch::Tensor reference = torch::gelu(exact);
  torch::Tensor weights = torch::rand(x.sizes(), torch::kDouble);
  (y * weights.to(torch::kFloat)).sum().backward();
  (reference * weights).sum().backward();
  torch::Tensor scale = exact.detach().abs().clamp_min(1.0);
  EXPECT_LT(((y.to(torch::kDouble) - reference) / scale).abs().max().item<double>(), 1e-6);
  EXPECT_LT((x.grad().to(torch::kDouble) - exact.grad()).abs().max().item<double>(), 1e-6);
  // LibTorch's own float GELU is no closer.
  EXPECT_LT(((torch::gelu(x.detach()).to(torch::kDouble) - reference) / scale)
                .abs()
                .max()
                .item<double>(),
            1e-6);
}

TEST(FastGeluTest, SpecialValuesStridesAndOtherTypes) {
  const float inf = std::numeric_limits<float>::infinity();
  torch::Tensor special = FastGelu(torch::tensor({std::nanf(""), inf, -100.0f, 0.0f}));
  EXPECT_TRUE(std::isnan(special[0].item<float>()));
  EXPECT_EQ(special[1].item<float>(), inf);
  EXPECT_EQ(special[2].item<float>(), 0.0f);
  EXPECT_EQ(special[3].item<float>(), 0.0f);
  torch::Tensor m = torch::randn({64, 48}).t();  // not contiguous
  EXPECT_LT((FastGelu(m) - torch::gelu(m)).abs().max().item<double>(), 1e-5);
  torch::Tensor d = torch::randn({100}, torch::kDouble);
  EXPECT_TRUE(torch::equal(FastGelu(d), torch::gelu(d)));
}

// LayerNorm(dropout(h + bias) + residual) in one pass: the same values and
// gradients (of h, bias, residual, gamma and beta) as LibTorch's layers with
// the same dropout mask, with and without dropout, for a residual that is not
// contiguous, and for more rows than one block of its column sums.
TEST(ResidualNormTest, MatchesTheUnfusedLayersWithGradients) {
  torch::manual_seed(5);
  for (const double p : {0.1, 0.0}) {
    for (const bool strided : {false, true}) {
      const int64_t n = 40;  // not a multiple of the vector width
      auto leaf = [](torch::Tensor t) { return t.detach().requires_grad_(true); };
      torch::Tensor h = leaf(torch::randn({9, 23, n}));  // 207 rows: four blocks
      torch::Tensor bias = leaf(torch::randn({n}));
      torch::Tensor wide = torch::randn({9, 23, 2 * n});
      torch::Tensor residual = leaf(strided ? wide.narrow(-1, 3, n) : torch::randn({9, 23, n}));
      torch::Tensor gamma = leaf(torch::randn({n}));
      torch::Tensor beta = leaf(torch::randn({n}));
      torch::Tensor upstream = torch::randn({9, 23, n});
      const uint64_t seed = 77;
      const std::vector<torch::Tensor> inputs = {h, bias, residual, gamma, beta};
      ASSERT_TRUE(ResidualNormApplies(residual, bias, gamma, beta));
      torch::Tensor fused = FusedResidualNorm(h, bias, residual, gamma, beta, 1e-12, p, seed);
      std::vector<torch::Tensor> got = torch::autograd::grad({fused}, inputs, {upstream});
      torch::Tensor dropped = p > 0 ? FastDropout(h + bias, p, true, seed) : h + bias;
      torch::Tensor plain = torch::layer_norm(dropped + residual, {n}, gamma, beta, 1e-12);
      std::vector<torch::Tensor> want = torch::autograd::grad({plain}, inputs, {upstream});
      SCOPED_TRACE(absl::StrCat("p ", p, strided ? ", strided residual" : ""));
      EXPECT_LT((fused - plain).abs().max().item<double>(), 1e-5);
      for (size_t i = 0; i < inputs.size(); ++i) {
        EXPECT_LT((got[i] - want[i]).abs().max().item<double>(),
                  1e-5 * std::max(1.0, want[i].abs().max().item<double>()))
            << "the gradient of input " << i;
      }
      if (p > 0) {  // some rows dropped, so h's gradient differs from the residual's
        EXPECT_FALSE(torch::allclose(got[0], got[2]));
      }
    }
  }
}

TEST(ResidualNormTest, LeavesToLibTorchWhatItDoesNotCover) {
  torch::Tensor v = torch::randn({8});
  torch::Tensor r = torch::randn({3, 8});
  EXPECT_FALSE(ResidualNormApplies(r.to(torch::kDouble), v, v, v));
  EXPECT_FALSE(ResidualNormApplies(r, torch::randn({7}), v, v));
  EXPECT_FALSE(ResidualNormApplies(r, v, v.to(torch::kDouble), v));
  {
    AutocastScope autocast(true, torch::kCPU);
    EXPECT_FALSE(ResidualNormApplies(r, v, v, v));
  }
  EXPECT_TRUE(ResidualNormApplies(r, v, v, v));
  // Double in, the same function through LibTorch's layers.
  torch::Tensor d = torch::randn({3, 8}, torch::kDouble);
  torch::Tensor dv = torch::randn({8}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(FusedResidualNorm(d, dv, d, dv, dv, 1e-5, 0.0, 1),
                              torch::layer_norm(d + dv + d, {8}, dv, dv, 1e-5)));
}

// The first-token-only last layer, the direct attention products and the
// fast GELU compute the same function: the logits of the plain model (eval
// mode, on a padded batch), and its gradients.
TEST(BertModelTest, ComputeOptionsGiveTheSameLogitsAndGradients) {
  ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(kModel));
  BertClassifier model(config, 5);
  ASSERT_OK(LoadWeights(kModel, config, model).status());
  model->eval();
  torch::manual_seed(3);
  torch::Tensor ids = torch::randint(5, config.vocab_size, {6, 19}, torch::kLong);
  torch::Tensor mask = torch::ones({6, 19}, torch::kLong);
  mask.narrow(0, 0, 3).narrow(1, 11, 8).zero_();
  auto run = [&](const ComputeOptions& options) {
    model->SetComputeOptions(options);
    model->zero_grad();
    torch::Tensor logits = model->forward(ids, mask);
    logits.pow(2).sum().backward();
    return std::pair{logits.detach(), model->bert->encoder->layer[0]
                                          ->as<BertLayerImpl>()
                                          ->attention->self->query->weight.grad()
                                          .clone()};
  };
  ComputeOptions plain;
  plain.fast_dropout = plain.first_token_last_layer = plain.direct_attention_products =
      plain.fast_gelu = plain.fused_residual_norm = plain.unpadded_tokens = false;
  auto [logits, grad] = run(plain);
  ComputeOptions first_token = plain;
  first_token.first_token_last_layer = true;
  ComputeOptions direct = plain;
  direct.direct_attention_products = true;
  ComputeOptions gelu = plain;
  gelu.fast_gelu = true;
  ComputeOptions norm = plain;
  norm.fused_residual_norm = true;
  ComputeOptions unpadded = plain;
  unpadded.unpadded_tokens = true;
  ComputeOptions unpadded_last = unpadded;
  unpadded_last.first_token_last_layer = true;
  ComputeOptions all = direct;
  all.first_token_last_layer = all.fast_gelu = all.fused_residual_norm = all.unpadded_tokens = true;
  for (const ComputeOptions& options :
       {first_token, direct, gelu, norm, unpadded, unpadded_last, all}) {
    auto [l, g] = run(options);
    EXPECT_LT((l - logits).abs().max().item<double>(), 1e-5);
    EXPECT_LT((g - grad).abs().max().item<double>(), 1e-4 * grad.abs().max().item<double>());
  }
}

// In training, the fused block ends draw the same dropout masks from the
// model's stream as the unfused layers: the same logits and gradients.
TEST(BertModelTest, TheFusedBlockEndsKeepTheDropoutMasksInTraining) {
  ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(kModel));
  BertClassifier model(config, 5);
  ASSERT_OK(LoadWeights(kModel, config, model).status());
  model->train();
  torch::manual_seed(4);
  torch::Tensor ids = torch::randint(5, config.vocab_size, {4, 13}, torch::kLong);
  torch::Tensor mask = torch::ones({4, 13}, torch::kLong);
  auto run = [&](bool fused) {
    ComputeOptions options;
    options.fused_residual_norm = fused;
    model->SetComputeOptions(options);
    model->dropout_stream().Reset(11);
    model->zero_grad();
    torch::Tensor logits = model->forward(ids, mask);
    logits.pow(2).sum().backward();
    return std::pair{
        logits.detach(),
        model->bert->encoder->layer[0]->as<BertLayerImpl>()->output->dense->bias.grad().clone()};
  };
  auto [logits, grad] = run(false);
  auto [fused_logits, fused_grad] = run(true);
  EXPECT_LT((fused_logits - logits).abs().max().item<double>(), 1e-5);
  EXPECT_LT((fused_grad - grad).abs().max().item<double>(), 1e-4 * grad.abs().max().item<double>());
  // Another stream gives other masks, so the comparison above can fail.
  model->dropout_stream().Reset(12);
  EXPECT_GT((model->forward(ids, mask) - logits).abs().max().item<double>(), 1e-3);
}

// Packing keeps a batch's real tokens in order and puts zeros at the padding;
// a batch without padding is not packed.
TEST(TokenPackingTest, PacksTheRealTokensAndUnpacksWithZerosAtThePadding) {
  torch::Tensor mask = torch::tensor({1, 1, 1, 1, 1, 0, 1, 0, 0}, torch::kLong).view({3, 3});
  torch::Tensor bias = BertClassifierImpl::MaskBias(mask, torch::kFloat);
  std::optional<TokenPacking> packing = TokenPacking::Of(bias, 3, 3);
  ASSERT_TRUE(packing.has_value());
  EXPECT_TRUE(torch::equal(packing->index, torch::tensor({0, 1, 2, 3, 4, 6}, torch::kLong)));
  torch::Tensor padded = torch::arange(18, torch::kFloat).view({3, 3, 2});
  torch::Tensor packed = packing->Pack(padded);
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{6, 2}));
  EXPECT_TRUE(torch::equal(packed.select(1, 0), torch::tensor({0, 2, 4, 6, 8, 12}, torch::kFloat)));
  torch::Tensor back = packing->Unpack(packed);
  EXPECT_TRUE(torch::equal(back, padded * mask.unsqueeze(2).to(torch::kFloat)));
  EXPECT_FALSE(
      TokenPacking::Of(
          BertClassifierImpl::MaskBias(torch::ones({2, 4}, torch::kLong), torch::kFloat), 2, 4)
          .has_value());
  EXPECT_FALSE(TokenPacking::Of(bias, 3, 4).has_value());  // another shape
}

TEST(BertModelTest, MatchesTransformersOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(kModel));
  BertClassifier model(config, 2);
  ASSERT_OK(LoadWeights(kModel, config, model).status());
  model->eval();
  model->to(torch::kCUDA);
  torch::NoGradGuard no_grad;
  ASSERT_OK_AND_ASSIGN(auto golden, SafetensorsFile::Open(kGolden));
  torch::Tensor ids = Golden(*golden, "input_ids").to(torch::kCUDA);
  torch::Tensor bias =
      BertClassifierImpl::MaskBias(Golden(*golden, "attention_mask"), torch::kFloat)
          .to(torch::kCUDA);
  torch::Tensor hidden = model->RunLayers(model->Embed(ids), bias, 0, config.num_hidden_layers);
  const double error =
      (hidden.cpu() - Golden(*golden, "last_hidden_state")).abs().max().item<double>();
  std::cerr << "cuda max abs error " << error << "\n";
  EXPECT_LT(error, 1e-4);
}

TEST(BertModelTest, SavedModelsLoadBackExactly) {
  ftd::testing::TempDir dir;
  ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(kModel));
  BertClassifier model(config, 3);
  ASSERT_OK(LoadWeights(kModel, config, model).status());
  ASSERT_OK(SaveModel(dir.Sub("out"), kModel, config, {"a", "b", "c"}, model));
  ASSERT_OK_AND_ASSIGN(BertConfig saved, BertConfig::FromModelFolder(dir.Sub("out")));
  EXPECT_EQ(saved.labels, (std::vector<std::string>{"a", "b", "c"}));
  BertClassifier reloaded(saved, 3);
  ASSERT_OK_AND_ASSIGN(LoadReport report, LoadWeights(dir.Sub("out"), saved, reloaded));
  EXPECT_TRUE(report.initialized.empty());
  EXPECT_TRUE(report.unused.empty());
  auto a = model->named_parameters();
  auto b = reloaded->named_parameters();
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
}

// A config.json nested 100,000 deep is refused by its depth before the
// JSON parser sees it (which would take minutes).
TEST(BertConfigTest, AConfigNestedTooDeepIsRefusedNamingTheFileAndTheLimit) {
  ftd::testing::TempDir dir;
  ftd::testing::WriteFile(dir.Sub("m/config.json"),
                          "{\"model_type\":\"bert\",\"x\":" + std::string(100'000, '[') +
                              std::string(100'000, ']') + "}");
  EXPECT_THAT(BertConfig::FromModelFolder(dir.Sub("m")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(dir.Sub("m/config.json") +
                                 ": line 1: JSON nested deeper than 64 levels")));
}

TEST(BertModelTest, HalfPrecisionUnprefixedCheckpointsLoadAndShapeMismatchesNameTheTensor) {
  ftd::testing::TempDir dir;
  ftd::testing::WriteFile(
      dir.Sub("m/config.json"),
      R"({"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,)"
      R"("num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":12})");
  ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(dir.Sub("m")));
  torch::Tensor word = torch::randn({10, 8}).to(torch::kBFloat16);
  torch::Tensor ln = torch::ones({8}).to(torch::kHalf);
  ASSERT_OK(WriteSafetensors(dir.Sub("m/model.safetensors"),
                             {{"embeddings.word_embeddings.weight",
                               DType::kBF16,
                               {10, 8},
                               std::string_view(static_cast<char*>(word.data_ptr()), 160)},
                              {"embeddings.LayerNorm.gamma",
                               DType::kF16,
                               {8},
                               std::string_view(static_cast<char*>(ln.data_ptr()), 16)}},
                             {}));
  BertClassifier model(config, 2);
  ASSERT_OK_AND_ASSIGN(LoadReport report, LoadWeights(dir.Sub("m"), config, model));
  EXPECT_TRUE(
      torch::equal(model->bert->embeddings->word_embeddings->weight, word.to(torch::kFloat)));
  EXPECT_THAT(report.initialized, ::testing::Not(Contains("bert.embeddings.LayerNorm.weight")));

  torch::Tensor wrong = torch::zeros({9, 8});
  ASSERT_OK(WriteSafetensors(dir.Sub("m/model.safetensors"),
                             {{"bert.embeddings.word_embeddings.weight",
                               DType::kF32,
                               {9, 8},
                               std::string_view(static_cast<char*>(wrong.data_ptr()), 288)}},
                             {}));
  EXPECT_THAT(LoadWeights(dir.Sub("m"), config, model),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tensor \"bert.embeddings.word_embeddings.weight\" has shape [9, "
                                 "8] but the model (from config.json) needs [10, 8]")));
  ftd::testing::WriteFile(dir.Sub("m/model.safetensors"), "garbage");
  EXPECT_THAT(LoadWeights(dir.Sub("m"), config, model),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("model.safetensors")));
}

// The checks at submit and upload (core/model_check.cc) know the model's
// weights from BertWeightShapes, without LibTorch: the very names and shapes
// of BertClassifier's parameters, in order.
TEST(BertModelTest, TheWeightListTheChecksUseIsTheModelsParameters) {
  ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(kModel));
  BertClassifier model(config, 3);
  const std::vector<WeightShape> listed = BertWeightShapes(config, 3);
  const auto parameters = model->named_parameters();
  ASSERT_EQ(listed.size(), parameters.size());
  size_t i = 0;
  for (const auto& item : parameters) {
    EXPECT_EQ(listed[i].name, item.key());
    EXPECT_EQ(listed[i].shape,
              std::vector<int64_t>(item.value().sizes().begin(), item.value().sizes().end()))
        << item.key();
    EXPECT_EQ(BertWeightShape(config, 3, item.key()), listed[i].shape) << item.key();
    ++i;
  }
  EXPECT_EQ(BertWeightShape(config, kAnyLabels, "classifier.bias"),
            std::vector<int64_t>{kAnyLabels});
  for (const std::string& other :
       {absl::StrCat("bert.encoder.layer.", config.num_hidden_layers, ".output.dense.bias"),
        std::string("bert.encoder.layer.01.output.dense.bias"),
        std::string("bert.encoder.layer.-1.output.dense.bias"), std::string("cls.predictions.bias"),
        std::string("bert.embeddings.LayerNorm.gamma")}) {
    EXPECT_EQ(BertWeightShape(config, 3, other), std::nullopt) << other;
  }
  EXPECT_EQ(CanonicalWeightName("embeddings.LayerNorm.gamma"), "bert.embeddings.LayerNorm.weight");
  EXPECT_EQ(CanonicalWeightName("encoder.layer.0.output.LayerNorm.beta"),
            "bert.encoder.layer.0.output.LayerNorm.bias");
}

}  // namespace
}  // namespace ftd::training
