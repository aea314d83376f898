#include "server/training/engine/bert_trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/time_util.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "server/training/cache/activation_cache.h"
#include "server/training/cache/cache_key.h"
#include "server/training/data/text_dataset.h"
#include "server/training/engine/best_weights.h"
#include "server/training/engine/checkpointer.h"
#include "server/training/engine/encoded_data.h"
#include "server/training/engine/epoch_order.h"
#include "server/training/engine/evaluator.h"
#include "server/training/engine/freeze_controller.h"
#include "server/training/engine/job_inputs.h"
#include "server/training/engine/model_exporter.h"
#include "server/training/engine/precision.h"
#include "server/training/engine/run_snapshot.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/bert_model.h"
#include "server/training/model/checkpoint.h"
#include "server/training/optim/fused_adamw.h"
#include "server/training/tokenizer/wordpiece_tokenizer.h"

namespace ftd::training {
namespace {

using Clock = std::chrono::steady_clock;

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

// The steps of an epoch (1-based, within it) after which validation runs:
// `count` of them evenly spaced, the last at the epoch's end.
std::vector<int64_t> EvaluationSteps(int64_t steps_per_epoch, int count) {
  std::vector<int64_t> steps;
  for (int k = 1; k <= count; ++k) {
    const int64_t s = std::max<int64_t>(1, (k * steps_per_epoch) / count);
    if (steps.empty() || s > steps.back()) steps.push_back(s);
  }
  return steps;
}

// What the run depends on besides its tensors: a checkpoint of another run
// (another spec, model configuration or data) is not resumed from.
std::string RunDigest(const v1::JobSpec& spec, const std::string& config_json,
                      const std::string& train_fingerprint, const std::string& valid_fingerprint) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&coded);
  }
  Sha256 hash;
  hash.Update("ftd-run/1\n");
  for (const std::string* part : std::initializer_list<const std::string*>{
           &bytes, &config_json, &train_fingerprint, &valid_fingerprint}) {
    hash.Update(absl::StrCat(part->size(), ":"));
    hash.Update(*part);
  }
  return hash.FinishHex();
}

// Everything one Train() call holds.
class Run {
 public:
  Run(TrainingContext& context, const BertTrainer::Options& options)
      : context_(context),
        cpu_threads_(options.cpu_threads),
        checkpoint_interval_(options.checkpoint_interval_seconds),
        store_(options.activation_store),
        precision_probe_(options.precision_probe.get()) {}

  absl::StatusOr<v1::JobResult> Execute() {
    const v1::JobSpec& spec = context_.spec();
    const v1::Hyperparameters& hp = spec.hyperparameters();
    device_ = ParseDevice(context_.device());
    if (device_.is_cpu()) torch::set_num_threads(cpu_threads_);

    ASSIGN_OR_RETURN(in_, LoadJobInputs(context_));

    // Weights; the job's own random streams (not the process's), from its seed.
    model_ = BertClassifier(in_.config, static_cast<int64_t>(in_.labels.size()));
    ASSIGN_OR_RETURN(LoadReport report,
                     LoadWeights(spec.base_model(), in_.config, model_, hp.seed()));
    model_->dropout_stream().Reset(hp.seed());
    if (!report.initialized.empty()) {
      Log(context_, v1::JobEvent::Log::LEVEL_INFO,
          absl::StrCat("initialised ", report.initialized.size(),
                       " weights the base model lacks: ", Summary(report.initialized)));
    }
    if (!report.unused.empty()) {
      Log(context_, v1::JobEvent::Log::LEVEL_INFO,
          absl::StrCat("the base model has ", report.unused.size(),
                       " weights the classifier does not use: ", Summary(report.unused)));
    }
    model_->to(device_);
    const PrecisionChoice precision =
        ResolvePrecision(hp, device_,
                         ProductShape{hp.batch_size() * static_cast<int64_t>(hp.max_seq_length()),
                                      in_.config.hidden_size, in_.config.intermediate_size},
                         precision_probe_);
    precision_ = precision.precision;
    autocast_ = precision_ == v1::PRECISION_BF16;
    Log(context_, v1::JobEvent::Log::LEVEL_INFO,
        absl::StrCat("precision: ", PrecisionName(precision_), " (", precision.why, ")"));
    if (spec.activation_cache().enabled()) {
      RETURN_IF_ERROR(StartCache());
    }
    freeze_.emplace(FreezeController::FromSpec(*model_, spec.freeze_policy()));
    frozen_ = freeze_->frozen();

    if (!context_.checkpoint_dir().empty()) {
      checkpointer_.emplace(context_.checkpoint_dir());
      run_digest_ =
          RunDigest(spec, in_.config_json, in_.train_fingerprint, in_.validation_fingerprint);
      RETURN_IF_ERROR(Resume());
    }
    RETURN_IF_ERROR(TrainEpochs());
    return Finish();
  }

 private:
  RunParts Parts() { return RunParts{*model_, *freeze_, cache_.get(), valid_cache_.get()}; }

  // Continues from the newest checkpoint that passes its checks, if any.
  absl::Status Resume() {
    Checkpointer::LoadResult loaded = checkpointer_->LoadLatest(run_digest_);
    for (const std::string& why : loaded.skipped) {
      Log(context_, v1::JobEvent::Log::LEVEL_WARNING,
          absl::StrCat("checkpoint ", why, "; skipped for the one before it"));
    }
    if (!loaded.checkpoint.has_value()) return absl::OkStatus();
    Checkpointer::Loaded& checkpoint = *loaded.checkpoint;
    absl::StatusOr<RunProgress> progress =
        RestoreRun(checkpoint.state, checkpoint.tensors, Parts());
    if (!progress.ok()) {
      return absl::Status(progress.status().code(),
                          absl::StrCat("resuming from the checkpoint of step ",
                                       checkpoint.state.step(), ": ", progress.status().message()));
    }
    progress_ = *std::move(progress);
    frozen_ = freeze_->frozen();
    last_checkpoint_step_ = progress_.step;
    if (absl::Status s = best_.Restore(checkpoint.state.best_weights_step(), checkpoint.tensors,
                                       *model_);
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("resuming from the checkpoint of step ",
                                                 checkpoint.state.step(), ": ", s.message()));
    }

    v1::Resume resume;
    resume.set_step(progress_.step);
    resume.set_epoch(progress_.epoch);
    *resume.mutable_checkpoint_time() = checkpoint.state.time();
    for (const std::string& why : loaded.skipped) resume.add_skipped(why);
    v1::JobResult history;
    for (const v1::Evaluation& e : progress_.evaluations) *history.add_evaluations() = e;
    for (const v1::FreezeDecision& d : progress_.freeze_timeline)
      *history.add_freeze_timeline() = d;
    v1::CacheUsage cache;
    if (cache_) {
      cache.set_enabled(true);
      cache.set_dtype(context_.spec().activation_cache().dtype());
      *cache.mutable_totals() = progress_.last_cache_report.totals();
      for (const v1::CacheStats& c : progress_.cache_epochs) *cache.add_epochs() = c;
      *cache.mutable_segments() = progress_.last_cache_report.segments();
      cache.set_disabled_reason(cache_->disabled_reason());
    }
    context_.Resumed(resume, history, cache);
    resumed_ = std::move(checkpoint);  // its optimizer state, once the optimizer exists
    return absl::OkStatus();
  }

  // Writes a checkpoint of the run as it stands between two steps. A failed
  // write is a warning: training goes on, the earlier checkpoints stay.
  void SaveCheckpoint(const FusedAdamW& optimizer, const std::string& reason) {
    if (!checkpointer_ || progress_.step == last_checkpoint_step_) return;
    auto [state, tensors] = CaptureRun(progress_, Parts(), optimizer);
    state.set_best_weights_step(best_.step());
    best_.AppendTo(tensors);
    state.set_job_id(context_.job_id());
    state.set_run_digest(run_digest_);
    *state.mutable_time() = ToTimestamp(absl::Now());
    state.set_reason(reason);
    absl::StatusOr<v1::Checkpoint> info = checkpointer_->Save(std::move(state), tensors);
    last_checkpoint_time_ = Clock::now();
    freeze_since_checkpoint_ = false;
    if (!info.ok()) {
      Log(context_, v1::JobEvent::Log::LEVEL_WARNING,
          absl::StrCat("the checkpoint of step ", progress_.step,
                       " was not written (training goes on): ", info.status().message()));
      return;
    }
    last_checkpoint_step_ = progress_.step;
    v1::JobEvent event;
    *event.mutable_checkpoint() = *info;
    context_.Emit(std::move(event));
  }

  // Why a checkpoint is due before the next step, or nullptr.
  const char* CheckpointDue(int64_t every_steps) const {
    if (!checkpointer_ || progress_.step == 0 || progress_.step == last_checkpoint_step_)
      return nullptr;
    if (freeze_since_checkpoint_) return "freeze";
    if (every_steps > 0 && progress_.step % every_steps == 0) return "steps";
    if (checkpoint_interval_ > 0 &&
        std::chrono::duration<double>(Clock::now() - last_checkpoint_time_).count() >=
            checkpoint_interval_) {
      return "interval";
    }
    return nullptr;
  }

  // The activation cache for the training rows and, when there is a
  // validation set, one for its rows: evaluations start them at the frozen
  // depth too.
  absl::Status StartCache() {
    const v1::JobSpec& spec = context_.spec();
    if (store_ == nullptr) {
      Log(context_, v1::JobEvent::Log::LEVEL_WARNING,
          "activation_cache: this daemon runs without an activation cache; training without it");
      return absl::OkStatus();
    }
    auto make = [&](const EncodedData& data, const std::string& fingerprint) {
      JobActivationCache::Options options;
      options.store = store_;
      options.job_id = context_.job_id();
      options.dataset_fingerprint = fingerprint;
      options.inputs_digest = InputsDigest(data.ids, in_.config_json,
                                           autocast_ ? "bf16-autocast" : "fp32", context_.tenant());
      options.base_model = spec.base_model();
      options.tenant = context_.tenant();
      options.dtype = spec.activation_cache().dtype() == v1::ActivationCache::DTYPE_FP32
                          ? storage::ActivationDtype::kFp32
                          : storage::ActivationDtype::kBf16;
      for (const auto& row : data.ids) options.lengths.push_back(static_cast<int64_t>(row.size()));
      options.hidden_size = in_.config.hidden_size;
      return std::make_unique<JobActivationCache>(std::move(options));
    };
    cache_ = make(in_.train, in_.train_fingerprint);
    if (in_.has_validation) valid_cache_ = make(in_.validation, in_.validation_fingerprint);
    return absl::OkStatus();
  }

  // Tells the cache how deep the frozen prefix is now, with the digests of
  // the blocks that make it up.
  void UpdateCacheDepth() {
    if (!cache_ || frozen_ == 0) return;
    std::vector<std::string>& digests = progress_.block_digests;
    if (digests.empty()) digests.push_back(ParameterDigest(*model_->bert->embeddings));
    while (static_cast<int>(digests.size()) <= frozen_) {
      digests.push_back(ParameterDigest(model_->layer(static_cast<int>(digests.size()) - 1)));
    }
    cache_->SetDepth(digests);
    if (valid_cache_) valid_cache_->SetDepth(digests);
    ReportCacheIfDisabled();
  }

  void ReportCacheIfDisabled() {
    v1::JobEvent event;
    if (!cache_ || !cache_->TakeDisabledReport(event.mutable_cache())) return;
    Log(context_, v1::JobEvent::Log::LEVEL_WARNING,
        absl::StrCat("activation_cache: ", cache_->disabled_reason()));
    context_.Emit(std::move(event));
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
      hidden = model_->RunPrefix(model_->Embed(batch.ids), bias, 0, frozen_);
    } else {
      hidden = model_->Embed(batch.ids);
    }
    return model_->Classify(hidden, bias, frozen_);
  }

  void SetTrainMode() {
    model_->train();
    if (frozen_ == 0) return;
    model_->bert->embeddings->eval();
    for (int i = 0; i < frozen_; ++i) model_->layer(i).eval();
  }

  void EmitFreeze(int64_t step, int epoch, const FreezeChange& change) {
    v1::JobEvent event;
    v1::FreezeDecision* f = event.mutable_freeze_decision();
    f->set_step(step);
    f->set_epoch(epoch);
    f->set_frozen_before(change.frozen_before);
    f->set_frozen_after(change.frozen_after);
    f->set_total_layers(in_.config.num_hidden_layers);
    f->set_trainable_parameter_fraction(freeze_->TrainableFraction());
    if (change.decision) {
      f->set_baseline(change.decision->baseline);
      f->set_threshold(change.decision->threshold);
      for (double r : change.decision->change_rates) f->add_layer_change_rates(r);
    }
    progress_.freeze_timeline.push_back(*f);
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
    stats.total_layers = in_.config.num_hidden_layers;
    stats.trained_parameter_fraction = freeze_->TrainableFraction();
    std::vector<double>& by_depth = progress_.seconds_by_depth;
    if (frozen_at_start >= static_cast<int>(by_depth.size()))
      by_depth.resize(frozen_at_start + 1, 0.0);
    by_depth[frozen_at_start] += stats.seconds;
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

  // What the loop does after a freeze decision point.
  void ApplyFreezeChange(int64_t step, int epoch, const FreezeChange& change) {
    if (change.changed()) {
      frozen_ = change.frozen_after;
      SetTrainMode();
      UpdateCacheDepth();
      freeze_since_checkpoint_ = true;
    }
    EmitFreeze(step, epoch, change);
  }

  // Validation after `step`; `train_seconds` of training so far.
  void Validate(int epoch, int64_t step, double train_seconds, int batch_size) {
    EvalResult eval;
    {
      AutocastScope autocast(autocast_, device_);
      JobActivationCache* prefix =
          valid_cache_ && valid_cache_->enabled() && cache_ && cache_->enabled() && frozen_ > 0
              ? valid_cache_.get()
              : nullptr;
      eval = Evaluate(*model_, in_.validation, batch_size, in_.pad_id, device_, prefix, frozen_);
      if (prefix != nullptr) progress_.validation_segments = eval.cache_segments;
    }
    SetTrainMode();
    v1::JobEvent event;
    v1::Evaluation* e = event.mutable_evaluation();
    e->set_epoch(epoch);
    e->set_step(step);
    e->set_train_seconds(train_seconds);
    e->set_loss(eval.loss);
    e->set_accuracy(eval.accuracy);
    e->set_macro_f1(eval.macro_f1);
    progress_.last_evaluation = *e;
    if (progress_.evaluations.empty() || e->accuracy() > progress_.best_evaluation.accuracy()) {
      progress_.best_evaluation = *e;
      if (context_.spec().export_weights() == v1::EXPORT_WEIGHTS_BEST) best_.Keep(*model_, step);
    }
    progress_.evaluations.push_back(*e);
    context_.Emit(std::move(event));
  }

  // A user's cancel stops at once; a stop for later stops at the next step
  // boundary, after a checkpoint.
  bool CancelledByUser() const {
    return context_.StopRequested() && context_.StopForLater().empty();
  }

  absl::Status TrainEpochs() {
    const v1::Hyperparameters& hp = context_.spec().hyperparameters();
    const int64_t n = static_cast<int64_t>(in_.train.ids.size());
    const int64_t batch_size = hp.batch_size();
    const int64_t steps_per_epoch = (n + batch_size - 1) / batch_size;
    const int64_t total_steps = steps_per_epoch * hp.epochs();
    const int64_t warmup = static_cast<int64_t>(std::ceil(total_steps * hp.warmup_ratio()));
    FusedAdamW::Options adamw;
    adamw.lr = hp.learning_rate();
    adamw.eps = 1e-8;
    FusedAdamW optimizer(freeze_->TrainableGroups(hp.weight_decay()), adamw);
    if (resumed_.has_value()) {
      if (absl::Status s = RestoreOptimizer(resumed_->state, resumed_->tensors, *model_, optimizer);
          !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("resuming from the checkpoint of step ",
                                                   resumed_->state.step(), ": ", s.message()));
      }
      resumed_.reset();
    } else if (frozen_ > 0) {
      FreezeChange start;
      start.frozen_after = frozen_;
      EmitFreeze(0, 1, start);
    }
    UpdateCacheDepth();
    const v1::FreezePolicy& fp = context_.spec().freeze_policy();
    int64_t decision_interval = 0;
    if (fp.has_autofreeze() || fp.has_linear()) {
      const int decisions = fp.has_autofreeze() ? fp.autofreeze().evaluations_per_epoch()
                                                : fp.linear().evaluations_per_epoch();
      decision_interval = std::max<int64_t>(1, steps_per_epoch / decisions);
    }
    // Schedules report only the points that freeze something.
    const bool schedule = fp.has_geometric() || fp.has_linear();
    const std::vector<int64_t> eval_steps =
        EvaluationSteps(steps_per_epoch, std::max(1, hp.evaluations_per_epoch()));
    const int64_t every_steps = hp.checkpoint_every_steps();
    last_checkpoint_time_ = Clock::now();

    RunProgress& p = progress_;
    while (p.epoch <= hp.epochs()) {
      const int epoch = p.epoch;
      if (schedule && p.next_batch == 0) {
        const FreezeChange change =
            freeze_->Decide(optimizer, epoch, static_cast<double>(p.step) / total_steps);
        if (change.changed()) ApplyFreezeChange(p.step, epoch, change);
      }
      SetTrainMode();
      const std::vector<int64_t> order = EpochOrder(n, hp.seed(), epoch);
      if (cache_) cache_->StartEpoch(order, batch_size, p.next_batch);
      auto train_start = Clock::now();  // restarts after each evaluation and checkpoint
      auto seconds_so_far = [&] {
        return p.epoch_seconds + std::chrono::duration<double>(Clock::now() - train_start).count();
      };
      size_t next_eval = 0;
      while (next_eval < eval_steps.size() && eval_steps[next_eval] <= p.next_batch) ++next_eval;
      for (; p.next_batch < steps_per_epoch; ++p.next_batch) {
        const int64_t b = p.next_batch;
        if (context_.StopRequested()) {
          if (const std::string why = context_.StopForLater(); !why.empty()) {
            p.epoch_seconds = seconds_so_far();
            SaveCheckpoint(optimizer, why);
          }
          return absl::CancelledError("stopped on request");
        }
        if (const char* why = CheckpointDue(every_steps)) {
          p.epoch_seconds = seconds_so_far();
          SaveCheckpoint(optimizer, why);
          train_start = Clock::now();
        }
        const int64_t start = b * batch_size;
        const size_t count = static_cast<size_t>(std::min(batch_size, n - start));
        const auto step_start = Clock::now();
        const int frozen_at_start = frozen_;
        Batch batch = MakeBatch(in_.train, order.data() + start, count, in_.pad_id, device_);
        std::vector<CachedActivation> cached;
        v1::CacheStats cache_before;
        if (cache_) {
          cache_before = cache_->epoch_stats();
          cached = cache_->Take(b);
        }
        torch::Tensor logits;
        {
          AutocastScope autocast(autocast_, device_);
          logits = Forward(batch, order.data() + start, count, cached);
        }
        torch::Tensor loss =
            torch::nn::functional::cross_entropy(logits.to(torch::kFloat), batch.labels);
        optimizer.ZeroGrad();
        loss.backward();
        freeze_->Accumulate();  // raw, before clipping
        optimizer.set_lr(hp.learning_rate() * LrFactor(p.step, warmup, total_steps));
        optimizer.Step(FusedAdamW::ClipScale(optimizer.GradNorm(), 1.0));
        ++p.step;
        if (decision_interval > 0 && p.step % decision_interval == 0) {
          const FreezeChange change =
              freeze_->Decide(optimizer, epoch, static_cast<double>(p.step) / total_steps);
          if (!schedule || change.changed()) ApplyFreezeChange(p.step, epoch, change);
        }
        const double loss_value = loss.item<double>();
        if (!std::isfinite(loss_value)) {
          return absl::FailedPreconditionError(
              absl::StrCat("the training loss became ", loss_value, " at step ", p.step,
                           "; lower hyperparameters.learning_rate"));
        }
        p.epoch_loss_sum += loss_value * count;
        p.epoch_samples += static_cast<int64_t>(count);

        const double elapsed = seconds_so_far();
        v1::Progress progress;
        progress.set_step(p.step);
        progress.set_total_steps(total_steps);
        progress.set_epoch(epoch);
        progress.set_total_epochs(hp.epochs());
        progress.set_loss(p.epoch_loss_sum / p.epoch_samples);
        progress.set_samples_per_second(elapsed > 0 ? p.epoch_samples / elapsed : 0);
        const double per_step = (p.train_seconds + elapsed) / p.step;
        progress.set_eta_seconds(per_step * (total_steps - p.step));
        context_.ReportProgress(progress);
        RecordStep(progress, Clock::now() - step_start, static_cast<int64_t>(count),
                   frozen_at_start, cached, cache_before);

        // Validation inside the epoch; the one at its end follows the
        // epoch's report below.
        if (in_.has_validation && next_eval < eval_steps.size() && b + 1 == eval_steps[next_eval]) {
          ++next_eval;
          if (b + 1 < steps_per_epoch) {
            p.epoch_seconds = seconds_so_far();
            if (CancelledByUser()) return absl::CancelledError("stopped on request");
            Validate(epoch, p.step, p.train_seconds + p.epoch_seconds,
                     static_cast<int>(batch_size));
            train_start = Clock::now();
          }
        }
      }
      p.epoch_seconds = seconds_so_far();
      p.train_seconds += p.epoch_seconds;
      p.train_loss = p.epoch_loss_sum / std::max<int64_t>(1, p.epoch_samples);
      p.samples_trained += p.epoch_samples;
      Log(context_, v1::JobEvent::Log::LEVEL_INFO,
          absl::StrFormat("epoch %d: %.1f s, %.1f samples/s, training loss %.4f", epoch,
                          p.epoch_seconds, p.epoch_samples / p.epoch_seconds, p.train_loss));
      if (cache_ && cache_->enabled()) {
        v1::JobEvent event;
        *event.mutable_cache() = cache_->EndEpoch(epoch);
        p.last_cache_report = event.cache();
        // The job's segments include its validation rows'.
        for (const v1::CacheSegment& s : p.validation_segments)
          *event.mutable_cache()->add_segments() = s;
        // Nothing to say while no layer is frozen.
        if (event.cache().epoch().examples() > 0) {
          p.cache_epochs.push_back(event.cache().epoch());
          context_.Emit(std::move(event));
        }
      }
      if (in_.has_validation) {
        if (CancelledByUser()) return absl::CancelledError("stopped on request");
        Validate(epoch, p.step, p.train_seconds, static_cast<int>(batch_size));
      }
      // The next epoch starts from here.
      ++p.epoch;
      p.next_batch = 0;
      p.epoch_seconds = p.epoch_loss_sum = 0;
      p.epoch_samples = 0;
      SaveCheckpoint(optimizer, "epoch");
    }
    // The last validation may have stored a segment the last report lacks.
    if (cache_ && cache_->enabled() && !p.validation_segments.empty()) {
      v1::JobEvent event;
      *event.mutable_cache() = p.last_cache_report;
      event.mutable_cache()->clear_epoch();
      for (const v1::CacheSegment& s : p.validation_segments)
        *event.mutable_cache()->add_segments() = s;
      context_.Emit(std::move(event));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::JobResult> Finish() {
    const RunProgress& p = progress_;
    v1::JobResult result;
    // The weights to export: the best validation point's, or the last step's
    // (also when a best was asked for but none was kept).
    const bool best = context_.spec().export_weights() == v1::EXPORT_WEIGHTS_BEST &&
                      best_.step() > 0 && best_.step() == p.best_evaluation.step();
    if (context_.spec().export_weights() == v1::EXPORT_WEIGHTS_BEST && !best) {
      Log(context_, v1::JobEvent::Log::LEVEL_WARNING,
          "no best validation point's weights were kept; exporting the final weights");
    }
    if (best) best_.ApplyTo(*model_);
    result.set_exported_weights(best ? v1::EXPORT_WEIGHTS_BEST : v1::EXPORT_WEIGHTS_FINAL);
    result.set_exported_step(best ? best_.step() : p.step);
    if (best) {
      *result.mutable_exported_evaluation() = p.best_evaluation;
    } else if (in_.has_validation && p.last_evaluation.step() == p.step) {
      *result.mutable_exported_evaluation() = p.last_evaluation;
    }
    model_->to(torch::kCPU);
    ASSIGN_OR_RETURN(const std::string model_dir,
                     ExportModel(context_.output_dir(), context_.spec().base_model(), in_.config,
                                 in_.labels.names(), model_));
    v1::JobEvent artifact;
    artifact.mutable_artifact()->set_kind("model");
    artifact.mutable_artifact()->set_path(model_dir);
    context_.Emit(artifact);

    result.set_output_dir(model_dir);
    result.set_precision(precision_);
    for (const v1::Evaluation& e : p.evaluations) *result.add_evaluations() = e;
    for (const v1::FreezeDecision& d : p.freeze_timeline) *result.add_freeze_timeline() = d;
    auto& m = *result.mutable_metrics();
    m["train_loss"] = p.train_loss;
    m["train_seconds"] = p.train_seconds;
    m["train_samples_per_second"] = p.train_seconds > 0 ? p.samples_trained / p.train_seconds : 0;
    // Where the training time went, by the frozen depth each step ran at.
    for (size_t k = 0; k < p.seconds_by_depth.size(); ++k) {
      if (p.seconds_by_depth[k] > 0)
        m[absl::StrCat("train_seconds_frozen_", k)] = p.seconds_by_depth[k];
    }
    if (in_.has_validation) {
      m["validation_loss"] = p.last_evaluation.loss();
      m["validation_accuracy"] = p.last_evaluation.accuracy();
      m["validation_macro_f1"] = p.last_evaluation.macro_f1();
      m["best_validation_accuracy"] = p.best_evaluation.accuracy();
      m["best_validation_step"] = static_cast<double>(p.best_evaluation.step());
    }
    m["exported_step"] = static_cast<double>(result.exported_step());
    ASSIGN_OR_RETURN(
        const std::string metrics_path,
        ExportMetrics(context_.output_dir(), std::map<std::string, double>(m.begin(), m.end())));
    artifact.mutable_artifact()->set_kind("metrics");
    artifact.mutable_artifact()->set_path(metrics_path);
    context_.Emit(artifact);
    return result;
  }

  TrainingContext& context_;
  const int cpu_threads_;
  const double checkpoint_interval_;
  storage::ActivationStore* const store_;
  std::unique_ptr<JobActivationCache> cache_, valid_cache_;
  torch::Device device_{torch::kCPU};
  JobInputs in_;
  int frozen_ = 0;  // the controller's depth, as the loop last applied it
  std::optional<FreezeController> freeze_;
  BestWeights best_;  // for export_weights = best
  PrecisionProbe* const precision_probe_;
  v1::Precision precision_ = v1::PRECISION_FP32;
  bool autocast_ = false;  // precision_ is bf16
  BertClassifier model_{nullptr};
  RunProgress progress_;
  // Checkpoints (none without a checkpoint folder).
  std::optional<Checkpointer> checkpointer_;
  std::string run_digest_;
  std::optional<Checkpointer::Loaded> resumed_;  // until the optimizer takes its state
  int64_t last_checkpoint_step_ = -1;
  Clock::time_point last_checkpoint_time_;
  bool freeze_since_checkpoint_ = false;
};

}  // namespace

std::shared_ptr<PrecisionProbe> MakePrecisionProbe() {
  return std::make_shared<PrecisionProbe>();
}

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
    EncodedData encoded = Encode(tokenizer, data, std::move(ids), max_seq_length);
    BertClassifier model(config, static_cast<int64_t>(config.labels.size()));
    RETURN_IF_ERROR(LoadWeights(model_dir, config, model).status());
    EvalResult r = Evaluate(*model, encoded, batch_size, tokenizer.pad_id(), torch::kCPU);
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
