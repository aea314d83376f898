// A training run as a checkpoint holds it, and back: what is captured from
// the run's parts (model, freeze controller, optimizer, caches) and the
// loop's progress, and how each part is restored, so that a resumed run
// computes what an uninterrupted one does. The files are the Checkpointer's.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "ftd/internal/training_checkpoint.pb.h"
#include "ftd/v1/ftd.pb.h"
#include "server/training/cache/activation_cache.h"
#include "server/training/engine/freeze_controller.h"
#include "server/training/model/bert_model.h"
#include "server/training/optim/fused_adamw.h"

namespace ftd::training {

// The loop's position and what it has accumulated.
struct RunProgress {
  // The next batch to train: batch `next_batch` (0-based) of `epoch`
  // (1-based), after `step` steps.
  int64_t step = 0;
  int epoch = 1;
  int64_t next_batch = 0;
  // The epoch so far.
  double epoch_seconds = 0;
  double epoch_loss_sum = 0;
  int64_t epoch_samples = 0;
  // The run so far.
  double train_seconds = 0;  // of the completed epochs, evaluations left out
  int64_t samples_trained = 0;
  double train_loss = 0;  // the last completed epoch's mean
  // Efficiency mode's bound: the mean step before the first freeze, on the
  // devices the job started on (0: none measured).
  double efficiency_baseline_seconds = 0;
  std::vector<double> seconds_by_depth;
  std::vector<int64_t> steps_by_depth;
  std::vector<double> allreduce_bytes_by_depth;
  std::vector<v1::Evaluation> evaluations;
  v1::Evaluation last_evaluation, best_evaluation;
  std::vector<v1::FreezeDecision> freeze_timeline;
  std::vector<v1::CacheStats> cache_epochs;
  std::vector<std::string> block_digests;  // of the frozen blocks, embeddings first
  v1::CacheReport last_cache_report;       // the training rows' last epoch report
  std::vector<v1::CacheSegment> validation_segments;
};

// The parts of a run a checkpoint saves; the caches may be null.
struct RunParts {
  BertClassifierImpl& model;
  FreezeController& freeze;
  JobActivationCache* train_cache = nullptr;
  JobActivationCache* validation_cache = nullptr;
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// The checkpoint of a run between two steps: every weight (the frozen
// prefix too: it trained before it froze), AdamW's moments and steps for the
// parameters it updates, the dropout stream, AutoFreeze's sums and state,
// the caches' progress and `progress`.
std::pair<internal::TrainingCheckpoint, NamedTensors> CaptureRun(const RunProgress& progress,
                                                                 const RunParts& parts,
                                                                 const FusedAdamW& optimizer);

// Restores the weights, the dropout stream, the freeze controller (before
// its TrainableGroups) and the caches' progress (instead of their SetDepth),
// and returns the loop's progress. Errors: INVALID_ARGUMENT naming the
// tensor or state that does not fit the run.
absl::StatusOr<RunProgress> RestoreRun(const internal::TrainingCheckpoint& state,
                                       const std::map<std::string, torch::Tensor>& tensors,
                                       const RunParts& parts);

// Restores AdamW's state for every parameter the optimizer updates.
// Errors: INVALID_ARGUMENT naming a parameter the checkpoint lacks.
absl::Status RestoreOptimizer(const internal::TrainingCheckpoint& state,
                              const std::map<std::string, torch::Tensor>& tensors,
                              BertClassifierImpl& model, FusedAdamW& optimizer);

}  // namespace ftd::training
