// BertTrainer: the training engine. Fine-tunes a Hugging Face BERT checkpoint
// as a sequence classifier: loads the checkpoint and the datasets, trains
// with AdamW under a linear warm-up/decay schedule, evaluates after each
// epoch, and writes the fine-tuned model back in Hugging Face's format.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "ftd/v1/ftd.pb.h"
#include "server/training/trainer.h"
#include "storage/activation_store.h"

namespace ftd::training {

class PrecisionProbe;  // engine/precision.h
namespace parallel {
class RemoteReplicas;  // parallel/replica_set.h
}

class BertTrainer final : public Trainer {
 public:
  struct Options {
    // LibTorch intra-op threads for a job on the CPU (OpenBLAS keeps its own
    // pool; see docs/performance.md for the measurement behind the default).
    int cpu_threads = 1;
    // Where jobs with activation_cache.enabled keep the frozen prefix's
    // outputs; nullptr: such jobs train without it (and say so).
    storage::ActivationStore* activation_store = nullptr;
    // A checkpoint at least this often (seconds of training; 0: none by
    // time), besides a job's own checkpoint_every_steps, each epoch's end,
    // each deeper freeze and a stop for later.
    double checkpoint_interval_seconds = 600;
    // PRECISION_AUTO's measurements, shared by the daemon's jobs; nullptr:
    // such jobs run in fp32.
    std::shared_ptr<PrecisionProbe> precision_probe;
    // A job on several devices: how long one replica waits in a collective
    // for the others before the job fails (one that fails or exits makes
    // the others' next collective fail at once).
    double collective_timeout_seconds = 300;
    // A job on several devices: start each gradient bucket's all-reduce as
    // backward computes it, instead of all after backward.
    bool overlap_allreduce = false;
    // Runs a job's replicas on worker daemons' devices ("worker-1/cpu:0");
    // nullptr: this daemon has no workers.
    parallel::RemoteReplicas* remote = nullptr;
  };

  // Where a worker daemon's replica of a job meets the others.
  struct ReplicaPlace {
    int rank = 1;
    std::string store_host;  // the replicas' TCPStore
    int store_port = 0;
    std::string prefix;           // the run's keys in it
    std::string collective_host;  // the address this replica's collectives listen on
  };

  explicit BertTrainer(Options options) : options_(options) {}

  // Thread-safe: each call trains one job, on each of its devices
  // (context.devices()) at once, one replica a device. Writes <output_dir>/model/ and
  // <output_dir>/metrics.json, and checkpoints to the context's
  // checkpoint_dir(); resumes from the newest one there.
  absl::StatusOr<v1::JobResult> Train(TrainingContext& context) override;

  // A worker daemon's share of a job: replica `place.rank` of it, on
  // context.devices()[place.rank], the others elsewhere. Returns when the
  // job's first replica stops it (an empty result), or its error.
  absl::StatusOr<v1::JobResult> TrainReplica(TrainingContext& context, const ReplicaPlace& place);

 private:
  const Options options_;
};

// A PrecisionProbe for BertTrainer::Options (this header stays free of
// LibTorch's).
std::shared_ptr<PrecisionProbe> MakePrecisionProbe();

// Evaluates the classifier saved in `model_dir` (as BertTrainer writes it)
// on `dataset` on the CPU: loss, accuracy and macro-F1.
absl::StatusOr<v1::Evaluation> EvaluateModelFolder(const std::string& model_dir,
                                                   const v1::Dataset& dataset, int max_seq_length,
                                                   int batch_size);

}  // namespace ftd::training
