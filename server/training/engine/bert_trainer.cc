#include "server/training/engine/bert_trainer.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <type_traits>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "server/training/cache/activation_cache.h"
#include "server/training/data/text_dataset.h"
#include "server/training/engine/epoch_order.h"
#include "server/training/freeze/autofreeze_policy.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/bert_model.h"
#include "server/training/model/checkpoint.h"
#include "server/training/tokenizer/wordpiece_tokenizer.h"

namespace ftd::training {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Encoded {
  std::vector<std::vector<int32_t>> ids;
  std::vector<int64_t> labels;
};

Encoded Encode(const WordPieceTokenizer& tokenizer, const TextDataset& data,
               std::vector<int64_t> labels, int max_length) {
  Encoded out;
  out.ids.reserve(data.texts.size());
  for (const std::string& text : data.texts) out.ids.push_back(tokenizer.Encode(text, max_length));
  out.labels = std::move(labels);
  return out;
}

struct Batch {
  torch::Tensor ids, mask, labels;
};

// Pads the rows to the longest one in the batch.
Batch MakeBatch(const Encoded& data, const int64_t* rows, size_t count, int32_t pad_id,
                const torch::Device& device) {
  size_t longest = 0;
  for (size_t i = 0; i < count; ++i) longest = std::max(longest, data.ids[rows[i]].size());
  std::vector<int64_t> ids(count * longest, pad_id), mask(count * longest, 0), labels(count);
  for (size_t i = 0; i < count; ++i) {
    const auto& row = data.ids[rows[i]];
    std::copy(row.begin(), row.end(), ids.begin() + i * longest);
    std::fill(mask.begin() + i * longest, mask.begin() + i * longest + row.size(), 1);
    labels[i] = data.labels[rows[i]];
  }
  const int64_t b = static_cast<int64_t>(count), s = static_cast<int64_t>(longest);
  auto options = torch::TensorOptions().dtype(torch::kLong);
  Batch batch;
  batch.ids = torch::from_blob(ids.data(), {b, s}, options).clone().to(device);
  batch.mask = torch::from_blob(mask.data(), {b, s}, options).clone().to(device);
  batch.labels = torch::from_blob(labels.data(), {b}, options).clone().to(device);
  return batch;
}

struct EvalResult {
  double loss = 0, accuracy = 0, macro_f1 = 0;
};

EvalResult Evaluate(BertClassifier& model, const Encoded& data, int batch_size, int32_t pad_id,
                    const torch::Device& device) {
  model->eval();
  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(data.ids.size());
  std::vector<int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  // Similar lengths together: less padding, same results.
  std::stable_sort(rows.begin(), rows.end(),
                   [&](int64_t a, int64_t b) { return data.ids[a].size() < data.ids[b].size(); });
  double loss_sum = 0;
  std::vector<int64_t> predicted(n);
  for (int64_t start = 0; start < n; start += batch_size) {
    const size_t count = static_cast<size_t>(std::min<int64_t>(batch_size, n - start));
    Batch batch = MakeBatch(data, rows.data() + start, count, pad_id, device);
    torch::Tensor logits = model->forward(batch.ids, batch.mask).to(torch::kFloat);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, batch.labels,
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    torch::Tensor argmax = logits.argmax(1).to(torch::kCPU).contiguous();
    const int64_t* guesses = argmax.data_ptr<int64_t>();
    for (size_t i = 0; i < count; ++i) predicted[rows[start + i]] = guesses[i];
  }
  // Macro-F1 over the labels that occur in the truth or the predictions.
  std::map<int64_t, std::array<int64_t, 3>> counts;  // tp, fp, fn
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t truth = data.labels[i], guess = predicted[i];
    if (truth == guess) {
      ++correct;
      ++counts[truth][0];
    } else {
      ++counts[guess][1];
      ++counts[truth][2];
    }
  }
  double f1_sum = 0;
  for (const auto& [label, c] : counts) {
    const double tp = c[0], fp = c[1], fn = c[2];
    const double precision = tp + fp > 0 ? tp / (tp + fp) : 0;
    const double recall = tp + fn > 0 ? tp / (tp + fn) : 0;
    f1_sum += precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
  }
  EvalResult result;
  result.loss = n > 0 ? loss_sum / n : 0;
  result.accuracy = n > 0 ? static_cast<double>(correct) / n : 0;
  result.macro_f1 = counts.empty() ? 0 : f1_sum / counts.size();
  return result;
}

std::string Summary(const std::vector<std::string>& names) {
  std::vector<std::string> shown(names.begin(), names.begin() + std::min<size_t>(names.size(), 8));
  std::string out = absl::StrJoin(shown, ", ");
  if (names.size() > shown.size())
    absl::StrAppend(&out, " and ", names.size() - shown.size(), " more");
  return out;
}

void Log(TrainingContext& context, v1::JobEvent::Log::Level level, const std::string& message) {
  v1::JobEvent event;
  event.mutable_log()->set_level(level);
  event.mutable_log()->set_message(message);
  context.Emit(std::move(event));
}

// HF's get_linear_schedule_with_warmup.
double LrFactor(int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return static_cast<double>(step) / std::max<int64_t>(1, warmup);
  return std::max(0.0, static_cast<double>(total - step) / std::max<int64_t>(1, total - warmup));
}

torch::Device ParseDevice(const std::string& name) {
  if (name.rfind("cuda:", 0) == 0)
    return torch::Device(torch::kCUDA, static_cast<int8_t>(std::stoi(name.substr(5))));
  return torch::Device(torch::kCPU);
}

void SetAutocast(bool enabled) {
#if TORCH_VERSION_MAJOR >= 2
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
  at::autocast::set_enabled(enabled);
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
}

// Everything one Train() call holds.
class Run {
 public:
  Run(TrainingContext& context, const BertTrainer::Options& options)
      : context_(context), cpu_threads_(options.cpu_threads), store_(options.activation_store) {}

  absl::StatusOr<v1::JobResult> Execute() {
    const v1::JobSpec& spec = context_.spec();
    const v1::Hyperparameters& hp = spec.hyperparameters();
    device_ = ParseDevice(context_.device());
    if (device_.is_cpu()) torch::set_num_threads(cpu_threads_);
    torch::manual_seed(hp.seed());

    // Model folder: config, tokenizer.
    ASSIGN_OR_RETURN(config_, BertConfig::FromModelFolder(spec.base_model()));
    ASSIGN_OR_RETURN(WordPieceTokenizer tokenizer,
                     WordPieceTokenizer::FromModelFolder(spec.base_model()));
    if (tokenizer.vocab_size() > static_cast<size_t>(config_.vocab_size)) {
      return absl::InvalidArgumentError(
          absl::StrCat(spec.base_model(), ": vocab.txt has ", tokenizer.vocab_size(),
                       " tokens but config.json's vocab_size is ", config_.vocab_size));
    }
    pad_id_ = tokenizer.pad_id();

    // Data.
    ASSIGN_OR_RETURN(TextDataset train, ReadTextDataset(spec.train_dataset()));
    context_.RecordFingerprint("train", train.fingerprint);
    labels_ = LabelSet::FromLabels(train.labels, config_.labels);
    if (labels_.size() < 2) {
      return absl::InvalidArgumentError(absl::StrCat(train.path, ": every row has the label \"",
                                                     labels_.names()[0],
                                                     "\"; a classifier needs two or more"));
    }
    ASSIGN_OR_RETURN(std::vector<int64_t> train_labels, labels_.Encode(train));
    train_ = Encode(tokenizer, train, std::move(train_labels), hp.max_seq_length());
    if (spec.has_validation_dataset()) {
      ASSIGN_OR_RETURN(TextDataset valid, ReadTextDataset(spec.validation_dataset()));
      context_.RecordFingerprint("validation", valid.fingerprint);
      ASSIGN_OR_RETURN(std::vector<int64_t> valid_labels, labels_.Encode(valid));
      valid_ = Encode(tokenizer, valid, std::move(valid_labels), hp.max_seq_length());
      has_validation_ = true;
    }
    Log(context_, v1::JobEvent::Log::INFO,
        absl::StrCat(
            "data: ", train_.ids.size(), " training rows",
            has_validation_ ? absl::StrCat(", ", valid_.ids.size(), " validation rows") : "", ", ",
            labels_.size(), " labels"));

    // Weights.
    model_ = BertClassifier(config_, static_cast<int64_t>(labels_.size()));
    ASSIGN_OR_RETURN(LoadReport report, LoadWeights(spec.base_model(), config_, model_));
    if (!report.initialized.empty()) {
      Log(context_, v1::JobEvent::Log::INFO,
          absl::StrCat("initialised ", report.initialized.size(),
                       " weights the checkpoint lacks: ", Summary(report.initialized)));
    }
    if (!report.unused.empty()) {
      Log(context_, v1::JobEvent::Log::INFO,
          absl::StrCat("the checkpoint has ", report.unused.size(),
                       " weights the classifier does not use: ", Summary(report.unused)));
    }
    model_->to(device_);
    autocast_ = device_.is_cuda() && hp.has_bf16() && hp.bf16();
    if (spec.activation_cache().enabled()) RETURN_IF_ERROR(StartCache(train.fingerprint));
    frozen_ =
        spec.freeze_policy().has_static_() ? spec.freeze_policy().static_().frozen_layers() : 0;
    if (spec.freeze_policy().has_autofreeze()) {
      policy_.emplace(config_.num_hidden_layers, spec.freeze_policy().autofreeze().percentile());
    }
    for (auto& item : model_->named_parameters()) {
      total_parameters_ += item.value().numel();
      const int layer = LayerIndex(item.key());
      if (layer < config_.num_hidden_layers) {
        layer_params_.resize(config_.num_hidden_layers);
        layer_params_[layer].push_back(item.value());
      }
    }

    RETURN_IF_ERROR(TrainEpochs());
    return Finish();
  }

 private:
  absl::Status StartCache(const std::string& dataset_fingerprint) {
    const v1::JobSpec& spec = context_.spec();
    if (store_ == nullptr) {
      Log(context_, v1::JobEvent::Log::WARNING,
          "activation_cache: this daemon runs without an activation cache; training without it");
      return absl::OkStatus();
    }
    // What a stored value depends on besides the frozen weights: the exact
    // inputs (dataset, tokenizer, max length), the model's settings and the
    // compute precision.
    Sha256 inputs;
    for (const auto& row : train_.ids) {
      inputs.Update(std::string_view(reinterpret_cast<const char*>(row.data()),
                                     row.size() * sizeof(int32_t)));
      inputs.Update("\n");
    }
    ASSIGN_OR_RETURN(std::string config_json,
                     ReadFile((fs::path(spec.base_model()) / "config.json").string()));
    inputs.Update(config_json);
    inputs.Update(autocast_ ? "bf16-autocast" : "fp32");
    JobActivationCache::Options options;
    options.store = store_;
    options.job_id = context_.job_id();
    options.dataset_fingerprint = dataset_fingerprint;
    options.inputs_digest = inputs.FinishHex();
    options.base_model = spec.base_model();
    options.dtype = spec.activation_cache().dtype() == v1::ActivationCache::FP32
                        ? storage::ActivationDtype::kFp32
                        : storage::ActivationDtype::kBf16;
    for (const auto& row : train_.ids) options.lengths.push_back(static_cast<int64_t>(row.size()));
    options.hidden_size = config_.hidden_size;
    cache_ = std::make_unique<JobActivationCache>(std::move(options));
    return absl::OkStatus();
  }

  // Tells the cache how deep the frozen prefix is now, with the digests of
  // the blocks that make it up.
  void UpdateCacheDepth() {
    if (!cache_ || frozen_ == 0) return;
    if (block_digests_.empty())
      block_digests_.push_back(ParameterDigest(*model_->bert->embeddings));
    while (static_cast<int>(block_digests_.size()) <= frozen_) {
      block_digests_.push_back(
          ParameterDigest(model_->layer(static_cast<int>(block_digests_.size()) - 1)));
    }
    cache_->SetDepth(block_digests_);
    ReportCacheIfDisabled();
  }

  void ReportCacheIfDisabled() {
    v1::JobEvent event;
    if (!cache_ || !cache_->TakeDisabledReport(event.mutable_cache())) return;
    Log(context_, v1::JobEvent::Log::WARNING,
        absl::StrCat("activation_cache: ", cache_->disabled_reason()));
    context_.Emit(std::move(event));
  }

  // Parameters that train, in two AdamW groups: with and without weight decay
  // (biases and LayerNorm weights take none).
  std::vector<torch::optim::OptimizerParamGroup> ParamGroups() {
    std::vector<torch::Tensor> decay, no_decay;
    for (auto& item : model_->named_parameters()) {
      const std::string& name = item.key();
      const bool frozen = frozen_ > 0 &&
                          (name.rfind("bert.embeddings.", 0) == 0 || LayerIndex(name) < frozen_) &&
                          name.rfind("bert.pooler", 0) != 0;
      item.value().set_requires_grad(!frozen);
      if (frozen) continue;
      const bool no_wd = name.find("LayerNorm") != std::string::npos ||
                         name.compare(name.size() - 4, 4, "bias") == 0;
      (no_wd ? no_decay : decay).push_back(item.value());
    }
    const v1::Hyperparameters& hp = context_.spec().hyperparameters();
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(hp.learning_rate())
                                       .weight_decay(hp.weight_decay())
                                       .eps(1e-8)));
    groups.emplace_back(
        no_decay, std::make_unique<torch::optim::AdamWOptions>(
                      torch::optim::AdamWOptions(hp.learning_rate()).weight_decay(0).eps(1e-8)));
    return groups;
  }

  // The encoder layer a parameter belongs to; a large number for none.
  static int LayerIndex(const std::string& name) {
    static const std::string prefix = "bert.encoder.layer.";
    if (name.rfind(prefix, 0) != 0) return 1 << 30;
    return std::stoi(name.substr(prefix.size()));
  }

  // Forward through the model; the frozen prefix runs in eval mode without
  // gradients.
  torch::Tensor Forward(const Batch& batch, const int64_t* rows, size_t count,
                        const std::vector<CachedActivation>& cached) {
    const torch::Tensor bias = BertClassifierImpl::MaskBias(batch.mask, torch::kFloat).to(device_);
    torch::Tensor hidden;
    if (frozen_ > 0 && cache_ && cache_->enabled()) {
      hidden = PrefixOutput(*model_, batch.ids, bias, cached, frozen_, device_);
      cache_->Store(rows, count, cached, hidden);
      ReportCacheIfDisabled();
    } else if (frozen_ > 0) {
      torch::NoGradGuard no_grad;
      hidden = model_->RunLayers(model_->Embed(batch.ids), bias, 0, frozen_);
    } else {
      hidden = model_->Embed(batch.ids);
    }
    hidden = model_->RunLayers(hidden, bias, frozen_, model_->num_layers());
    return model_->Head(hidden);
  }

  void SetTrainMode() {
    model_->train();
    if (frozen_ == 0) return;
    model_->bert->embeddings->eval();
    for (int i = 0; i < frozen_; ++i) model_->layer(i).eval();
  }

  int64_t TrainableParameters() {
    int64_t n = 0;
    for (auto& item : model_->named_parameters()) {
      if (item.value().requires_grad()) n += item.value().numel();
    }
    return n;
  }

  void EmitFreeze(int64_t step, int epoch, const AutoFreezePolicy::Decision* decision,
                  int frozen_before) {
    v1::JobEvent event;
    v1::FreezeDecision* f = event.mutable_freeze_decision();
    f->set_step(step);
    f->set_epoch(epoch);
    f->set_frozen_before(frozen_before);
    f->set_frozen_after(frozen_);
    f->set_total_layers(config_.num_hidden_layers);
    f->set_trainable_parameter_fraction(static_cast<double>(TrainableParameters()) /
                                        static_cast<double>(total_parameters_));
    if (decision != nullptr) {
      f->set_baseline(decision->baseline);
      f->set_threshold(decision->threshold);
      for (double r : decision->change_rates) f->add_layer_change_rates(r);
    }
    context_.Emit(std::move(event));
  }

  // A step's measurements for the daemon's metrics.
  void RecordStep(const v1::Progress& progress, Clock::duration duration, int64_t examples,
                  int frozen_at_start, const std::vector<CachedActivation>& cached,
                  const v1::CacheStats& cache_before) {
    StepStats stats;
    stats.epoch = progress.epoch();
    stats.seconds = std::chrono::duration<double>(duration).count();
    stats.examples = examples;
    stats.loss = progress.loss();
    stats.samples_per_second = progress.samples_per_second();
    stats.frozen_layers = frozen_;
    stats.total_layers = config_.num_hidden_layers;
    if (frozen_ != trained_fraction_depth_) {
      trained_fraction_ =
          static_cast<double>(TrainableParameters()) / static_cast<double>(total_parameters_);
      trained_fraction_depth_ = frozen_;
    }
    stats.trained_parameter_fraction = trained_fraction_;
    stats.layer_backwards_skipped = int64_t{frozen_at_start} * examples;
    for (const CachedActivation& c : cached) stats.layer_forwards_skipped += std::max(0, c.layer);
    if (cache_) {
      const v1::CacheStats& now = cache_->epoch_stats();
      stats.cache_hits = now.hits() - cache_before.hits();
      stats.cache_partial_hits = now.partial_hits() - cache_before.partial_hits();
      stats.cache_misses = now.misses() - cache_before.misses();
      stats.cache_corrupt = now.corrupt() - cache_before.corrupt();
      stats.cache_bytes_read = now.bytes_read() - cache_before.bytes_read();
      stats.cache_bytes_written = now.bytes_written() - cache_before.bytes_written();
      stats.cache_read_seconds = cache_->TakeReadSeconds();
    }
    context_.RecordStep(stats);
  }

  void ResetGradientSums() {
    gradient_sums_.assign(config_.num_hidden_layers, {});
    for (int l = frozen_; l < config_.num_hidden_layers; ++l) {
      for (const torch::Tensor& p : layer_params_[l]) {
        gradient_sums_[l].push_back(torch::zeros_like(p));
      }
    }
  }

  void AccumulateGradients() {
    torch::NoGradGuard no_grad;
    for (int l = frozen_; l < config_.num_hidden_layers; ++l) {
      for (size_t i = 0; i < layer_params_[l].size(); ++i) {
        const torch::Tensor& grad = layer_params_[l][i].grad();
        if (grad.defined()) gradient_sums_[l][i].add_(grad);
      }
    }
  }

  // An AutoFreeze decision point: G(l) for each trainable layer, the
  // policy's decision, and the freezing it asks for.
  void Decide(int64_t step, int epoch, torch::optim::Optimizer& optimizer,
              std::vector<torch::Tensor>* trainable) {
    std::vector<double> norms(config_.num_hidden_layers, 0.0);
    for (int l = frozen_; l < config_.num_hidden_layers; ++l) {
      double sum = 0;
      for (torch::Tensor& g : gradient_sums_[l]) {
        sum += g.abs().sum().item<double>();
        g.zero_();
      }
      norms[l] = sum;
    }
    const int before = frozen_;
    AutoFreezePolicy::Decision decision = policy_->Decide(norms);
    if (decision.frozen_after > before) Freeze(decision.frozen_after, optimizer, trainable);
    EmitFreeze(step, epoch, &decision, before);
  }

  // The key of a parameter in the optimizer's state map: the TensorImpl
  // pointer printed as a string in LibTorch 1.x (c10::guts::to_string), the
  // pointer itself in 2.x.
  template <typename Key>
  static Key StateKey(const torch::Tensor& p) {
    if constexpr (std::is_same_v<Key, std::string>) {
      std::ostringstream key;
      key << p.unsafeGetTensorImpl();
      return key.str();
    } else {
      return static_cast<Key>(p.unsafeGetTensorImpl());
    }
  }

  // Freezes the embeddings and layers up to `to`: no gradients, out of the
  // optimizer (with their state), eval mode. The trainable layers keep their
  // optimizer state.
  void Freeze(int to, torch::optim::Optimizer& optimizer, std::vector<torch::Tensor>* trainable) {
    std::vector<torch::Tensor> newly_frozen;
    if (frozen_ == 0) {
      for (auto& p : model_->bert->embeddings->parameters()) newly_frozen.push_back(p);
    }
    for (int l = frozen_; l < to; ++l) {
      newly_frozen.insert(newly_frozen.end(), layer_params_[l].begin(), layer_params_[l].end());
      gradient_sums_[l].clear();
    }
    std::unordered_set<c10::TensorImpl*> gone;
    using Key = typename std::decay_t<decltype(optimizer.state())>::key_type;
    size_t released = 0;
    for (torch::Tensor& p : newly_frozen) {
      p.set_requires_grad(false);
      p.mutable_grad().reset();
      gone.insert(p.unsafeGetTensorImpl());
      released += optimizer.state().erase(StateKey<Key>(p));
    }
    if (released != newly_frozen.size()) {
      Log(context_, v1::JobEvent::Log::WARNING,
          absl::StrCat("freezing released the optimizer state of ", released, " of ",
                       newly_frozen.size(), " parameters"));
    }
    auto is_gone = [&](const torch::Tensor& p) { return gone.count(p.unsafeGetTensorImpl()) > 0; };
    for (auto& group : optimizer.param_groups()) {
      auto& params = group.params();
      params.erase(std::remove_if(params.begin(), params.end(), is_gone), params.end());
    }
    trainable->erase(std::remove_if(trainable->begin(), trainable->end(), is_gone),
                     trainable->end());
    frozen_ = to;
    SetTrainMode();
    UpdateCacheDepth();
  }

  absl::Status TrainEpochs() {
    const v1::Hyperparameters& hp = context_.spec().hyperparameters();
    const int64_t n = static_cast<int64_t>(train_.ids.size());
    const int64_t batch_size = hp.batch_size();
    const int64_t steps_per_epoch = (n + batch_size - 1) / batch_size;
    const int64_t total_steps = steps_per_epoch * hp.epochs();
    const int64_t warmup = static_cast<int64_t>(std::ceil(total_steps * hp.warmup_ratio()));
    std::vector<torch::optim::OptimizerParamGroup> groups = ParamGroups();
    std::vector<torch::Tensor> trainable;
    for (auto& g : groups) trainable.insert(trainable.end(), g.params().begin(), g.params().end());
    torch::optim::AdamW optimizer(std::move(groups));
    if (frozen_ > 0) EmitFreeze(0, 1, nullptr, 0);
    UpdateCacheDepth();
    int64_t decision_interval = 0;
    if (policy_) {
      const int evaluations = context_.spec().freeze_policy().autofreeze().evaluations_per_epoch();
      decision_interval = std::max<int64_t>(1, steps_per_epoch / evaluations);
      ResetGradientSums();
    }

    int64_t step = 0;
    double train_seconds = 0;
    for (int epoch = 1; epoch <= hp.epochs(); ++epoch) {
      SetTrainMode();
      const std::vector<int64_t> order = EpochOrder(n, hp.seed(), epoch);
      if (cache_) cache_->StartEpoch(order, batch_size);
      const auto epoch_start = Clock::now();
      double loss_sum = 0;
      int64_t samples = 0;
      for (int64_t b = 0; b < steps_per_epoch; ++b) {
        if (context_.StopRequested()) return absl::CancelledError("stopped on request");
        const int64_t start = b * batch_size;
        const size_t count = static_cast<size_t>(std::min(batch_size, n - start));
        const auto step_start = Clock::now();
        const int frozen_at_start = frozen_;
        Batch batch = MakeBatch(train_, order.data() + start, count, pad_id_, device_);
        std::vector<CachedActivation> cached;
        v1::CacheStats cache_before;
        if (cache_) {
          cache_before = cache_->epoch_stats();
          cached = cache_->Take(b);
        }
        SetAutocast(autocast_);
        torch::Tensor logits = Forward(batch, order.data() + start, count, cached);
        SetAutocast(false);
        torch::Tensor loss =
            torch::nn::functional::cross_entropy(logits.to(torch::kFloat), batch.labels);
        optimizer.zero_grad();
        loss.backward();
        if (policy_) AccumulateGradients();  // raw, before clipping
        torch::nn::utils::clip_grad_norm_(trainable, 1.0);
        const double lr = hp.learning_rate() * LrFactor(step, warmup, total_steps);
        for (auto& group : optimizer.param_groups()) {
          static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
        }
        optimizer.step();
        ++step;
        if (policy_ && step % decision_interval == 0) Decide(step, epoch, optimizer, &trainable);
        const double loss_value = loss.item<double>();
        if (!std::isfinite(loss_value)) {
          return absl::FailedPreconditionError(
              absl::StrCat("the training loss became ", loss_value, " at step ", step,
                           "; lower hyperparameters.learning_rate"));
        }
        loss_sum += loss_value * count;
        samples += static_cast<int64_t>(count);

        const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start).count();
        v1::Progress progress;
        progress.set_step(step);
        progress.set_total_steps(total_steps);
        progress.set_epoch(epoch);
        progress.set_total_epochs(hp.epochs());
        progress.set_loss(loss_sum / samples);
        progress.set_samples_per_second(elapsed > 0 ? samples / elapsed : 0);
        const double per_step = (train_seconds + elapsed) / step;
        progress.set_eta_seconds(per_step * (total_steps - step));
        context_.ReportProgress(progress);
        RecordStep(progress, Clock::now() - step_start, static_cast<int64_t>(count),
                   frozen_at_start, cached, cache_before);
      }
      const double epoch_seconds =
          std::chrono::duration<double>(Clock::now() - epoch_start).count();
      train_seconds += epoch_seconds;
      train_loss_ = loss_sum / std::max<int64_t>(1, samples);
      samples_trained_ += samples;
      Log(context_, v1::JobEvent::Log::INFO,
          absl::StrFormat("epoch %d: %.1f s, %.1f samples/s, training loss %.4f", epoch,
                          epoch_seconds, samples / epoch_seconds, train_loss_));
      if (cache_ && cache_->enabled()) {
        v1::JobEvent event;
        *event.mutable_cache() = cache_->EndEpoch(epoch);
        // Nothing to say while no layer is frozen.
        if (event.cache().epoch().examples() > 0) context_.Emit(std::move(event));
      }
      if (has_validation_) {
        if (context_.StopRequested()) return absl::CancelledError("stopped on request");
        SetAutocast(autocast_);
        EvalResult eval = Evaluate(model_, valid_, static_cast<int>(batch_size), pad_id_, device_);
        SetAutocast(false);
        v1::JobEvent event;
        v1::Evaluation* e = event.mutable_evaluation();
        e->set_epoch(epoch);
        e->set_loss(eval.loss);
        e->set_accuracy(eval.accuracy);
        e->set_macro_f1(eval.macro_f1);
        last_eval_ = *e;
        context_.Emit(std::move(event));
      }
    }
    train_seconds_ = train_seconds;
    return absl::OkStatus();
  }

  absl::StatusOr<v1::JobResult> Finish() {
    const std::string model_dir = (fs::path(context_.output_dir()) / "model").string();
    model_->to(torch::kCPU);
    RETURN_IF_ERROR(
        SaveModel(model_dir, context_.spec().base_model(), config_, labels_.names(), model_));
    v1::JobEvent artifact;
    artifact.mutable_artifact()->set_kind("model");
    artifact.mutable_artifact()->set_path(model_dir);
    context_.Emit(artifact);

    v1::JobResult result;
    result.set_output_dir(model_dir);
    auto& m = *result.mutable_metrics();
    m["train_loss"] = train_loss_;
    m["train_seconds"] = train_seconds_;
    m["train_samples_per_second"] = train_seconds_ > 0 ? samples_trained_ / train_seconds_ : 0;
    if (has_validation_) {
      m["validation_loss"] = last_eval_.loss();
      m["validation_accuracy"] = last_eval_.accuracy();
      m["validation_macro_f1"] = last_eval_.macro_f1();
    }
    const std::string metrics_path = (fs::path(context_.output_dir()) / "metrics.json").string();
    {
      std::ofstream out(metrics_path, std::ios::trunc);
      out << "{\n";
      size_t i = 0;
      for (const auto& [k, v] : m) {
        out << absl::StrFormat("  \"%s\": %.6g%s\n", k, v, ++i < m.size() ? "," : "");
      }
      out << "}\n";
      if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", metrics_path));
    }
    artifact.mutable_artifact()->set_kind("metrics");
    artifact.mutable_artifact()->set_path(metrics_path);
    context_.Emit(artifact);
    return result;
  }

  TrainingContext& context_;
  const int cpu_threads_;
  storage::ActivationStore* const store_;
  std::unique_ptr<JobActivationCache> cache_;
  std::vector<std::string> block_digests_;  // of the frozen blocks, embeddings first
  torch::Device device_{torch::kCPU};
  BertConfig config_;
  LabelSet labels_;
  Encoded train_, valid_;
  bool has_validation_ = false;
  int32_t pad_id_ = 0;
  int frozen_ = 0;
  std::optional<AutoFreezePolicy> policy_;
  // Each encoder layer's parameters, and (AutoFreeze) their summed gradients.
  std::vector<std::vector<torch::Tensor>> layer_params_;
  std::vector<std::vector<torch::Tensor>> gradient_sums_;
  int64_t total_parameters_ = 0;
  // The fraction of parameters that train, and the depth it was computed at.
  double trained_fraction_ = 1;
  int trained_fraction_depth_ = 0;
  bool autocast_ = false;
  BertClassifier model_{nullptr};
  double train_loss_ = 0, train_seconds_ = 0;
  int64_t samples_trained_ = 0;
  v1::Evaluation last_eval_;
};

}  // namespace

absl::StatusOr<v1::JobResult> BertTrainer::Train(TrainingContext& context) {
  // LibTorch reports errors by throwing: none crosses this line.
  try {
    Run run(context, options_);
    return run.Execute();
  } catch (const std::exception& e) {
    std::string what = e.what();
    // c10::Error appends a C++ backtrace after the first line.
    what = what.substr(0, what.find('\n'));
    return absl::InternalError(absl::StrCat("training failed on ", context.device(), ": ", what));
  }
}

absl::StatusOr<v1::Evaluation> EvaluateModelFolder(const std::string& model_dir,
                                                   const v1::Dataset& dataset, int max_seq_length,
                                                   int batch_size) {
  try {
    ASSIGN_OR_RETURN(BertConfig config, BertConfig::FromModelFolder(model_dir));
    if (config.labels.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(model_dir, "/config.json has no id2label"));
    }
    ASSIGN_OR_RETURN(WordPieceTokenizer tokenizer, WordPieceTokenizer::FromModelFolder(model_dir));
    ASSIGN_OR_RETURN(TextDataset data, ReadTextDataset(dataset));
    LabelSet labels = LabelSet::FromLabels(config.labels, config.labels);
    ASSIGN_OR_RETURN(std::vector<int64_t> ids, labels.Encode(data));
    Encoded encoded = Encode(tokenizer, data, std::move(ids), max_seq_length);
    BertClassifier model(config, static_cast<int64_t>(config.labels.size()));
    RETURN_IF_ERROR(LoadWeights(model_dir, config, model).status());
    EvalResult r = Evaluate(model, encoded, batch_size, tokenizer.pad_id(), torch::kCPU);
    v1::Evaluation e;
    e.set_loss(r.loss);
    e.set_accuracy(r.accuracy);
    e.set_macro_f1(r.macro_f1);
    return e;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("evaluating ", model_dir, ": ", e.what()));
  }
}

}  // namespace ftd::training
