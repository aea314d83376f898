#include "server/training/engine/bert_trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/training/data/text_dataset.h"
#include "server/training/engine/encoded_data.h"
#include "server/training/engine/evaluator.h"
#include "server/training/engine/precision.h"
#include "server/training/engine/training_run.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/bert_model.h"
#include "server/training/model/checkpoint.h"
#include "server/training/parallel/replica_set.h"
#include "server/training/tokenizer/wordpiece_tokenizer.h"

namespace ftd::training {

std::shared_ptr<PrecisionProbe> MakePrecisionProbe() { return std::make_shared<PrecisionProbe>(); }

namespace {

// One replica's run, with LibTorch's exceptions turned into errors.
absl::StatusOr<v1::JobResult> GuardedReplica(TrainingContext& replica,
                                             const BertTrainer::Options& options,
                                             parallel::ReplicaGroup& group) {
  // LibTorch reports errors by throwing: none crosses this line.
  try {
    return RunTraining(replica, options, group);
  } catch (const std::exception& e) {
    std::string what = e.what();
    // c10::Error appends a C++ backtrace after the first line.
    what = what.substr(0, what.find('\n'));
    return absl::InternalError(absl::StrCat(
        "training failed on ", replica.devices()[static_cast<size_t>(group.rank())], ": ", what));
  } catch (...) {
    // A replica's thread must not end the daemon.
    return absl::InternalError(
        absl::StrCat("training failed on ", replica.devices()[static_cast<size_t>(group.rank())],
                     ": an unknown exception"));
  }
}

std::chrono::milliseconds Milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

}  // namespace

absl::StatusOr<v1::JobResult> BertTrainer::Train(TrainingContext& context) {
  if (context.devices().empty()) return absl::InternalError("the job was given no device");
  parallel::ReplicaOptions replicas;
  replicas.timeout = Milliseconds(options_.collective_timeout_seconds);
  replicas.remote = options_.remote;
  return parallel::RunReplicas(context, replicas,
                               [this](TrainingContext& replica, parallel::ReplicaGroup& group) {
                                 return GuardedReplica(replica, options_, group);
                               });
}

absl::StatusOr<v1::JobResult> BertTrainer::TrainReplica(TrainingContext& context,
                                                        const ReplicaPlace& place) {
  const int world = static_cast<int>(context.devices().size());
  if (place.rank < 1 || place.rank >= world) {
    return absl::InvalidArgumentError(
        absl::StrCat("replica ", place.rank, " of a job on ", world, " devices does not exist"));
  }
  const std::chrono::milliseconds timeout = Milliseconds(options_.collective_timeout_seconds);
  ASSIGN_OR_RETURN(c10::intrusive_ptr<c10d::Store> store,
                   parallel::ConnectTcpStore(place.store_host, place.store_port, place.prefix,
                                             timeout));
  parallel::Rendezvous rendezvous;
  rendezvous.store = std::move(store);
  rendezvous.rank = place.rank;
  rendezvous.world_size = world;
  rendezvous.timeout = timeout;
  rendezvous.hostname = place.collective_host;
  return parallel::RunReplica(context, rendezvous,
                              [this](TrainingContext& replica, parallel::ReplicaGroup& group) {
                                return GuardedReplica(replica, options_, group);
                              });
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
