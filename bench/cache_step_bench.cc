// Micro-benchmark: a training step whose frozen prefix is served by the
// activation cache, against the same step with the activations already in
// memory, and against the step that computes the prefix.
//
//   build/bench/cache_step_bench [MODEL_DIR] [--steps=N] [--batch=B] [--length=S]
//                                [--frozen=K] [--dtype=bf16|fp32]
//
// The cache is the real one: a RocksDB in a temporary folder, the engine's
// JobActivationCache with its reader thread fetching the next batches while
// the current one trains. The step after the prefix is what BertTrainer does:
// layers K.. forward and backward, clipping, AdamW.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>

#include "server/daemon/kernel_choice.h"
#include "server/training/cache/activation_cache.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/bert_model.h"
#include "server/training/model/checkpoint.h"
#include "storage/activation_codec.h"
#include "storage/activation_store.h"
#include "storage/database.h"

using namespace ftd;
using namespace ftd::training;

int main(int argc, char** argv) {
  ftd::daemon::ChooseBlasKernels(argv);  // before any tensor work, as ftd
  std::string model_dir = FTD_SOURCE_DIR "/examples/models/bert-mini-6l-256h";
  int steps = 30, batch = 32, length = 48, frozen = 4;
  char dtype_name[8] = "bf16";
  for (int i = 1; i < argc; ++i) {
    if (std::sscanf(argv[i], "--steps=%d", &steps) == 1) continue;
    if (std::sscanf(argv[i], "--batch=%d", &batch) == 1) continue;
    if (std::sscanf(argv[i], "--length=%d", &length) == 1) continue;
    if (std::sscanf(argv[i], "--frozen=%d", &frozen) == 1) continue;
    if (std::sscanf(argv[i], "--dtype=%7s", dtype_name) == 1) continue;
    model_dir = argv[i];
  }
  const auto dtype = std::strcmp(dtype_name, "fp32") == 0 ? storage::ActivationDtype::kFp32
                                                          : storage::ActivationDtype::kBf16;
  torch::set_num_threads(1);
  torch::manual_seed(0);
  absl::StatusOr<BertConfig> config = BertConfig::FromModelFolder(model_dir);
  if (!config.ok()) return std::fprintf(stderr, "%s\n", config.status().ToString().c_str()), 1;
  const int layers = config->num_hidden_layers;
  const int64_t hidden_size = config->hidden_size;
  const int64_t n = static_cast<int64_t>(steps + steps / 6 + 8) * batch;

  BertClassifier model(*config, 45);
  if (!LoadWeights(model_dir, *config, model).ok()) return 1;
  std::vector<torch::Tensor> trainable;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const std::string prefix = "bert.encoder.layer.";
    const bool is_frozen =
        name.rfind("bert.embeddings.", 0) == 0 ||
        (name.rfind(prefix, 0) == 0 && std::stoi(name.substr(prefix.size())) < frozen);
    item.value().set_requires_grad(!is_frozen);
    if (!is_frozen) trainable.push_back(item.value());
  }
  torch::optim::AdamW optimizer(trainable, torch::optim::AdamWOptions(1e-4));
  model->train();
  model->bert->embeddings->eval();
  for (int i = 0; i < frozen; ++i) model->layer(i).eval();

  torch::Tensor ids = torch::randint(5, config->vocab_size, {n, length}, torch::kLong);
  torch::Tensor bias =
      BertClassifierImpl::MaskBias(torch::ones({batch, length}, torch::kLong), torch::kFloat);
  torch::Tensor labels = torch::randint(0, 45, {batch}, torch::kLong);
  // The prefix's output for every example, in memory.
  torch::Tensor memory;
  {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> parts;
    for (int64_t s = 0; s < n; s += batch) {
      parts.push_back(model->RunLayers(model->Embed(ids.narrow(0, s, batch)), bias, 0, frozen));
    }
    memory = torch::cat(parts);
    if (dtype == storage::ActivationDtype::kBf16)
      memory = memory.to(torch::kBFloat16).to(torch::kFloat);
  }

  auto rest = [&](const torch::Tensor& hidden) {
    torch::Tensor logits = model->Head(model->RunLayers(hidden, bias, frozen, layers));
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
    optimizer.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(trainable, 1.0);
    optimizer.step();
  };

  // The real store and cache, filled with the prefix's outputs.
  const std::string dir = std::filesystem::temp_directory_path() / "ftd-cache-step-bench";
  std::filesystem::remove_all(dir);
  storage::ActivationStore::Options store_options;
  storage::Database::Options db_options;
  db_options.path = dir;
  db_options.column_families = {storage::ActivationStore::kColumnFamily};
  db_options.column_family_options[storage::ActivationStore::kColumnFamily] =
      storage::ActivationStore::ColumnFamilyOptions(store_options.tuning);
  auto database = storage::Database::Open(db_options);
  if (!database.ok()) return std::fprintf(stderr, "%s\n", database.status().ToString().c_str()), 1;
  auto store = storage::ActivationStore::Open(database->get(), store_options);
  if (!store.ok()) return 1;
  JobActivationCache::Options cache_options;
  cache_options.store = store->get();
  cache_options.job_id = "bench";
  cache_options.dataset_fingerprint = std::string(64, 'b');
  cache_options.inputs_digest = "bench";
  cache_options.dtype = dtype;
  cache_options.lengths.assign(n, length);
  cache_options.hidden_size = hidden_size;
  std::vector<std::string> digests(frozen + 1, "bench");
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  {
    JobActivationCache writer(cache_options);
    writer.SetDepth(digests);
    writer.StartEpoch(order, batch);
    for (int64_t b = 0; b * batch < n; ++b) {
      std::vector<CachedActivation> none = writer.Take(b);
      writer.Store(order.data() + b * batch, batch, none, memory.narrow(0, b * batch, batch));
    }
  }
  (*store)->Flush().IgnoreError();  // read from files, as in a later epoch
  JobActivationCache cache(cache_options);
  cache.SetDepth(digests);
  cache.StartEpoch(order, batch);

  // The three kinds of step in alternating blocks, so that drift in the
  // machine's speed (other tenants, clocks) falls on all of them alike.
  const int rounds = 6, block = std::max(1, steps / rounds);
  double computed = 0, in_memory = 0, cached = 0;
  int64_t next_batch = 0;  // the cache's epoch: batches in order
  auto timed = [&](const std::function<void()>& step) {
    const auto start = std::chrono::steady_clock::now();
    step();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
        .count();
  };
  for (int r = -1; r < rounds; ++r) {  // round -1 warms up
    double c = 0, m = 0, k = 0;
    for (int i = 0; i < block; ++i) {
      const int64_t b = next_batch++;
      c += timed([&] {
        torch::Tensor hidden;
        {
          torch::NoGradGuard no_grad;
          hidden = model->RunLayers(model->Embed(ids.narrow(0, b * batch, batch)), bias, 0, frozen);
        }
        rest(hidden);
      });
      m += timed([&] { rest(memory.narrow(0, b * batch, batch)); });
      k += timed([&] {
        std::vector<CachedActivation> entries = cache.Take(b);
        rest(PrefixOutput(*model, ids.narrow(0, b * batch, batch), bias, entries, frozen,
                          torch::kCPU));
      });
    }
    if (r >= 0) {
      computed += c;
      in_memory += m;
      cached += k;
    }
  }
  const int measured = rounds * block;
  computed /= measured;
  in_memory /= measured;
  cached /= measured;
  v1::CacheReport report = cache.EndEpoch(1);
  // The reader's own cost: an epoch of Take with no training beside it.
  cache.StartEpoch(order, batch);
  const auto read_start = std::chrono::steady_clock::now();
  const int64_t batches = n / batch;
  for (int64_t b = 0; b < batches; ++b) cache.Take(b);
  const double read_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - read_start)
          .count() /
      batches;
  std::printf(
      "model %s, %d of %d layers frozen, batch %d x %d tokens, %s entries, %d steps "
      "of each kind in alternating blocks of %d\n",
      model_dir.c_str(), frozen, layers, batch, length, dtype_name, measured, block);
  std::printf("prefix computed  %8.1f ms/step\n", computed);
  std::printf("in memory        %8.1f ms/step\n", in_memory);
  std::printf("from the cache   %8.1f ms/step   (%lld hits of %lld, reader wait %.3f s)\n", cached,
              static_cast<long long>(report.epoch().hits()),
              static_cast<long long>(report.epoch().examples()),
              report.epoch().read_wait_seconds());
  std::printf("reader alone      %8.1f ms/batch (MultiGet, checks, decoding)\n", read_ms);
  std::printf("cached / in-memory = %.3f, computed / in-memory = %.3f\n", cached / in_memory,
              computed / in_memory);
  std::filesystem::remove_all(dir);
  return 0;
}
