#include "server/training/engine/training_run.h"

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
#include "server/training/cache/cache_counts.h"
#include "server/training/cache/cache_key.h"
#include "server/training/engine/best_weights.h"
#include "server/training/engine/checkpoint_schedule.h"
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
#include "server/training/parallel/efficiency.h"
#include "server/training/parallel/gradient_reducer.h"
#include "server/training/parallel/replica_shard.h"
#include "server/training/parallel/step_agreement.h"

namespace ftd::training {
namespace {

using Clock = std::chrono::steady_clock;
using parallel::StepControl;

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
// (another spec, model configuration or data) is not resumed from. The
// number of devices is not part of it: a run on N devices follows the data
// order and computes the updates of one, so it may resume on another number.
std::string RunDigest(v1::JobSpec spec, const std::string& config_json,
                      const std::string& train_fingerprint, const std::string& valid_fingerprint) {
  spec.clear_devices();
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

// Replica r's dropout stream: replica 0 keeps the job's seed (a job on one
// device draws what it always did), the others a SplitMix64 hash of (seed, r).
uint64_t ReplicaDropoutSeed(uint64_t seed, int rank) {
  if (rank == 0) return seed;
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(rank + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The numbers of a step each replica adds up (GradientReducer::Reduce).
enum StepSum {
  kLossSum,  // cross-entropy summed over the rows
  kExamples,
  kForwardsSkipped,
  kCacheFirst,  // then the step's cache counts, by CacheCount
  kStepSums = kCacheFirst + kCacheCounts,
};

parallel::GradientReducer::Options ReducerOptions(const BertTrainer::Options& options) {
  parallel::GradientReducer::Options reducer;
  reducer.overlap = options.overlap_allreduce;
  return reducer;
}

// Everything one replica's run holds.
class TrainingRun {
 public:
  TrainingRun(TrainingContext& context, const BertTrainer::Options& options,
              parallel::ReplicaGroup& group)
      : context_(context),
        cpu_threads_(options.cpu_threads),
        checkpoint_interval_(options.checkpoint_interval_seconds),
        store_(options.activation_store),
        precision_probe_(options.precision_probe.get()),
        group_(group),
        agreement_(group),
        reducer_(group, ReducerOptions(options)),
        lead_(group.rank() == 0) {}

  absl::StatusOr<v1::JobResult> Execute() {
    const v1::JobSpec& spec = context_.spec();
    const v1::Hyperparameters& hp = spec.hyperparameters();
    device_ = parallel::DeviceOf(context_.devices().at(static_cast<size_t>(group_.rank())));
    if (device_.is_cpu()) torch::set_num_threads(cpu_threads_);

    ASSIGN_OR_RETURN(in_, LoadJobInputs(context_));

    // Weights; the job's own random streams (not the process's), from its seed.
    model_ = BertClassifier(in_.config, static_cast<int64_t>(in_.labels.size()));
    ASSIGN_OR_RETURN(LoadReport report,
                     LoadWeights(spec.base_model(), in_.config, model_, hp.seed()));
    model_->dropout_stream().Reset(ReplicaDropoutSeed(hp.seed(), group_.rank()));
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
    RETURN_IF_ERROR(SameWeightsEverywhere());
    RETURN_IF_ERROR(ChoosePrecision());
    if (spec.activation_cache().enabled()) {
      RETURN_IF_ERROR(StartCache());
    }
    freeze_.emplace(FreezeController::FromSpec(*model_, spec.freeze_policy()));
    frozen_ = freeze_->frozen();

    if (!context_.checkpoint_dir().empty()) {
      checkpointer_.emplace(context_.checkpoint_dir());
      run_digest_ = RunDigest(context_.recorded_spec(), in_.config_json, in_.train_fingerprint,
                              in_.validation_fingerprint);
      RETURN_IF_ERROR(Resume());
    }
    RETURN_IF_ERROR(TrainEpochs());
    if (!lead_) return v1::JobResult();
    return Finish();
  }

 private:
  RunParts Parts() { return RunParts{*model_, *freeze_, cache_.get(), valid_cache_.get()}; }

  // Replica 0's weights for every replica (as DDP starts): they load the
  // same files with the same seed, so this only guards against drift.
  absl::Status SameWeightsEverywhere() {
    if (group_.alone()) return absl::OkStatus();
    torch::NoGradGuard no_grad;
    for (torch::Tensor& p : model_->parameters()) {
      torch::Tensor data = p.detach();
      RETURN_IF_ERROR(group_.Broadcast(data, 0));
    }
    return absl::OkStatus();
  }

  // Replica 0's precision for every replica (PRECISION_AUTO measures, and
  // two measurements may differ).
  absl::Status ChoosePrecision() {
    const v1::Hyperparameters& hp = context_.spec().hyperparameters();
    const PrecisionChoice precision =
        ResolvePrecision(hp, device_,
                         ProductShape{hp.batch_size() * static_cast<int64_t>(hp.max_seq_length()),
                                      in_.config.hidden_size, in_.config.intermediate_size},
                         precision_probe_);
    ASSIGN_OR_RETURN(const int64_t agreed, agreement_.AgreeNumber(precision.precision));
    precision_ = static_cast<v1::Precision>(agreed);
    autocast_ = precision_ == v1::PRECISION_BF16;
    Log(context_, v1::JobEvent::Log::LEVEL_INFO,
        absl::StrCat("precision: ", PrecisionName(precision_), " (", precision.why, ")"));
    return absl::OkStatus();
  }

  // Continues from the newest checkpoint that passes its checks, if any.
  // Every replica reads the same one (replica 0's choice is checked).
  absl::Status Resume() {
    Checkpointer::LoadResult loaded = checkpointer_->LoadLatest(run_digest_);
    const int64_t mine = loaded.checkpoint.has_value() ? loaded.checkpoint->state.step() : -1;
    ASSIGN_OR_RETURN(const int64_t agreed_step, agreement_.AgreeNumber(mine));
    if (mine != agreed_step) {
      return absl::DataLossError(absl::StrCat(
          "replica ", group_.rank(), " found the checkpoint of step ", mine,
          " where replica 0 resumes from step ", agreed_step, "; the checkpoint folder changed"));
    }
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
    if (group_.rank() > 0) {
      // This replica's own stream, where it was when the checkpoint was
      // written (replica 0's position on another number of devices).
      const auto& draws = checkpoint.state.replica_dropout_draws();
      const uint64_t at = draws.size() == group_.size() ? draws.Get(group_.rank())
                                                        : checkpoint.state.dropout_draws();
      model_->dropout_stream().Reset(
          ReplicaDropoutSeed(checkpoint.state.dropout_seed(), group_.rank()), at);
    }
    frozen_ = freeze_->frozen();
    resumed_step_ = progress_.step;
    if (absl::Status s =
            best_.Restore(checkpoint.state.best_weights_step(), checkpoint.tensors, *model_);
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

  // Writes a checkpoint of the run as it stands between two steps (every
  // replica calls it at the same boundary; replica 0 writes). A failed write
  // is a warning: training goes on, the earlier checkpoints stay.
  absl::Status SaveCheckpoint(const FusedAdamW& optimizer, const std::string& reason) {
    if (!checkpointer_) return absl::OkStatus();
    // Each replica's dropout stream position, for a resume on as many
    // devices. Gathered before anything a replica decides alone (replica
    // 0's last write may have failed where the others' did not).
    std::vector<uint64_t> draws;
    if (!group_.alone()) {
      // As doubles: exact below 2^53 draws.
      torch::Tensor all = torch::zeros({group_.size()}, torch::kDouble);
      all.data_ptr<double>()[group_.rank()] = static_cast<double>(model_->dropout_stream().draws());
      std::vector<torch::Tensor> sums = {all};
      RETURN_IF_ERROR(group_.AllReduceSum(sums));
      for (int r = 0; r < group_.size(); ++r) {
        draws.push_back(static_cast<uint64_t>(all.data_ptr<double>()[r]));
      }
    }
    if (!lead_ || schedule_->Written(progress_.step)) return absl::OkStatus();
    auto [state, tensors] = CaptureRun(progress_, Parts(), optimizer);
    for (uint64_t d : draws) state.add_replica_dropout_draws(d);
    state.set_best_weights_step(best_.step());
    best_.AppendTo(tensors);
    state.set_job_id(context_.job_id());
    state.set_run_digest(run_digest_);
    *state.mutable_time() = ToTimestamp(absl::Now());
    state.set_reason(reason);
    absl::StatusOr<v1::Checkpoint> info = checkpointer_->Save(std::move(state), tensors);
    schedule_->Saved(progress_.step, info.ok(), Clock::now());
    if (!info.ok()) {
      Log(context_, v1::JobEvent::Log::LEVEL_WARNING,
          absl::StrCat("the checkpoint of step ", progress_.step,
                       " was not written (training goes on): ", info.status().message()));
      return absl::OkStatus();
    }
    v1::JobEvent event;
    *event.mutable_checkpoint() = *info;
    context_.Emit(std::move(event));
    return absl::OkStatus();
  }

  // The activation cache for the training rows (this replica's share of
  // them) and, on replica 0 when there is a validation set, one for its
  // rows: evaluations start them at the frozen depth too.
  absl::Status StartCache() {
    const v1::JobSpec& spec = context_.spec();
    if (store_ == nullptr) {
      Log(context_, v1::JobEvent::Log::LEVEL_WARNING,
          "activation_cache: this daemon runs without an activation cache; training without it");
      return absl::OkStatus();
    }
    auto make = [&](const EncodedData& data, const std::string& fingerprint, bool sharded) {
      JobActivationCache::Options options;
      options.store = store_;
      // The store counts each replica as a user of the segments.
      options.job_id = group_.rank() == 0
                           ? context_.job_id()
                           : absl::StrCat(context_.job_id(), "/replica-", group_.rank());
      options.dataset_fingerprint = fingerprint;
      options.inputs_digest = InputsDigest(data.ids, in_.config_json,
                                           autocast_ ? "bf16-autocast" : "fp32", context_.tenant());
      options.base_model = context_.recorded_spec().base_model();
      options.tenant = context_.tenant();
      options.dtype = spec.activation_cache().dtype() == v1::ActivationCache::DTYPE_FP32
                          ? storage::ActivationDtype::kFp32
                          : storage::ActivationDtype::kBf16;
      for (const auto& row : data.ids) options.lengths.push_back(static_cast<int64_t>(row.size()));
      options.hidden_size = in_.config.hidden_size;
      if (sharded) {
        options.replica = group_.rank();
        options.replicas = group_.size();
      }
      return std::make_unique<JobActivationCache>(std::move(options));
    };
    cache_ = make(in_.train, in_.train_fingerprint, true);
    if (in_.has_validation && lead_) {
      valid_cache_ = make(in_.validation, in_.validation_fingerprint, false);
    }
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

  // The parameters that train now, in the model's order: what the replicas
  // exchange gradients of.
  std::vector<torch::Tensor> TrainableParameters() {
    std::vector<torch::Tensor> params;
    for (const torch::Tensor& p : model_->parameters()) {
      if (p.requires_grad()) params.push_back(p);
    }
    return params;
  }

  // A freeze decision point: the policy decides on every replica (their
  // gradient sums are the same), replica 0's depth is the one applied.
  absl::Status DecideFreeze(FusedAdamW& optimizer, int64_t step, int epoch, double progress,
                            bool schedule) {
    FreezeChange change = freeze_->Decide(optimizer, epoch, progress);
    ASSIGN_OR_RETURN(const int64_t depth, agreement_.AgreeNumber(change.frozen_after));
    if (depth != change.frozen_after) {
      return absl::InternalError(absl::StrCat("replica ", group_.rank(), " decided to freeze ",
                                              change.frozen_after, " layers where replica 0 froze ",
                                              depth));
    }
    if (!schedule || change.changed()) ApplyFreezeChange(step, epoch, change);
    if (change.changed()) reducer_.Rebuild(TrainableParameters());
    return absl::OkStatus();
  }

  // A step's measurements for the daemon's metrics, with the step's sums
  // over every replica.
  void RecordStep(const v1::Progress& progress, Clock::duration duration, int frozen_at_start,
                  const std::vector<double>& sums) {
    StepStats stats;
    stats.epoch = progress.epoch();
    stats.seconds = std::chrono::duration<double>(duration).count();
    stats.examples = static_cast<int64_t>(sums[kExamples]);
    stats.loss = progress.loss();
    stats.samples_per_second = progress.samples_per_second();
    stats.frozen_layers = frozen_;
    stats.total_layers = in_.config.num_hidden_layers;
    stats.trained_parameter_fraction = freeze_->TrainableFraction();
    const size_t depth = static_cast<size_t>(frozen_at_start);
    // (Each on its own: a checkpoint from before steps were counted has
    // seconds only.)
    if (depth >= progress_.seconds_by_depth.size()) progress_.seconds_by_depth.resize(depth + 1);
    if (depth >= progress_.steps_by_depth.size()) progress_.steps_by_depth.resize(depth + 1);
    if (depth >= progress_.allreduce_bytes_by_depth.size()) {
      progress_.allreduce_bytes_by_depth.resize(depth + 1);
    }
    progress_.seconds_by_depth[depth] += stats.seconds;
    ++progress_.steps_by_depth[depth];
    stats.layer_backwards_skipped = int64_t{frozen_at_start} * stats.examples;
    stats.layer_forwards_skipped = static_cast<int64_t>(sums[kForwardsSkipped]);
    if (cache_) {
      const v1::CacheStats step = WithCacheCounts(v1::CacheStats(), sums, kCacheFirst);
      stats.cache_hits = step.hits();
      stats.cache_partial_hits = step.partial_hits();
      stats.cache_misses = step.misses();
      stats.cache_corrupt = step.corrupt();
      stats.cache_bytes_read = step.bytes_read();
      stats.cache_bytes_written = step.bytes_written();
      stats.cache_read_seconds = cache_->TakeReadSeconds();
    }
    stats.allreduce_bytes = group_.allreduce_bytes() - allreduce_bytes_reported_;
    allreduce_bytes_reported_ = group_.allreduce_bytes();
    progress_.allreduce_bytes_by_depth[depth] += static_cast<double>(stats.allreduce_bytes);
    context_.RecordStep(stats);
  }

  // What the loop does after a freeze decision point.
  void ApplyFreezeChange(int64_t step, int epoch, const FreezeChange& change) {
    if (change.changed()) {
      frozen_ = change.frozen_after;
      SetTrainMode();
      UpdateCacheDepth();
      schedule_->Froze();
    }
    EmitFreeze(step, epoch, change);
  }

  // Validation after `step` (replica 0); `train_seconds` of training so far.
  void Validate(int epoch, int64_t step, double train_seconds, int batch_size) {
    if (!lead_) return;
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

  // A user's cancel stops at once on one device; with replicas, at the next
  // step's agreement (no replica leaves the loop alone).
  bool CancelledByUser() const {
    return group_.alone() && context_.StopRequested() && context_.StopForLater().empty();
  }

  // Replica 0's view of what must happen before the next step.
  StepControl Control() {
    StepControl control;
    if (context_.StopRequested()) {
      control.stop_reason = context_.StopForLater();
      control.stop =
          control.stop_reason.empty() ? StepControl::Stop::kCancel : StepControl::Stop::kForLater;
      return control;
    }
    if (checkpointer_) {
      if (const char* why = schedule_->Due(progress_.step, Clock::now())) control.checkpoint = why;
    }
    // Efficiency mode: on fewer devices from a checkpoint (one is needed to
    // continue from), when the daemon agrees.
    if (efficiency_ && checkpointer_) {
      if (std::optional<int> k = efficiency_->ShrinkTo(frozen_); k && context_.ContinueOn(*k)) {
        Log(context_, v1::JobEvent::Log::LEVEL_INFO,
            absl::StrFormat("efficiency mode: with %d layer%s frozen a step on %d device%s should "
                            "take %.3f s, within %g x the %.3f s it took on %d before freezing; "
                            "continuing on %d from a checkpoint, the others go back to the queue",
                            frozen_, frozen_ == 1 ? "" : "s", *k, *k == 1 ? "" : "s",
                            efficiency_->Predict(frozen_, *k), efficiency_max_step_ratio_,
                            efficiency_->baseline_seconds(), group_.size(), *k));
        control.stop = StepControl::Stop::kForLater;
        control.stop_reason = "shrink";
      }
    }
    return control;
  }

  // The epoch's cache counts of every replica together, in place of each
  // replica's own.
  absl::Status MergeCacheCounts() {
    if (group_.alone() || !cache_) return absl::OkStatus();
    std::vector<double> counts = CacheCountsOf(cache_->epoch_stats());
    torch::Tensor all = torch::tensor(counts, torch::kDouble);
    std::vector<torch::Tensor> sums = {all};
    RETURN_IF_ERROR(group_.AllReduceSum(sums));
    counts.assign(all.data_ptr<double>(), all.data_ptr<double>() + counts.size());
    cache_->ReplaceEpochStats(WithCacheCounts(cache_->epoch_stats(), counts));
    return absl::OkStatus();
  }

  struct StepResult {
    std::vector<double> sums;     // over every replica (StepSum)
    double loss = 0;              // the whole batch's mean
    double exchange_seconds = 0;  // in the gradient exchange
  };

  // One step on this replica's share of batch `b`: forward and backward,
  // then the seam where the replicas' gradients are summed, then the update.
  absl::StatusOr<StepResult> Step(FusedAdamW& optimizer, const std::vector<int64_t>& order,
                                  int64_t b, int64_t batch_rows, int64_t warmup,
                                  int64_t total_steps) {
    const v1::Hyperparameters& hp = context_.spec().hyperparameters();
    const int64_t start = b * hp.batch_size();
    const parallel::RowRange share =
        parallel::ReplicaRows(batch_rows, group_.rank(), group_.size());
    const int64_t* rows = order.data() + start + share.begin;
    const size_t count = static_cast<size_t>(share.count);
    StepResult result;
    std::vector<double>& sums = result.sums;
    sums.assign(kStepSums, 0.0);
    std::vector<CachedActivation> cached;
    v1::CacheStats cache_before;
    if (cache_) {
      cache_before = cache_->epoch_stats();
      cached = cache_->Take(b);
    }
    optimizer.ZeroGrad();
    reducer_.BeginStep();
    if (count > 0) {
      Batch batch = MakeBatch(in_.train, rows, count, in_.pad_id, device_);
      torch::Tensor logits;
      {
        AutocastScope autocast(autocast_, device_);
        logits = Forward(batch, rows, count, cached);
      }
      torch::Tensor loss;
      if (group_.alone()) {
        loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat), batch.labels);
        result.loss = loss.item<double>();
        sums[kLossSum] = result.loss * static_cast<double>(count);
      } else {
        // The sum over this share over the whole batch's rows: the replicas'
        // gradients then add up to the whole batch's mean gradient.
        torch::Tensor total = torch::nn::functional::cross_entropy(
            logits.to(torch::kFloat), batch.labels,
            torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
        sums[kLossSum] = total.item<double>();
        loss = total / static_cast<double>(batch_rows);
      }
      loss.backward();
    }
    sums[kExamples] = static_cast<double>(count);
    for (const CachedActivation& c : cached) sums[kForwardsSkipped] += std::max(0, c.layer);
    if (cache_) {
      const std::vector<double> before = CacheCountsOf(cache_before);
      const std::vector<double> after = CacheCountsOf(cache_->epoch_stats());
      for (size_t i = 0; i < before.size(); ++i) sums[kCacheFirst + i] = after[i] - before[i];
    }
    if (!group_.alone() && cache_) cache_->MarkStored(order.data() + start, batch_rows);
    // The seam: the replicas' gradients (and the step's sums) add up here.
    const auto exchange_start = Clock::now();
    RETURN_IF_ERROR(reducer_.Reduce(sums));
    result.exchange_seconds = std::chrono::duration<double>(Clock::now() - exchange_start).count();
    freeze_->Accumulate();  // raw, before clipping
    optimizer.set_lr(hp.learning_rate() * LrFactor(progress_.step, warmup, total_steps));
    optimizer.Step(FusedAdamW::ClipScale(optimizer.GradNorm(), 1.0));
    if (!group_.alone()) result.loss = sums[kLossSum] / static_cast<double>(batch_rows);
    return result;
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
    reducer_.Rebuild(TrainableParameters());
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
    schedule_.emplace(hp.checkpoint_every_steps(), checkpoint_interval_);
    schedule_->Start(resumed_step_, Clock::now());
    const v1::Efficiency& efficiency = context_.spec().efficiency();
    if (efficiency.enabled() && !group_.alone()) {
      parallel::EfficiencyMonitor::Options options;
      efficiency_max_step_ratio_ =
          efficiency.has_max_step_ratio() ? efficiency.max_step_ratio() : 1.0;
      options.max_step_ratio = efficiency_max_step_ratio_;
      if (efficiency.has_measure_steps()) options.measure_steps = efficiency.measure_steps();
      efficiency_.emplace(group_.size(), options);
      if (progress_.efficiency_baseline_seconds > 0) {
        efficiency_->set_baseline_seconds(progress_.efficiency_baseline_seconds);
      }
    }

    RunProgress& p = progress_;
    while (p.epoch <= hp.epochs()) {
      const int epoch = p.epoch;
      if (schedule && p.next_batch == 0) {
        RETURN_IF_ERROR(DecideFreeze(optimizer, p.step, epoch,
                                     static_cast<double>(p.step) / total_steps, true));
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
        // Replica 0's stop and checkpoint decisions, for every replica.
        ASSIGN_OR_RETURN(const StepControl control,
                         agreement_.Agree(lead_ ? Control() : StepControl()));
        if (control.stop != StepControl::Stop::kNone) {
          if (control.stop == StepControl::Stop::kForLater) {
            p.epoch_seconds = seconds_so_far();
            RETURN_IF_ERROR(SaveCheckpoint(optimizer, control.stop_reason));
          }
          return absl::CancelledError(control.stop_reason == "shrink"
                                          ? "stopped to continue on fewer devices"
                                          : "stopped on request");
        }
        if (!control.checkpoint.empty()) {
          p.epoch_seconds = seconds_so_far();
          RETURN_IF_ERROR(SaveCheckpoint(optimizer, control.checkpoint));
          train_start = Clock::now();
        }
        const int64_t batch_rows = std::min(batch_size, n - b * batch_size);
        const auto step_start = Clock::now();
        const int frozen_at_start = frozen_;
        ASSIGN_OR_RETURN(const StepResult step,
                         Step(optimizer, order, b, batch_rows, warmup, total_steps));
        ++p.step;
        if (decision_interval > 0 && p.step % decision_interval == 0) {
          RETURN_IF_ERROR(DecideFreeze(optimizer, p.step, epoch,
                                       static_cast<double>(p.step) / total_steps, schedule));
        }
        const double loss_value = step.loss;
        if (!std::isfinite(loss_value)) {
          return absl::FailedPreconditionError(
              absl::StrCat("the training loss became ", loss_value, " at step ", p.step,
                           "; lower hyperparameters.learning_rate"));
        }
        p.epoch_loss_sum += loss_value * static_cast<double>(batch_rows);
        p.epoch_samples += batch_rows;

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
        const Clock::duration step_time = Clock::now() - step_start;
        RecordStep(progress, step_time, frozen_at_start, step.sums);
        if (efficiency_) {
          efficiency_->Record(frozen_at_start, std::chrono::duration<double>(step_time).count(),
                              step.exchange_seconds);
          progress_.efficiency_baseline_seconds = efficiency_->baseline_seconds();
        }

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
      // Every replica has a cache or none; one that turned its own off still
      // takes part in the sum.
      if (cache_) RETURN_IF_ERROR(MergeCacheCounts());
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
      RETURN_IF_ERROR(SaveCheckpoint(optimizer, "epoch"));
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
    // Where the training time went, by the frozen depth each step ran at
    // (and, on several devices, the steps and the bytes exchanged).
    for (size_t k = 0; k < p.seconds_by_depth.size(); ++k) {
      if (p.seconds_by_depth[k] > 0)
        m[absl::StrCat("train_seconds_frozen_", k)] = p.seconds_by_depth[k];
      if (k < p.steps_by_depth.size() && p.steps_by_depth[k] > 0) {
        m[absl::StrCat("steps_frozen_", k)] = static_cast<double>(p.steps_by_depth[k]);
      }
      if (!group_.alone() && k < p.allreduce_bytes_by_depth.size() &&
          p.allreduce_bytes_by_depth[k] > 0) {
        m[absl::StrCat("allreduce_bytes_frozen_", k)] = p.allreduce_bytes_by_depth[k];
      }
    }
    if (!group_.alone()) {
      m["replicas"] = group_.size();
      m["allreduce_bytes"] = static_cast<double>(group_.allreduce_bytes());
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
  // The replicas (a group of one on one device).
  parallel::ReplicaGroup& group_;
  parallel::StepAgreement agreement_;
  parallel::GradientReducer reducer_;
  const bool lead_;  // replica 0: validates, checkpoints, exports, reports
  int64_t allreduce_bytes_reported_ = 0;
  // Efficiency mode (replica 0 decides; none on one device).
  std::optional<parallel::EfficiencyMonitor> efficiency_;
  double efficiency_max_step_ratio_ = 1.0;
  // Checkpoints (none without a checkpoint folder).
  std::optional<Checkpointer> checkpointer_;
  std::optional<CheckpointSchedule> schedule_;
  std::string run_digest_;
  std::optional<Checkpointer::Loaded> resumed_;  // until the optimizer takes its state
  int64_t resumed_step_ = -1;
};

}  // namespace

absl::StatusOr<v1::JobResult> RunTraining(TrainingContext& context,
                                          const BertTrainer::Options& options,
                                          parallel::ReplicaGroup& group) {
  TrainingRun run(context, options, group);
  return run.Execute();
}

}  // namespace ftd::training
