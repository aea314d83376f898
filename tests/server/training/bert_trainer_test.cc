#include "server/training/engine/bert_trainer.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "common/fs_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/training/engine/epoch_order.h"
#include "server/training/engine/precision.h"
#include "server/training/model/bert_config.h"
#include "server/training/model/checkpoint.h"
#include "tests/testing/activation_store.h"
#include "tests/testing/fake_training_context.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd::training {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

using FakeContext = ftd::testing::FakeTrainingContext;

class BertTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteTinyBert(dir_.Sub("model"));
    ftd::testing::WriteSentimentCsv(dir_.Sub("train.csv"), 256, 1);
    ftd::testing::WriteSentimentCsv(dir_.Sub("valid.csv"), 128, 2);
    spec_ = ftd::testing::TinyJobSpec(dir_.Sub("model"), dir_.Sub("train.csv"),
                                      dir_.Sub("valid.csv"), /*epochs=*/8,
                                      /*learning_rate=*/3e-3);
  }

  ftd::testing::TempDir dir_;
  v1::JobSpec spec_;
  BertTrainer trainer_{{1}};
};

TEST_F(BertTrainerTest, LearnsWritesAHuggingFaceFolderAndItsOutputEvaluatesTheSame) {
  FakeContext context(spec_, dir_.Sub("out"));
  ASSERT_OK_AND_ASSIGN(v1::JobResult result, trainer_.Train(context));
  const auto evals = context.evaluations();
  ASSERT_EQ(evals.size(), 8u);
  EXPECT_GT(evals.back().accuracy(), 0.9);  // chance is 0.5
  EXPECT_EQ(result.output_dir(), dir_.Sub("out/model"));
  EXPECT_DOUBLE_EQ(result.metrics().at("validation_accuracy"), evals.back().accuracy());
  EXPECT_EQ(context.progress_.size(), 8u * 16);  // 256 rows / 16 a batch, 8 epochs
  EXPECT_EQ(context.progress_.back().step(), context.progress_.back().total_steps());
  EXPECT_EQ(context.fingerprints_.at("train").size(), 64u);
  EXPECT_THAT(context.logs(), HasSubstr("initialised"));
  for (const char* file :
       {"config.json", "vocab.txt", "tokenizer_config.json", "model.safetensors"}) {
    EXPECT_TRUE(std::filesystem::exists(dir_.Sub("out/model/") + file)) << file;
  }
  // metrics.json is the result's metrics as JSON; nothing staged is left.
  ASSERT_OK_AND_ASSIGN(std::string metrics_json, ReadFile(dir_.Sub("out/metrics.json")));
  google::protobuf::Struct metrics;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(metrics_json, &metrics).ok());
  EXPECT_DOUBLE_EQ(metrics.fields().at("validation_accuracy").number_value(),
                   evals.back().accuracy());
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("out/model.staged")));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("out/metrics.json.tmp")));
  ASSERT_OK_AND_ASSIGN(BertConfig saved, BertConfig::FromModelFolder(dir_.Sub("out/model")));
  EXPECT_EQ(saved.labels, (std::vector<std::string>{"neg", "pos"}));

  // The round trip: the saved model gives back the same validation accuracy.
  ASSERT_OK_AND_ASSIGN(
      v1::Evaluation again,
      EvaluateModelFolder(dir_.Sub("out/model"), spec_.validation_dataset(), 16, 16));
  EXPECT_DOUBLE_EQ(again.accuracy(), evals.back().accuracy());
  EXPECT_NEAR(again.loss(), evals.back().loss(), 1e-5);

  // And it can be fine-tuned further: nothing is missing this time.
  v1::JobSpec next = spec_;
  next.set_base_model(dir_.Sub("out/model"));
  next.mutable_hyperparameters()->set_epochs(1);
  FakeContext second(next, dir_.Sub("out2"));
  ASSERT_OK(trainer_.Train(second).status());
  EXPECT_THAT(second.logs(), ::testing::Not(HasSubstr("initialised")));
  EXPECT_GT(second.evaluations().back().accuracy(), 0.9);
}

// Validation several times an epoch: at evenly spaced steps, the last at the
// epoch's end, each with its step and the training time until then; the
// result names the best one.
TEST_F(BertTrainerTest, EvaluatesSeveralTimesAnEpochAndReportsTheBest) {
  spec_.mutable_hyperparameters()->set_epochs(2);
  spec_.mutable_hyperparameters()->set_evaluations_per_epoch(3);
  FakeContext context(spec_, dir_.Sub("out"));
  ASSERT_OK_AND_ASSIGN(v1::JobResult result, trainer_.Train(context));
  const auto evals = context.evaluations();
  ASSERT_EQ(evals.size(), 6u);
  // 16 steps an epoch: after steps 5, 10, 16 of each.
  const std::vector<int64_t> steps = {5, 10, 16, 21, 26, 32};
  double best = 0, previous_seconds = 0;
  int64_t best_step = 0;
  for (size_t i = 0; i < evals.size(); ++i) {
    EXPECT_EQ(evals[i].step(), steps[i]) << i;
    EXPECT_EQ(evals[i].epoch(), i < 3 ? 1 : 2) << i;
    EXPECT_GT(evals[i].train_seconds(), previous_seconds) << i;
    previous_seconds = evals[i].train_seconds();
    if (evals[i].accuracy() > best) {
      best = evals[i].accuracy();
      best_step = evals[i].step();
    }
  }
  EXPECT_DOUBLE_EQ(result.metrics().at("best_validation_accuracy"), best);
  EXPECT_DOUBLE_EQ(result.metrics().at("best_validation_step"), static_cast<double>(best_step));
  EXPECT_DOUBLE_EQ(result.metrics().at("validation_accuracy"), evals.back().accuracy());
  // Evaluations are not training time.
  EXPECT_NEAR(result.metrics().at("train_seconds"), evals.back().train_seconds(), 1e-9);
}

// export_weights = best: the exported model is the best validation point's,
// the result names its step, and the folder evaluates to its accuracy.
TEST_F(BertTrainerTest, ExportsTheBestValidationPointsWeights) {
  spec_.mutable_hyperparameters()->set_epochs(3);
  spec_.mutable_hyperparameters()->set_evaluations_per_epoch(4);
  spec_.mutable_hyperparameters()->set_learning_rate(1e-2);  // a bumpy curve
  spec_.set_export_weights(v1::EXPORT_WEIGHTS_BEST);
  FakeContext context(spec_, dir_.Sub("out"));
  ASSERT_OK_AND_ASSIGN(v1::JobResult result, trainer_.Train(context));
  const double best = result.metrics().at("best_validation_accuracy");
  EXPECT_EQ(result.exported_weights(), v1::EXPORT_WEIGHTS_BEST);
  EXPECT_EQ(static_cast<double>(result.exported_step()),
            result.metrics().at("best_validation_step"));
  EXPECT_DOUBLE_EQ(result.exported_evaluation().accuracy(), best);
  EXPECT_DOUBLE_EQ(result.metrics().at("exported_step"),
                   static_cast<double>(result.exported_step()));
  ASSERT_OK_AND_ASSIGN(
      v1::Evaluation again,
      EvaluateModelFolder(dir_.Sub("out/model"), spec_.validation_dataset(), 16, 16));
  EXPECT_DOUBLE_EQ(again.accuracy(), best);
  EXPECT_NEAR(again.loss(), result.exported_evaluation().loss(), 1e-5);

  // export_weights = final: the last step's weights, whatever was best.
  spec_.set_export_weights(v1::EXPORT_WEIGHTS_FINAL);
  FakeContext last(spec_, dir_.Sub("last"));
  ASSERT_OK_AND_ASSIGN(v1::JobResult final_result, trainer_.Train(last));
  EXPECT_EQ(final_result.exported_weights(), v1::EXPORT_WEIGHTS_FINAL);
  EXPECT_EQ(final_result.exported_step(), 48);  // 16 steps an epoch, 3 epochs
  ASSERT_OK_AND_ASSIGN(
      v1::Evaluation final_eval,
      EvaluateModelFolder(dir_.Sub("last/model"), spec_.validation_dataset(), 16, 16));
  EXPECT_DOUBLE_EQ(final_eval.accuracy(), final_result.metrics().at("validation_accuracy"));
  if (result.exported_step() != 48) {
    ASSERT_OK_AND_ASSIGN(std::string a, ReadFile(dir_.Sub("out/model/model.safetensors")));
    ASSERT_OK_AND_ASSIGN(std::string b, ReadFile(dir_.Sub("last/model/model.safetensors")));
    EXPECT_NE(a, b) << "the best point's weights are not the final ones";
  }
}

TEST_F(BertTrainerTest, StaticFreezingLeavesTheFrontLayersUntouched) {
  // Give the checkpoint real weights first, so there is something to keep.
  v1::JobSpec one_epoch = spec_;
  one_epoch.mutable_hyperparameters()->set_epochs(1);
  FakeContext first(one_epoch, dir_.Sub("base"));
  ASSERT_OK(trainer_.Train(first).status());

  v1::JobSpec frozen = spec_;
  frozen.set_base_model(dir_.Sub("base/model"));
  frozen.mutable_freeze_policy()->mutable_static_()->set_frozen_layers(1);
  FakeContext context(frozen, dir_.Sub("frozen"));
  ASSERT_OK(trainer_.Train(context).status());
  ASSERT_OK_AND_ASSIGN(BertConfig config, BertConfig::FromModelFolder(dir_.Sub("base/model")));
  BertClassifier before(config, 2), after(config, 2);
  ASSERT_OK(LoadWeights(dir_.Sub("base/model"), config, before).status());
  ASSERT_OK(LoadWeights(dir_.Sub("frozen/model"), config, after).status());
  auto b = before->named_parameters();
  for (const auto& item : after->named_parameters()) {
    const std::string& name = item.key();
    const bool should_freeze =
        name.rfind("bert.embeddings.", 0) == 0 || name.rfind("bert.encoder.layer.0.", 0) == 0;
    EXPECT_EQ(torch::equal(item.value(), b[name]), should_freeze) << name;
  }
}

TEST_F(BertTrainerTest, StopsAtTheNextStepWhenAsked) {
  FakeContext context(spec_, dir_.Sub("out"));
  context.stop_after_ = 5;
  EXPECT_THAT(trainer_.Train(context),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("stopped")));
  EXPECT_EQ(context.progress_.size(), 5u);
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("out/model")));
}

TEST_F(BertTrainerTest, BadInputsFailWithTheFileLineAndReason) {
  ftd::testing::WriteFile(dir_.Sub("valid.csv"), "text,label\ngood movie,pos\nodd one,neutral\n");
  FakeContext unknown_label(spec_, dir_.Sub("out"));
  EXPECT_THAT(trainer_.Train(unknown_label),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(dir_.Sub("valid.csv") + ":3: its label is not among")));

  ftd::testing::WriteSentimentCsv(dir_.Sub("valid.csv"), 128, 2);
  ftd::testing::WriteFile(dir_.Sub("model/model.safetensors"),
                          std::string("\x40\0\0\0\0\0\0\0{", 9));
  FakeContext truncated(spec_, dir_.Sub("out"));
  EXPECT_THAT(trainer_.Train(truncated),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("model.safetensors")));
}

// PipeTransformer's schedule on the 2-layer model, alpha 0.5: nothing in
// epoch 1, ceil(2 * 0.5) = 1 layer from epoch 2's start on; one event, at
// the point that froze.
// The submit-time check, again when the job starts (the model folder may
// have changed in between).
TEST_F(BertTrainerTest, ALengthBeyondTheModelsPositionsFailsNamingTheField) {
  v1::JobSpec spec = spec_;
  spec.mutable_hyperparameters()->set_max_seq_length(100000);
  FakeContext context(spec, dir_.Sub("out"));
  EXPECT_THAT(trainer_.Train(context),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("hyperparameters.max_seq_length: 100000 is more than")));
}

TEST_F(BertTrainerTest, AGeometricScheduleFreezesAtEpochStarts) {
  spec_.mutable_hyperparameters()->set_epochs(3);
  spec_.mutable_freeze_policy()->mutable_geometric()->set_alpha(0.5);
  FakeContext context(spec_, dir_.Sub("out"));
  ASSERT_OK(trainer_.Train(context).status());
  std::vector<v1::FreezeDecision> decisions;
  for (const auto& e : context.events_) {
    if (e.has_freeze_decision()) decisions.push_back(e.freeze_decision());
  }
  ASSERT_EQ(decisions.size(), 1u);
  EXPECT_EQ(decisions[0].step(), 16);
  EXPECT_EQ(decisions[0].epoch(), 2);
  EXPECT_EQ(decisions[0].frozen_before(), 0);
  EXPECT_EQ(decisions[0].frozen_after(), 1);
  EXPECT_LT(decisions[0].trainable_parameter_fraction(), 1.0);
}

TEST_F(BertTrainerTest, AutoFreezeDecidesOnScheduleFreezesAPrefixAndStillLearns) {
  // AutoFreeze fine-tunes pretrained models: give the tiny model a start.
  FakeContext first(spec_, dir_.Sub("pretrained"));
  ASSERT_OK(trainer_.Train(first).status());

  v1::JobSpec spec = spec_;
  spec.set_base_model(dir_.Sub("pretrained/model"));
  auto* af = spec.mutable_freeze_policy()->mutable_autofreeze();
  af->set_percentile(50);
  af->set_evaluations_per_epoch(4);
  FakeContext context(spec, dir_.Sub("out"));
  ASSERT_OK_AND_ASSIGN(v1::JobResult result, trainer_.Train(context));
  std::vector<v1::FreezeDecision> decisions;
  for (const auto& e : context.events_) {
    if (e.has_freeze_decision()) decisions.push_back(e.freeze_decision());
  }
  // 16 steps an epoch, 4 decision points an epoch, 8 epochs.
  ASSERT_EQ(decisions.size(), 32u);
  EXPECT_TRUE(decisions[0].baseline());
  EXPECT_EQ(decisions[0].step(), 4);
  int frozen = 0;
  for (size_t i = 0; i < decisions.size(); ++i) {
    const auto& d = decisions[i];
    EXPECT_EQ(d.step(), static_cast<int64_t>(4 * (i + 1)));
    EXPECT_EQ(d.epoch(), static_cast<int>(i / 4 + 1));
    EXPECT_EQ(d.total_layers(), 2);
    EXPECT_EQ(d.frozen_before(), frozen);
    EXPECT_GE(d.frozen_after(), d.frozen_before());  // never thaws
    EXPECT_LE(d.frozen_after(), 1);                  // the last layer trains
    EXPECT_EQ(d.layer_change_rates_size(), 2);
    frozen = d.frozen_after();
    EXPECT_LE(d.trainable_parameter_fraction(), 1.0);
  }
  EXPECT_GE(frozen, 1) << "a learned-out front should freeze";
  // Frozen parameters left the optimizer with their state.
  EXPECT_THAT(context.logs(), ::testing::Not(HasSubstr("released the optimizer state")));
  EXPECT_LT(decisions.back().trainable_parameter_fraction(), 1.0);
  EXPECT_GT(context.evaluations().back().accuracy(), 0.9);

  // The model saved after freezing evaluates the same.
  ASSERT_OK_AND_ASSIGN(v1::Evaluation again,
                       EvaluateModelFolder(result.output_dir(), spec.validation_dataset(), 16, 16));
  EXPECT_DOUBLE_EQ(again.accuracy(), context.evaluations().back().accuracy());
}

std::vector<v1::Checkpoint> Checkpoints(const FakeContext& context) {
  std::vector<v1::Checkpoint> out;
  for (const auto& e : context.events_) {
    if (e.has_checkpoint()) out.push_back(e.checkpoint());
  }
  return out;
}

// On the CPU in fp32 with the same threads, a job stopped for later and
// resumed from its checkpoint ends with the weights, evaluations and freeze
// decisions of the same job run without a stop: bit for bit, because every
// input of every step is restored exactly (weights, AdamW's moments and
// steps, the dropout stream, AutoFreeze's gradient sums, the data position
// and the cache's record of which rows it holds at which depth).
TEST_F(BertTrainerTest, ResumesFromItsCheckpointToTheSameWeightsBitForBit) {
  FakeContext first(spec_, dir_.Sub("pretrained"));
  ASSERT_OK(trainer_.Train(first).status());
  v1::JobSpec spec = spec_;
  spec.set_base_model(dir_.Sub("pretrained/model"));
  spec.mutable_hyperparameters()->set_epochs(5);
  spec.mutable_hyperparameters()->set_evaluations_per_epoch(2);
  spec.mutable_hyperparameters()->set_checkpoint_every_steps(10);
  auto* af = spec.mutable_freeze_policy()->mutable_autofreeze();
  af->set_percentile(50);
  // PipeTransformer's reading freezes at the first decision after the
  // baseline, whatever this tiny run's change rates: the stop comes after it.
  af->set_freeze_through_first_above(true);
  af->set_evaluations_per_epoch(4);
  spec.mutable_activation_cache()->set_enabled(true);
  spec.mutable_activation_cache()->set_dtype(v1::ActivationCache::DTYPE_FP32);
  // The best point's weights travel in the checkpoints too.
  spec.set_export_weights(v1::EXPORT_WEIGHTS_BEST);

  // Uninterrupted, with its own store.
  ASSERT_OK_AND_ASSIGN(ftd::testing::TestActivationStore store_a,
                       ftd::testing::OpenActivationStore(dir_.Sub("db-a")));
  BertTrainer trainer_a({1, store_a.store.get(), 0});
  FakeContext whole(spec, dir_.Sub("whole"));
  whole.checkpoint_dir_ = dir_.Sub("whole/checkpoints");
  ASSERT_OK_AND_ASSIGN(v1::JobResult expected, trainer_a.Train(whole));
  ASSERT_GE(expected.freeze_timeline_size(), 2);
  int64_t freeze_step = 0;
  for (const auto& d : expected.freeze_timeline()) {
    if (d.frozen_after() > d.frozen_before() && freeze_step == 0) freeze_step = d.step();
  }
  ASSERT_GT(freeze_step, 0);
  ASSERT_LT(freeze_step, 43) << "the test wants a freeze (and cached rows) before the stop";
  // Checkpoints every 10 steps, at each epoch's end and right after the freeze.
  std::set<std::string> reasons;
  std::set<int64_t> steps;
  for (const auto& c : Checkpoints(whole)) {
    reasons.insert(c.reason());
    steps.insert(c.step());
  }
  EXPECT_TRUE(reasons.count("steps") && reasons.count("epoch"));
  EXPECT_TRUE(steps.count(freeze_step)) << freeze_step;
  EXPECT_TRUE(steps.count(80)) << "the last epoch's end";

  // Stopped for later at step 43 (epoch 3, batch 11), then resumed.
  ASSERT_OK_AND_ASSIGN(ftd::testing::TestActivationStore store_b,
                       ftd::testing::OpenActivationStore(dir_.Sub("db-b")));
  BertTrainer trainer_b({1, store_b.store.get(), 0});
  FakeContext part(spec, dir_.Sub("part"));
  part.checkpoint_dir_ = dir_.Sub("part/checkpoints");
  part.stop_after_ = 43;
  part.stop_for_later_ = true;
  EXPECT_THAT(trainer_b.Train(part), StatusIs(absl::StatusCode::kCancelled, HasSubstr("stopped")));
  ASSERT_FALSE(Checkpoints(part).empty());
  EXPECT_EQ(Checkpoints(part).back().step(), 43);
  EXPECT_EQ(Checkpoints(part).back().reason(), "shutdown");
  // Only the last two stay on disk.
  int folders = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.Sub("part/checkpoints"))) {
    (void)entry;
    ++folders;
  }
  EXPECT_EQ(folders, 2);

  FakeContext rest(spec, dir_.Sub("part"));
  rest.checkpoint_dir_ = dir_.Sub("part/checkpoints");
  ASSERT_OK_AND_ASSIGN(v1::JobResult resumed, trainer_b.Train(rest));
  ASSERT_EQ(rest.resumed_.size(), 1u);
  EXPECT_EQ(rest.resumed_[0].step(), 43);
  EXPECT_EQ(rest.resumed_[0].epoch(), 3);
  ASSERT_FALSE(rest.progress_.empty());
  EXPECT_EQ(rest.progress_.front().step(), 44);    // nothing trained twice
  EXPECT_EQ(rest.history_.evaluations_size(), 5);  // two an epoch, the 5th at step 40

  ASSERT_OK_AND_ASSIGN(std::string want, ReadFile(dir_.Sub("whole/model/model.safetensors")));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(dir_.Sub("part/model/model.safetensors")));
  EXPECT_TRUE(want == got) << "the resumed job's weights differ";
  EXPECT_EQ(resumed.exported_weights(), v1::EXPORT_WEIGHTS_BEST);
  EXPECT_EQ(resumed.exported_step(), expected.exported_step());
  ASSERT_EQ(resumed.evaluations_size(), expected.evaluations_size());
  for (int i = 0; i < expected.evaluations_size(); ++i) {
    EXPECT_EQ(resumed.evaluations(i).step(), expected.evaluations(i).step());
    EXPECT_EQ(resumed.evaluations(i).loss(), expected.evaluations(i).loss()) << i;
    EXPECT_EQ(resumed.evaluations(i).accuracy(), expected.evaluations(i).accuracy()) << i;
  }
  ASSERT_EQ(resumed.freeze_timeline_size(), expected.freeze_timeline_size());
  for (int i = 0; i < expected.freeze_timeline_size(); ++i) {
    const auto& a = expected.freeze_timeline(i);
    const auto& b = resumed.freeze_timeline(i);
    EXPECT_EQ(b.step(), a.step());
    EXPECT_EQ(b.frozen_after(), a.frozen_after());
    ASSERT_EQ(b.layer_change_rates_size(), a.layer_change_rates_size());
    for (int l = 0; l < a.layer_change_rates_size(); ++l)
      EXPECT_EQ(b.layer_change_rates(l), a.layer_change_rates(l)) << i << " " << l;
  }
  EXPECT_EQ(resumed.metrics().at("train_loss"), expected.metrics().at("train_loss"));
  // The cache served and computed the same rows: the resumed job's counts
  // over all epochs are the uninterrupted one's.
  const v1::CacheStats want_cache = whole.CacheTotals(), got_cache = rest.CacheTotals();
  EXPECT_GT(want_cache.hits(), 0);
  EXPECT_EQ(got_cache.hits(), want_cache.hits());
  EXPECT_EQ(got_cache.partial_hits(), want_cache.partial_hits());
  EXPECT_EQ(got_cache.misses(), want_cache.misses());
  EXPECT_EQ(got_cache.entries_written(), want_cache.entries_written());
}

// A checkpoint of another run (here: another seed) is not resumed from.
TEST_F(BertTrainerTest, StartsOverWhenTheCheckpointIsAnotherRuns) {
  v1::JobSpec spec = spec_;
  spec.mutable_hyperparameters()->set_epochs(2);
  FakeContext part(spec, dir_.Sub("out"));
  part.checkpoint_dir_ = dir_.Sub("out/checkpoints");
  part.stop_after_ = 20;
  part.stop_for_later_ = true;
  EXPECT_THAT(trainer_.Train(part), StatusIs(absl::StatusCode::kCancelled, HasSubstr("stopped")));
  spec.mutable_hyperparameters()->set_seed(4);
  FakeContext other(spec, dir_.Sub("out"));
  other.checkpoint_dir_ = dir_.Sub("out/checkpoints");
  ASSERT_OK(trainer_.Train(other).status());
  EXPECT_TRUE(other.resumed_.empty());
  EXPECT_EQ(other.progress_.front().step(), 1);
  EXPECT_THAT(other.logs(), HasSubstr("belongs to another run"));
}

// bf16 mixed precision on the CPU: the job learns as in fp32, its weights
// stay fp32 (the saved model evaluates the same in fp32), and it says what it
// ran in. PRECISION_AUTO takes what the daemon's probe measured faster.
TEST_F(BertTrainerTest, TrainsOnTheCpuInBf16WithFp32MasterWeightsAndAutoFollowsTheProbe) {
  v1::JobSpec spec = spec_;
  spec.mutable_hyperparameters()->set_precision(v1::PRECISION_BF16);
  FakeContext context(spec, dir_.Sub("bf16"));
  ASSERT_OK_AND_ASSIGN(v1::JobResult result, trainer_.Train(context));
  EXPECT_EQ(result.precision(), v1::PRECISION_BF16);
  EXPECT_THAT(context.logs(), HasSubstr("precision: bf16 (as the job asks)"));
  const auto evals = context.evaluations();
  ASSERT_EQ(evals.size(), 8u);
  EXPECT_GT(evals.back().accuracy(), 0.9);  // chance is 0.5
  ASSERT_OK_AND_ASSIGN(
      v1::Evaluation again,
      EvaluateModelFolder(dir_.Sub("bf16/model"), spec.validation_dataset(), 16, 16));
  EXPECT_NEAR(again.accuracy(), evals.back().accuracy(), 0.05);

  for (bool bf16_faster : {true, false}) {
    BertTrainer::Options options;
    options.precision_probe = std::make_shared<PrecisionProbe>(
        [&](const torch::Device& device, const ProductShape& shape) {
          EXPECT_TRUE(device.is_cpu());
          EXPECT_EQ(shape.tokens, 16 * 16);  // batch x max length
          return bf16_faster ? PrecisionTiming{2e-3, 1e-3} : PrecisionTiming{1e-3, 2e-3};
        });
    BertTrainer trainer(options);
    v1::JobSpec automatic = spec_;
    automatic.mutable_hyperparameters()->set_precision(v1::PRECISION_AUTO);
    automatic.mutable_hyperparameters()->set_epochs(1);
    FakeContext run(automatic, dir_.Sub(bf16_faster ? "auto-bf16" : "auto-fp32"));
    ASSERT_OK_AND_ASSIGN(v1::JobResult r, trainer.Train(run));
    EXPECT_EQ(r.precision(), bf16_faster ? v1::PRECISION_BF16 : v1::PRECISION_FP32);
    EXPECT_THAT(run.logs(), HasSubstr(bf16_faster ? "precision: bf16 (auto: "
                                                  : "precision: fp32 (auto: "));
  }
  // Unset, a job runs in fp32.
  spec_.mutable_hyperparameters()->set_epochs(1);
  FakeContext one_epoch(spec_, dir_.Sub("fp32"));
  ASSERT_OK_AND_ASSIGN(v1::JobResult fp32, trainer_.Train(one_epoch));
  EXPECT_EQ(fp32.precision(), v1::PRECISION_FP32);
  EXPECT_THAT(one_epoch.logs(), HasSubstr("precision: fp32 (the default)"));
}

// Runs where LibTorch sees a GPU (a CUDA build); skipped elsewhere.
TEST_F(BertTrainerTest, TrainsOnCudaInFp32AndWithBf16Autocast) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (bool bf16 : {false, true}) {
    v1::JobSpec spec = spec_;
    spec.mutable_hyperparameters()->set_bf16(bf16);
    const std::string out = dir_.Sub(bf16 ? "cuda-bf16" : "cuda-fp32");
    FakeContext context(spec, out, {"cuda:0"});
    ASSERT_OK_AND_ASSIGN(v1::JobResult result, trainer_.Train(context));
    const auto evals = context.evaluations();
    ASSERT_EQ(evals.size(), 8u);
    std::cerr << "cuda bf16=" << bf16 << ": final accuracy " << evals.back().accuracy() << ", "
              << result.metrics().at("train_samples_per_second") << " samples/s\n";
    EXPECT_GT(evals.back().accuracy(), 0.9) << "bf16=" << bf16;
    // The saved model is a CPU model and evaluates the same on the CPU.
    ASSERT_OK_AND_ASSIGN(v1::Evaluation again,
                         EvaluateModelFolder(out + "/model", spec.validation_dataset(), 16, 16));
    EXPECT_NEAR(again.accuracy(), evals.back().accuracy(), bf16 ? 0.05 : 0.01);
  }
  // AutoFreeze on the GPU, from the model trained above.
  v1::JobSpec spec = spec_;
  spec.set_base_model(dir_.Sub("cuda-fp32/model"));
  spec.mutable_freeze_policy()->mutable_autofreeze()->set_percentile(50);
  spec.mutable_freeze_policy()->mutable_autofreeze()->set_evaluations_per_epoch(4);
  FakeContext context(spec, dir_.Sub("cuda-autofreeze"), {"cuda:0"});
  ASSERT_OK(trainer_.Train(context).status());
  int decisions = 0;
  for (const auto& e : context.events_) decisions += e.has_freeze_decision();
  EXPECT_EQ(decisions, 32);
  EXPECT_GT(context.evaluations().back().accuracy(), 0.9);
}

// The trainer with the activation cache on a real RocksDB, on the CPU and on
// CUDA where there is a GPU: static freezing (a second run reads the first's
// entries from its first epoch) and AutoFreeze (the prefix grows under the
// cache); both learn as well as without the cache.
TEST_F(BertTrainerTest, TrainsWithTheActivationCache) {
  ASSERT_OK_AND_ASSIGN(ftd::testing::TestActivationStore opened,
                       ftd::testing::OpenActivationStore(dir_.Sub("db")));
  storage::ActivationStore* store = opened.store.get();
  BertTrainer cached_trainer({1, store});
  std::vector<std::string> devices = {"cpu:0"};
  if (torch::cuda::is_available()) devices.push_back("cuda:0");
  auto cache_epochs = [](const FakeContext& context) {
    std::vector<v1::CacheStats> out;
    for (const auto& e : context.events_) {
      // Epoch reports; a last report with epoch 0 only updates the segments.
      if (e.has_cache() && e.cache().epoch().epoch() > 0) out.push_back(e.cache().epoch());
    }
    return out;
  };
  for (const std::string& device : devices) {
    v1::JobSpec spec = spec_;
    spec.mutable_freeze_policy()->mutable_static_()->set_frozen_layers(1);
    FakeContext plain(spec, dir_.Sub(device + "-plain"), {device});
    ASSERT_OK(trainer_.Train(plain).status());

    spec.mutable_activation_cache()->set_enabled(true);
    spec.mutable_activation_cache()->set_dtype(v1::ActivationCache::DTYPE_FP32);
    FakeContext first(spec, dir_.Sub(device + "-first"), {device});
    ASSERT_OK(cached_trainer.Train(first).status());
    std::vector<v1::CacheStats> epochs = cache_epochs(first);
    ASSERT_EQ(epochs.size(), 8u) << device;
    EXPECT_EQ(epochs[0].misses(), 256) << device;
    EXPECT_EQ(epochs[1].hits(), 256) << device;
    EXPECT_NEAR(first.evaluations().back().accuracy(), plain.evaluations().back().accuracy(), 0.03)
        << device;

    FakeContext second(spec, dir_.Sub(device + "-second"), {device});
    ASSERT_OK(cached_trainer.Train(second).status());
    EXPECT_EQ(cache_epochs(second)[0].hits(), 256) << device;
    // It read exactly what the first run computed in its first epoch.
    EXPECT_NEAR(second.evaluations().back().accuracy(), first.evaluations().back().accuracy(),
                device == "cpu:0" ? 0.0 : 0.02)
        << device;

    // AutoFreeze: the prefix grows while the cache serves it.
    spec.mutable_freeze_policy()->mutable_autofreeze()->set_percentile(80);
    spec.mutable_freeze_policy()->mutable_autofreeze()->set_evaluations_per_epoch(4);
    spec.mutable_activation_cache()->set_dtype(v1::ActivationCache::DTYPE_BF16);
    FakeContext autofreeze(spec, dir_.Sub(device + "-autofreeze"), {device});
    ASSERT_OK(cached_trainer.Train(autofreeze).status());
    int64_t served = 0;
    for (const v1::CacheStats& e : cache_epochs(autofreeze)) served += e.hits() + e.partial_hits();
    EXPECT_GT(served, 0) << device;
    EXPECT_GT(autofreeze.evaluations().back().accuracy(), 0.6) << device;

    // The next device starts from an empty cache.
    std::vector<storage::SegmentKey> keys;
    for (const v1::CacheSegment& s : store->Segments()) {
      ASSERT_OK_AND_ASSIGN(
          storage::SegmentKey key,
          storage::SegmentKey::FromHex(s.namespace_(), s.dataset_fingerprint(), s.layer()));
      keys.push_back(key);
    }
    std::vector<v1::CacheSegment> cleared, kept;
    ASSERT_OK(store->Clear(keys, &cleared, &kept));
  }
}

TEST(EpochOrderTest, APureFunctionOfSeedAndEpoch) {
  auto a = EpochOrder(1000, 7, 1);
  EXPECT_EQ(a, EpochOrder(1000, 7, 1));
  EXPECT_NE(a, EpochOrder(1000, 7, 2));
  EXPECT_NE(a, EpochOrder(1000, 8, 1));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
}

}  // namespace
}  // namespace ftd::training
