// Micro-benchmark: one fine-tuning step of BertClassifier with each engine
// kernel choice, precision, frozen depth and thread count, in alternating
// blocks so that drift on the machine hits every variant alike.
//
//   build/bench/engine_step_bench [MODEL_DIR] [--steps=N] [--rounds=R] [--batch=B]
//       [--length=S] [--min_length=M] [--threads=1,2] [--only=a,b] [--precision=fp32,bf16]
//       [--frozen=0,2,4] [--glibc_default_memory] [--on_thread] [--profile=TRACE]
//
// The batch is B random rows padded to S tokens; with --min_length, row lengths are uniform in
// [M, S] (the first S long), as real data's are, otherwise every row is S long.
// Variants: "torch" (LibTorch's dropout, the whole last layer, the attention's products through
// torch::matmul, torch::optim::AdamW with clip_grad_norm_ and zero_grad: the engine before these
// kernels), each kernel alone on top of it ("residual_norm" with the fast dropout masks it needs),
// "all_matmul", "all_torch_gelu", "all_unfused_norm" and "all_padded" (all but the direct
// attention products, the fast GELU, the fused block ends, the unpadded tokens) and "all" (every
// kernel with FusedAdamW: what the trainer runs) in each --precision (bf16: the trainer's bf16
// autocast, fp32 master weights), at each --frozen depth K (the embeddings and layers 0..K-1
// frozen: their forward pass without gradients, as the trainer runs them without the cache;
// build/bench/cache_step_bench measures the step with the cache) and with each of --threads
// LibTorch threads (the others with the first). Prints the median ms/step of each over the
// rounds and its ratio to "torch"; each round starts at the next variant. The process picks its
// BLAS kernels as ftd does (server/daemon/kernel_choice.h) and keeps freed memory
// (cpu_allocator.h) as ftd does, unless --glibc_default_memory. --profile writes LibTorch's
// profile of 3 steps of the first variant measured after "torch" to TRACE (chrome://tracing's
// format; bench/profile_summary.py totals it by operator).
#include <torch/csrc/autograd/profiler_legacy.h>
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

#include "common/blas_kernels.h"
#include "server/daemon/kernel_choice.h"
#include "server/training/engine/cpu_allocator.h"
#include "server/training/engine/precision.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/bert_model.h"
#include "server/training/model/checkpoint.h"
#include "server/training/optim/fused_adamw.h"

using ftd::training::AutocastScope;
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
  bool bf16 = false;
  int frozen = 0;   // the embeddings and layers [0, frozen) take no gradients
  int threads = 1;  // LibTorch's threads while it runs
  BertClassifier model{nullptr};
  std::unique_ptr<torch::optim::AdamW> torch_adamw;
  std::unique_ptr<FusedAdamW> fused;
  std::vector<torch::Tensor> params;
  std::vector<double> ms;
};

}  // namespace

// "0,2,4" -> {0, 2, 4}.
std::vector<int> ParseInts(const char* text) {
  std::vector<int> out;
  for (const char* p = text; *p != '\0';) {
    char* end = nullptr;
    out.push_back(static_cast<int>(std::strtol(p, &end, 10)));
    if (end == p) break;
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

int main(int argc, char** argv) {
  ftd::daemon::ChooseBlasKernels(argv);  // before any tensor work, as ftd
  std::string model_dir = FTD_SOURCE_DIR "/examples/models/bert-mini-6l-256h";
  int steps = 10, rounds = 5, batch = 32, length = 48, min_length = 0;
  char only[256] = "", precisions[64] = "fp32", depths[64] = "0", thread_counts[64] = "1",
       profile[256] = "";
  bool keep_memory = true, on_thread = false;
  for (int i = 1; i < argc; ++i) {
    if (std::sscanf(argv[i], "--steps=%d", &steps) == 1) continue;
    if (std::sscanf(argv[i], "--rounds=%d", &rounds) == 1) continue;
    if (std::sscanf(argv[i], "--batch=%d", &batch) == 1) continue;
    if (std::sscanf(argv[i], "--length=%d", &length) == 1) continue;
    if (std::sscanf(argv[i], "--min_length=%d", &min_length) == 1) continue;
    if (std::sscanf(argv[i], "--threads=%63s", thread_counts) == 1) continue;
    if (std::sscanf(argv[i], "--only=%255s", only) == 1) continue;
    if (std::sscanf(argv[i], "--precision=%63s", precisions) == 1) continue;
    if (std::sscanf(argv[i], "--frozen=%63s", depths) == 1) continue;
    if (std::sscanf(argv[i], "--profile=%255s", profile) == 1) continue;
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
  const std::vector<int> threads = ParseInts(thread_counts);
  if (threads.empty() || *std::min_element(threads.begin(), threads.end()) < 1) {
    std::fprintf(stderr, "--threads=%s: thread counts of at least 1\n", thread_counts);
    return 2;
  }
  torch::set_num_threads(threads[0]);
  torch::manual_seed(0);
  absl::StatusOr<BertConfig> config = BertConfig::FromModelFolder(model_dir);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  torch::Tensor ids = torch::randint(5, config->vocab_size, {batch, length}, torch::kLong);
  torch::Tensor mask = torch::ones({batch, length}, torch::kLong);
  if (min_length > 0 && min_length < length) {
    // Row lengths uniform in [min_length, length], the first row the
    // longest (a padded batch's length is its longest row's).
    torch::Tensor lengths = torch::randint(min_length, length + 1, {batch}, torch::kLong);
    lengths[0] = length;
    mask =
        (torch::arange(length, torch::kLong).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kLong);
    std::printf("row lengths %d to %d: %.1f%% of the padded tokens are real\n", min_length, length,
                100.0 * mask.sum().item<double>() / (batch * length));
  }
  torch::Tensor labels = torch::randint(0, 45, {batch}, torch::kLong);
  torch::Tensor bias = BertClassifierImpl::MaskBias(mask, torch::kFloat);

  ComputeOptions none;
  none.fast_dropout = none.first_token_last_layer = none.direct_attention_products =
      none.fast_gelu = none.fused_residual_norm = none.unpadded_tokens = false;
  std::vector<Variant> variants;
  auto add = [&](std::string name, ComputeOptions c, bool fused) {
    const std::string wanted = std::string(",") + only + ",";
    if (only[0] != '\0' && name != "torch" && wanted.find("," + name + ",") == std::string::npos)
      return;
    const bool all = name == "all";
    const std::string precision_list = std::string(",") + precisions + ",";
    // The kernel variants run in fp32; "all" in each --precision.
    for (bool bf16 : {false, true}) {
      const bool asked = precision_list.find(bf16 ? ",bf16," : ",fp32,") != std::string::npos;
      if (all ? !asked : bf16) continue;
      for (int frozen : all ? ParseInts(depths) : std::vector<int>{0}) {
        for (int t : all ? threads : std::vector<int>{threads[0]}) {
          if (frozen < 0 || frozen >= config->num_hidden_layers) {
            std::fprintf(stderr, "--frozen=%d: must be in [0, %d)\n", frozen,
                         config->num_hidden_layers);
            std::exit(2);
          }
          Variant v;
          v.name = name;
          if (bf16) v.name += " bf16";
          if (frozen > 0) v.name += " frozen=" + std::to_string(frozen);
          if (t != threads[0]) v.name += " threads=" + std::to_string(t);
          v.compute = c;
          v.fused_adamw = fused;
          v.bf16 = bf16;
          v.frozen = frozen;
          v.threads = t;
          variants.push_back(std::move(v));
        }
      }
    }
  };
  add("torch", none, false);
  ComputeOptions c = none;
  c.fast_dropout = true;
  add("fast_dropout", c, false);
  c = none;
  c.first_token_last_layer = true;
  add("first_token", c, false);
  c = none;
  c.direct_attention_products = true;
  add("attention_products", c, false);
  c = none;
  c.fast_gelu = true;
  add("fast_gelu", c, false);
  c = none;
  c.fast_dropout = c.fused_residual_norm = true;  // it needs the fast masks
  add("residual_norm", c, false);
  add("fused_adamw", none, true);
  add("all", ComputeOptions{}, true);
  c = ComputeOptions{};
  c.direct_attention_products = false;
  add("all_matmul", c, true);
  c = ComputeOptions{};
  c.fast_gelu = false;
  add("all_torch_gelu", c, true);
  c = ComputeOptions{};
  c.fused_residual_norm = false;
  add("all_unfused_norm", c, true);
  c = ComputeOptions{};
  c.unpadded_tokens = false;
  add("all_padded", c, true);

  for (Variant& v : variants) {
    v.model = BertClassifier(*config, 45);
    if (!ftd::training::LoadWeights(model_dir, *config, v.model).ok()) return 1;
    v.model->SetComputeOptions(v.compute);
    v.model->train();
    if (v.frozen > 0) {
      for (auto& p : v.model->bert->embeddings->parameters()) p.set_requires_grad(false);
      for (int i = 0; i < v.frozen; ++i)
        for (auto& p : v.model->layer(i).parameters()) p.set_requires_grad(false);
    }
    std::vector<torch::Tensor> decay, no_decay;
    for (auto& item : v.model->named_parameters()) {
      if (!item.value().requires_grad()) continue;
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
    const torch::Device cpu(torch::kCPU);
    torch::Tensor hidden;
    if (v.frozen > 0) {
      torch::NoGradGuard no_grad;
      AutocastScope autocast(v.bf16, cpu);
      hidden = v.model->RunPrefix(v.model->Embed(ids), bias, 0, v.frozen);
    }
    torch::Tensor logits;
    {
      AutocastScope autocast(v.bf16, cpu);
      logits = v.model->Classify(v.frozen > 0 ? hidden : v.model->Embed(ids), bias, v.frozen);
    }
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat), labels);
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

  const std::string core = ftd::LoadedOpenBlasCore();
  const ftd::CpuFeatures cpu = ftd::DetectCpuFeatures();
  std::printf(
      "model %s, %d layers, batch %d x %d tokens, %d rounds of %d steps, %s thread(s)%s%s\n"
      "host: %s family %d model %d (%s); OpenBLAS %s kernels (made for this CPU: %s)\n",
      model_dir.c_str(), config->num_hidden_layers, batch, length, rounds, steps, thread_counts,
      keep_memory ? "" : ", glibc's default memory settings", on_thread ? ", on a thread" : "",
      cpu.vendor.c_str(), cpu.family, cpu.model, cpu.FeatureList().c_str(),
      core.empty() ? "(not OpenBLAS)" : core.c_str(), ftd::BestOpenBlasCore(cpu).c_str());
  auto run = [&] {
    for (Variant& v : variants) {
      torch::set_num_threads(v.threads);
      for (int i = 0; i < 2; ++i) step(v);  // warm-up
    }
    for (int r = 0; r < rounds; ++r) {
      // Each round starts at another variant: none always runs first.
      for (size_t j = 0; j < variants.size(); ++j) {
        Variant& v = variants[(j + r) % variants.size()];
        torch::set_num_threads(v.threads);
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
  if (profile[0] != '\0') {
    Variant& v = variants.size() > 1 ? variants[1] : variants[0];
    {
      torch::autograd::profiler::RecordProfile record(std::string{profile});
      torch::set_num_threads(v.threads);
      for (int i = 0; i < 3; ++i) step(v);
    }
    std::printf("profile of 3 steps of \"%s\": %s\n", v.name.c_str(), profile);
  }
  auto median = [](std::vector<double> x) {
    std::sort(x.begin(), x.end());
    return x[x.size() / 2];
  };
  const double base = median(variants[0].ms);
  std::printf("%-22s %10s %8s %10s\n", "variant", "ms/step", "ratio", "speed-up");
  for (Variant& v : variants) {
    const double m = median(v.ms);
    std::printf("%-22s %10.1f %8.3f %9.2fx\n", v.name.c_str(), m, m / base, base / m);
  }
  return 0;
}
