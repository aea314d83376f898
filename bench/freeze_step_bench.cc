// Micro-benchmark: one training step of BertClassifier with the embeddings
// and the first k encoder layers frozen, for every k, against k = 0.
//
//   build/bench/freeze_step_bench [MODEL_DIR] [--steps=N] [--batch=B] [--length=S]
//
// A step is what BertTrainer does: the frozen prefix runs under no-grad in
// eval mode, the rest forward and backward, gradient clipping, AdamW over
// the trainable parameters. Inputs are fixed random ids (B x S), so every k
// sees the same work.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "server/daemon/kernel_choice.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/bert_model.h"
#include "server/training/model/checkpoint.h"

using ftd::training::BertClassifier;
using ftd::training::BertClassifierImpl;
using ftd::training::BertConfig;

int main(int argc, char** argv) {
  ftd::daemon::ChooseBlasKernels(argv);  // before any tensor work, as ftd
  std::string model_dir = FTD_SOURCE_DIR "/examples/models/bert-mini-6l-256h";
  int steps = 20, batch = 32, length = 48, threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::sscanf(argv[i], "--steps=%d", &steps) == 1) continue;
    if (std::sscanf(argv[i], "--batch=%d", &batch) == 1) continue;
    if (std::sscanf(argv[i], "--length=%d", &length) == 1) continue;
    if (std::sscanf(argv[i], "--threads=%d", &threads) == 1) continue;
    model_dir = argv[i];
  }
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  absl::StatusOr<BertConfig> config = BertConfig::FromModelFolder(model_dir);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  const int layers = config->num_hidden_layers;
  torch::Tensor ids = torch::randint(5, config->vocab_size, {batch, length}, torch::kLong);
  torch::Tensor mask = torch::ones({batch, length}, torch::kLong);
  torch::Tensor labels = torch::randint(0, 45, {batch}, torch::kLong);
  torch::Tensor bias = BertClassifierImpl::MaskBias(mask, torch::kFloat);

  std::printf("model %s, %d layers, batch %d x %d tokens, %d steps each, %d LibTorch thread(s)\n",
              model_dir.c_str(), layers, batch, length, steps, threads);
  std::printf("%-8s %-12s %-10s %-10s\n", "frozen", "ms/step", "ratio", "trainable");
  double base_ms = 0;
  for (int k = 0; k < layers; ++k) {
    BertClassifier model(*config, 45);
    if (!ftd::training::LoadWeights(model_dir, *config, model).ok()) return 1;
    std::vector<torch::Tensor> trainable;
    int64_t total = 0, trained = 0;
    for (auto& item : model->named_parameters()) {
      const std::string& name = item.key();
      bool frozen = false;
      if (k > 0 && name.rfind("bert.embeddings.", 0) == 0) frozen = true;
      const std::string prefix = "bert.encoder.layer.";
      if (name.rfind(prefix, 0) == 0 && std::stoi(name.substr(prefix.size())) < k) frozen = true;
      item.value().set_requires_grad(!frozen);
      total += item.value().numel();
      if (!frozen) {
        trainable.push_back(item.value());
        trained += item.value().numel();
      }
    }
    torch::optim::AdamW optimizer(trainable, torch::optim::AdamWOptions(1e-4));
    model->train();
    if (k > 0) {
      model->bert->embeddings->eval();
      for (int i = 0; i < k; ++i) model->layer(i).eval();
    }
    auto step = [&] {
      torch::Tensor hidden;
      if (k > 0) {
        torch::NoGradGuard no_grad;
        hidden = model->RunLayers(model->Embed(ids), bias, 0, k);
      } else {
        hidden = model->Embed(ids);
      }
      torch::Tensor logits = model->Head(model->RunLayers(hidden, bias, k, layers));
      torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
      optimizer.zero_grad();
      loss.backward();
      torch::nn::utils::clip_grad_norm_(trainable, 1.0);
      optimizer.step();
    };
    for (int i = 0; i < 3; ++i) step();  // warm-up
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count() /
        steps;
    if (k == 0) base_ms = ms;
    std::printf("%-8d %-12.1f %-10.2f %.1f%%\n", k, ms, ms / base_ms, 100.0 * trained / total);
    std::fflush(stdout);
  }
  return 0;
}
