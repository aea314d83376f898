// Trainer: what the scheduler runs for a job. The training engine implements
// it; tests use fakes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"
#include "ftd/v1/ftd.pb.h"

namespace ftd::training {

// One training step's measurements, for the daemon's metrics.
struct StepStats {
  int epoch = 0;  // 1-based
  double seconds = 0;
  int64_t examples = 0;
  double loss = 0;                // the epoch's mean training loss so far
  double samples_per_second = 0;  // the epoch's so far
  int frozen_layers = 0;          // encoder layers frozen during the step
  int total_layers = 0;
  double trained_parameter_fraction = 1;
  // Work skipped, counted per example and encoder layer: backward passes of
  // frozen layers, and forward passes of layers whose output the activation
  // cache served.
  int64_t layer_forwards_skipped = 0;
  int64_t layer_backwards_skipped = 0;
  // The activation cache (zeros without one), in examples, while a prefix is
  // frozen: started from an entry at the frozen depth (hits), from one at a
  // shallower depth (partial hits), or from the embeddings (misses).
  int64_t cache_hits = 0;
  int64_t cache_partial_hits = 0;
  int64_t cache_misses = 0;
  int64_t cache_corrupt = 0;
  int64_t cache_bytes_read = 0;
  int64_t cache_bytes_written = 0;
  // How long each of the cache's reads (one per batch) took, since the last step.
  std::vector<double> cache_read_seconds;
  // Bytes this job's replica 0 all-reduced with the others during the step
  // (gradients of the layers that train; 0 on one device).
  int64_t allreduce_bytes = 0;
};

// A running job as its trainer sees it. Owned by the job manager; valid
// while Train() runs. Every method may be called from the trainer's thread.
class TrainingContext {
 public:
  virtual ~TrainingContext() = default;

  virtual const std::string& job_id() const = 0;
  // The tenant that owns the job ("" without authentication): the cache
  // keeps tenants' activations apart.
  virtual const std::string& tenant() const {
    static const std::string none;
    return none;
  }
  // The spec with its defaults filled in.
  virtual const v1::JobSpec& spec() const = 0;
  // The spec as the job's record holds it: the run's identity (its
  // checkpoints' digest). spec() differs from it in its paths where a
  // worker daemon reads its own copies of the files.
  virtual const v1::JobSpec& recorded_spec() const { return spec(); }
  // The devices the job runs on, one replica each, all of one kind: "cpu:0",
  // "cuda:1", ... At least one.
  virtual const std::vector<std::string>& devices() const = 0;
  // A folder for the job's artifacts (the fine-tuned model, metrics). It exists.
  virtual const std::string& output_dir() const = 0;

  // True once the job should stop: poll at least once a training step, then
  // return absl::CancelledError() at the next safe point.
  virtual bool StopRequested() const = 0;
  // Why the job stops to run again later ("shutdown" of the daemon,
  // "preemption"): it writes a checkpoint before returning. Empty for a
  // stop that ends it (a cancel).
  virtual std::string StopForLater() const { return ""; }

  // The folder for the job's checkpoints (created when needed); a job
  // resumes from the newest one there. Empty: no checkpoints.
  virtual std::string checkpoint_dir() const { return ""; }
  // The job continues from a checkpoint: `resume` says where (the caller
  // fills in the work lost), `history` holds the evaluations and freeze
  // decisions made before it, `cache` the activation cache's counts so far.
  virtual void Resumed(const v1::Resume& resume, const v1::JobResult& history,
                       const v1::CacheUsage& cache) {
    (void)resume;
    (void)history;
    (void)cache;
  }

  // Updates the job's progress; watchers see it at a bounded rate.
  virtual void ReportProgress(const v1::Progress& progress) = 0;

  // Records an event (evaluation, freeze decision, artifact, log) in the
  // job's history. The job id, sequence and time are filled in.
  virtual void Emit(v1::JobEvent event) = 0;

  // Records a dataset's content hash on the job (role: "train", "validation").
  virtual void RecordFingerprint(const std::string& role, const std::string& sha256) = 0;

  // Records a step's measurements (metrics only; not kept with the job).
  virtual void RecordStep(const StepStats& stats) { (void)stats; }

  // Efficiency mode: asks to continue on `devices` devices, fewer than now,
  // from the checkpoint the trainer writes next. True when the daemon will
  // run it so: the trainer then checkpoints and returns CANCELLED, and the
  // devices it leaves go to queued jobs.
  virtual bool ContinueOn(int devices) {
    (void)devices;
    return false;
  }
};

// A run that ended because a device it ran on left (a worker daemon that
// died or was cut off): UNAVAILABLE with this mark. The job then resumes
// from its checkpoint on the devices left, instead of failing.
inline constexpr char kDeviceLostUrl[] = "type.ftd.dev/ftd.DeviceLost";
inline absl::Status DeviceLost(absl::string_view message) {
  absl::Status status = absl::UnavailableError(message);
  status.SetPayload(kDeviceLostUrl, absl::Cord("1"));
  return status;
}
inline bool IsDeviceLost(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kDeviceLostUrl).has_value();
}

class Trainer {
 public:
  virtual ~Trainer() = default;

  // Runs the job to its end and returns its result. Returns CANCELLED when it
  // stopped because StopRequested(); any other error fails the job, and its
  // message is what the user reads, so it names the file, field or tensor.
  // Must not throw.
  virtual absl::StatusOr<v1::JobResult> Train(TrainingContext& context) = 0;
};

}  // namespace ftd::training
