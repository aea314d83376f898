// Micro-benchmark: one full fine-tuning step (nothing frozen) of
// BertClassifier with each engine kernel choice, in alternating blocks so
// that drift on the machine hits every variant alike.
//
//   build/bench/engine_step_bench [MODEL_DIR] [--steps=N] [--rounds=R] [--batch=B]
//       [--length=S] [--threads=T] [--only=a,b] [--glibc_default_memory] [--on_thread]
//
// Variants: "torch" (LibTorch's dropout, the whole last layer, torch::optim::AdamW with
// clip_grad_norm_ and zero_grad: the engine before these kernels), each kernel alone on top of it,
// and "all" (every kernel with FusedAdamW: what the trainer runs). Prints the median ms/step of
// each over the rounds and its ratio to "torch"; each round starts at the next variant. The process
// keeps freed memory (cpu_allocator.h) as ftd does, unless --glibc_default_memory.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/training/engine/cpu_allocator.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/bert_model.h"
#include "server/training/model/checkpoint.h"
#include "server/training/optim/fused_adamw.h"

using ftd::training::BertClassifier;
using ftd::training::BertClassifierImpl;
using ftd::training::BertConfig;
using ftd::training::ComputeOptions;
using ftd::training::FusedAdamW;

namespace {

struct Variant {
  std::string name;
  ComputeOptions compute;
  bool fused_adamw = false;
  BertClassifier model{nullptr};
  std::unique_ptr<torch::optim::AdamW> torch_adamw;
  std::unique_ptr<FusedAdamW> fused;
  std::vector<torch::Tensor> params;
  std::vector<double> ms;
};

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = FTD_SOURCE_DIR "/examples/models/bert-mini-6l-256h";
  int steps = 10, rounds = 5, batch = 32, length = 48, threads = 1;
  char only[256] = "";
  bool keep_memory = true, on_thread = false;
  for (int i = 1; i < argc; ++i) {
    if (std::sscanf(argv[i], "--steps=%d", &steps) == 1) continue;
    if (std::sscanf(argv[i], "--rounds=%d", &rounds) == 1) continue;
    if (std::sscanf(argv[i], "--batch=%d", &batch) == 1) continue;
    if (std::sscanf(argv[i], "--length=%d", &length) == 1) continue;
    if (std::sscanf(argv[i], "--threads=%d", &threads) == 1) continue;
    if (std::sscanf(argv[i], "--only=%255s", only) == 1) continue;
    if (std::strcmp(argv[i], "--glibc_default_memory") == 0) {
      keep_memory = false;
      continue;
    }
    if (std::strcmp(argv[i], "--on_thread") == 0) {
      on_thread = true;
      continue;
    }
    model_dir = argv[i];
  }
  if (keep_memory) {
    absl::Status kept = ftd::training::KeepFreedMemory();
    if (!kept.ok()) std::fprintf(stderr, "%s\n", kept.ToString().c_str());
  }
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  absl::StatusOr<BertConfig> config = BertConfig::FromModelFolder(model_dir);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  torch::Tensor ids = torch::randint(5, config->vocab_size, {batch, length}, torch::kLong);
  torch::Tensor mask = torch::ones({batch, length}, torch::kLong);
  torch::Tensor labels = torch::randint(0, 45, {batch}, torch::kLong);
  torch::Tensor bias = BertClassifierImpl::MaskBias(mask, torch::kFloat);

  ComputeOptions none;
  none.fast_dropout = none.first_token_last_layer = false;
  std::vector<Variant> variants;
  auto add = [&](std::string name, ComputeOptions c, bool fused) {
    const std::string wanted = std::string(",") + only + ",";
    if (only[0] != '\0' && name != "torch" && wanted.find("," + name + ",") == std::string::npos)
      return;
    Variant v;
    v.name = std::move(name);
    v.compute = c;
    v.fused_adamw = fused;
    variants.push_back(std::move(v));
  };
  add("torch", none, false);
  ComputeOptions c = none;
  c.fast_dropout = true;
  add("fast_dropout", c, false);
  c = none;
  c.first_token_last_layer = true;
  add("first_token", c, false);
  add("fused_adamw", none, true);
  add("all", ComputeOptions{}, true);

  for (Variant& v : variants) {
    v.model = BertClassifier(*config, 45);
    if (!ftd::training::LoadWeights(model_dir, *config, v.model).ok()) return 1;
    v.model->SetComputeOptions(v.compute);
    v.model->train();
    std::vector<torch::Tensor> decay, no_decay;
    for (auto& item : v.model->named_parameters()) {
      const std::string& name = item.key();
      v.params.push_back(item.value());
      const bool no_wd = name.find("LayerNorm") != std::string::npos ||
                         name.compare(name.size() - 4, 4, "bias") == 0;
      (no_wd ? no_decay : decay).push_back(item.value());
    }
    if (v.fused_adamw) {
      FusedAdamW::Options o;
      o.lr = 1e-4;
      v.fused = std::make_unique<FusedAdamW>(
          std::vector<FusedAdamW::Group>{{decay, 0.01}, {no_decay, 0.0}}, o);
    } else {
      std::vector<torch::optim::OptimizerParamGroup> groups;
      groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                     torch::optim::AdamWOptions(1e-4).weight_decay(0.01)));
      groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                        torch::optim::AdamWOptions(1e-4).weight_decay(0)));
      v.torch_adamw = std::make_unique<torch::optim::AdamW>(std::move(groups));
    }
  }
  auto step = [&](Variant& v) {
    torch::Tensor logits = v.model->Classify(v.model->Embed(ids), bias, 0);
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
    if (v.fused) {
      v.fused->ZeroGrad();
      loss.backward();
      v.fused->Step(FusedAdamW::ClipScale(v.fused->GradNorm(), 1.0));
    } else {
      v.torch_adamw->zero_grad();
      loss.backward();
      torch::nn::utils::clip_grad_norm_(v.params, 1.0);
      v.torch_adamw->step();
    }
    (void)loss.item<double>();
  };

  std::printf(
      "model %s, %d layers, batch %d x %d tokens, %d rounds of %d steps, %d thread(s)%s%s\n",
      model_dir.c_str(), config->num_hidden_layers, batch, length, rounds, steps, threads,
      keep_memory ? "" : ", glibc's default memory settings", on_thread ? ", on a thread" : "");
  auto run = [&] {
    for (Variant& v : variants)
      for (int i = 0; i < 2; ++i) step(v);  // warm-up
    for (int r = 0; r < rounds; ++r) {
      // Each round starts at another variant: none always runs first.
      for (size_t j = 0; j < variants.size(); ++j) {
        Variant& v = variants[(j + r) % variants.size()];
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < steps; ++i) step(v);
        v.ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count() /
            steps);
      }
    }
  };
  if (on_thread) {
    std::thread worker(run);  // as the daemon's job threads
    worker.join();
  } else {
    run();
  }
  auto median = [](std::vector<double> x) {
    std::sort(x.begin(), x.end());
    return x[x.size() / 2];
  };
  const double base = median(variants[0].ms);
  std::printf("%-14s %10s %8s %10s\n", "variant", "ms/step", "ratio", "speed-up");
  for (Variant& v : variants) {
    const double m = median(v.ms);
    std::printf("%-14s %10.1f %8.3f %9.2fx\n", v.name.c_str(), m, m / base, base / m);
  }
  return 0;
}
