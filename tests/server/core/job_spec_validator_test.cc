#include "server/core/job_spec_validator.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/file_manager.h"
#include "server/core/memory_estimate.h"
#include "server/core/model_check.h"
#include "server/training/model/safetensors.h"
#include "storage/database.h"
#include "storage/file_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_bert.h"

namespace ftd::core {
namespace {

using ::ftd::testing::StatusIs;
using ::ftd::testing::WriteFile;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class JobSpecValidatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ftd::testing::WriteModelFolder(root_.Sub("model"), /*layers=*/6, /*max_positions=*/128);
    WriteFile(root_.Sub("train.csv"), "text,label\nhello,a\nbye,b\n");
    WriteFile(root_.Sub("valid.jsonl"), "{\"text\": \"x\", \"label\": \"a\"}\n");
    spec_.set_base_model(root_.Sub("model"));
    spec_.mutable_train_dataset()->set_path(root_.Sub("train.csv"));
    spec_.mutable_validation_dataset()->set_path(root_.Sub("valid.jsonl"));
  }

  JobSpecValidator Validator() {
    return JobSpecValidator({{root_.path()},
                             [](const v1::DeviceRequest& request, int devices) {
                               if (request.kind() == v1::DeviceRequest::KIND_CUDA) {
                                 return absl::InvalidArgumentError("device: no CUDA device");
                               }
                               if (devices > 2) {
                                 return absl::InvalidArgumentError(absl::StrCat(
                                     "devices: ", devices,
                                     " were asked for but this server has 2 CPU devices"));
                               }
                               return absl::OkStatus();
                             },
                             /*memory_budget=*/nullptr});
  }

  // Applies `change` to a good spec and expects INVALID_ARGUMENT whose
  // message starts with `field` and contains `reason`.
  void ExpectInvalid(const std::function<void(v1::JobSpec*)>& change, const std::string& field,
                     const std::string& reason) {
    v1::JobSpec spec = spec_;
    change(&spec);
    absl::Status status = Validator().ValidateAndNormalize(&spec);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 ::testing::AllOf(StartsWith(field + ":"), HasSubstr(reason))));
  }

  ftd::testing::TempDir root_;
  ftd::testing::TempDir outside_;
  v1::JobSpec spec_;
};

// The estimate's parameter count is exact: bert-base with a two-label head
// has 109,483,778 parameters in transformers.
TEST(MemoryEstimateTest, CountsBertBaseExactlyAndGrowsWithTheBatch) {
  ModelShape base;  // the defaults are bert-base's
  const MemoryEstimate e = EstimateTrainingMemory(base, 32, 128);
  EXPECT_EQ(e.parameters, 109483778);
  EXPECT_EQ(e.weights_and_optimizer_bytes, 16 * e.parameters);
  EXPECT_GT(e.activation_bytes, int64_t{3} << 30);  // ~3.9 GB at 32 x 128
  EXPECT_LT(e.activation_bytes, int64_t{5} << 30);
  EXPECT_EQ(EstimateTrainingMemory(base, 64, 128).activation_bytes, 2 * e.activation_bytes);
}

// What a job needs counts its classifier, which grows with the training
// file's labels: so many labels that the classifier alone does not fit are
// refused naming the dataset, fewer that fit only with a smaller batch name
// the batch.
TEST_F(JobSpecValidatorTest, AJobThatCannotFitIsRefusedCountingItsLabels) {
  v1::JobSpec normalized = spec_;
  ASSERT_OK(Validator().ValidateAndNormalize(&normalized));
  ASSERT_OK_AND_ASSIGN(ModelConfig model, ReadModelConfig(root_.Sub("model"), "base_model", "m"));
  const v1::Hyperparameters& hp = normalized.hyperparameters();
  // Room for the job with two labels, and 1 MiB more.
  const int64_t budget =
      EstimateTrainingMemory(model.shape, hp.batch_size(), hp.max_seq_length(), 2).total_bytes() +
      (1 << 20);
  auto validate = [&](int labels) {
    std::string rows = "text,label\n";
    for (int i = 0; i < labels; ++i) rows += "t," + std::to_string(i) + "\n";
    WriteFile(root_.Sub("many.csv"), rows);
    v1::JobSpec spec = spec_;
    spec.mutable_train_dataset()->set_path(root_.Sub("many.csv"));
    spec.clear_validation_dataset();
    JobSpecValidator::Options options{{root_.path()},
                                      [](const v1::DeviceRequest&, int) { return absl::OkStatus(); },
                                      [budget](const v1::DeviceRequest&, int) { return budget; }};
    return JobSpecValidator(options).ValidateAndNormalize(&spec);
  };
  EXPECT_OK(validate(2));
  // 3,000 labels: 3,000 x 33 parameters, 1.5 MiB with AdamW's moments.
  EXPECT_THAT(validate(3000),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("hyperparameters.batch_size:"), HasSubstr("3000 labels"))));
  // 300,000: 150 MiB of classifier, more than the batch's activations
  // (about 100 MiB) that the budget has room for.
  EXPECT_THAT(validate(300000), StatusIs(absl::StatusCode::kInvalidArgument,
                                         AllOf(StartsWith("train_dataset:"),
                                               HasSubstr("many.csv's 300000 labels need about"))));
}

// A job is checked against the smallest memory of the devices it may run
// on: its GPU's for CUDA, the daemon's limit for CPU, both for ANY.
TEST(MemoryEstimateTest, TheBudgetIsTheSmallestDeviceTheRequestMayUse) {
  using scheduler::Device;
  const int64_t gib = int64_t{1} << 30;
  std::vector<Device> devices = {{Device::Kind::kCuda, 0, "H100", 80 * gib},
                                 {Device::Kind::kCuda, 1, "A10", 24 * gib},
                                 {Device::Kind::kCpu, 0, "cpu", 0}};
  v1::DeviceRequest request;
  request.set_kind(v1::DeviceRequest::KIND_CUDA);
  request.set_cuda_index(0);
  EXPECT_EQ(MemoryBudget(request, 1, devices, 64 * gib), 80 * gib);
  request.set_cuda_index(1);
  EXPECT_EQ(MemoryBudget(request, 1, devices, 64 * gib), 24 * gib);
  request.set_kind(v1::DeviceRequest::KIND_CPU);
  EXPECT_EQ(MemoryBudget(request, 1, devices, 64 * gib), 64 * gib);
  request.set_kind(v1::DeviceRequest::KIND_UNSPECIFIED);
  EXPECT_EQ(MemoryBudget(request, 1, devices, 64 * gib), 24 * gib);
  // Unknown memory is not checked.
  devices[1].memory_bytes = 0;
  EXPECT_EQ(MemoryBudget(request, 1, devices, 0), 80 * gib);
  request.set_kind(v1::DeviceRequest::KIND_CPU);
  EXPECT_EQ(MemoryBudget(request, 1, devices, 0), 0);
  // Replicas on CPU slots share the job's memory; on GPUs each has its own,
  // and several CUDA devices are any of them.
  EXPECT_EQ(MemoryBudget(request, 2, devices, 64 * gib), 32 * gib);
  request.set_kind(v1::DeviceRequest::KIND_CUDA);
  devices[1].memory_bytes = 24 * gib;
  EXPECT_EQ(MemoryBudget(request, 2, devices, 64 * gib), 24 * gib);
}

TEST_F(JobSpecValidatorTest, AGoodSpecGetsItsDefaults) {
  v1::JobSpec spec = spec_;
  ASSERT_OK(Validator().ValidateAndNormalize(&spec));
  const auto& hp = spec.hyperparameters();
  EXPECT_EQ(hp.epochs(), 3);
  EXPECT_EQ(hp.batch_size(), 32);
  EXPECT_DOUBLE_EQ(hp.learning_rate(), 5e-5);
  EXPECT_DOUBLE_EQ(hp.weight_decay(), 0.01);
  EXPECT_EQ(hp.max_seq_length(), 128);
  EXPECT_TRUE(hp.has_seed());
  EXPECT_EQ(hp.evaluations_per_epoch(), 1);
  EXPECT_EQ(hp.precision(), v1::PRECISION_FP32);
  EXPECT_EQ(spec.task(), v1::TASK_SEQUENCE_CLASSIFICATION);
  EXPECT_TRUE(spec.freeze_policy().has_none());
  EXPECT_EQ(spec.train_dataset().format(), v1::DATASET_FORMAT_CSV);
  EXPECT_EQ(spec.validation_dataset().format(), v1::DATASET_FORMAT_JSONL);
  EXPECT_EQ(spec.train_dataset().text_column(), "text");
  EXPECT_EQ(spec.train_dataset().label_column(), "label");
}

TEST_F(JobSpecValidatorTest, AutoFreezeDefaultsAndExplicitValuesStay) {
  v1::JobSpec spec = spec_;
  spec.mutable_freeze_policy()->mutable_autofreeze();
  spec.mutable_hyperparameters()->set_max_seq_length(48);
  ASSERT_OK(Validator().ValidateAndNormalize(&spec));
  EXPECT_DOUBLE_EQ(spec.freeze_policy().autofreeze().percentile(), 50);
  EXPECT_EQ(spec.freeze_policy().autofreeze().evaluations_per_epoch(), 5);
  EXPECT_EQ(spec.freeze_policy().autofreeze().keep_trainable(), 1);
  EXPECT_DOUBLE_EQ(spec.freeze_policy().autofreeze().start_fraction(), 0.5);
  EXPECT_TRUE(spec.freeze_policy().autofreeze().freeze_through_first_above());
  EXPECT_EQ(spec.hyperparameters().max_seq_length(), 48);
  // The authors' rule, asked for explicitly, stays.
  spec = spec_;
  auto* authors = spec.mutable_freeze_policy()->mutable_autofreeze();
  authors->set_freeze_through_first_above(false);
  authors->set_start_fraction(0);
  ASSERT_OK(Validator().ValidateAndNormalize(&spec));
  EXPECT_FALSE(spec.freeze_policy().autofreeze().freeze_through_first_above());
  EXPECT_DOUBLE_EQ(spec.freeze_policy().autofreeze().start_fraction(), 0);
}

// A job with validation exports its best point's weights unless it asks for
// the final ones; one without can only export the final ones.
TEST_F(JobSpecValidatorTest, ExportsTheBestWeightsWhereThereIsValidation) {
  v1::JobSpec spec = spec_;
  ASSERT_OK(Validator().ValidateAndNormalize(&spec));
  EXPECT_EQ(spec.export_weights(), v1::EXPORT_WEIGHTS_BEST);
  spec = spec_;
  spec.set_export_weights(v1::EXPORT_WEIGHTS_FINAL);
  ASSERT_OK(Validator().ValidateAndNormalize(&spec));
  EXPECT_EQ(spec.export_weights(), v1::EXPORT_WEIGHTS_FINAL);
  spec = spec_;
  spec.clear_validation_dataset();
  ASSERT_OK(Validator().ValidateAndNormalize(&spec));
  EXPECT_EQ(spec.export_weights(), v1::EXPORT_WEIGHTS_FINAL);
  ExpectInvalid(
      [](v1::JobSpec* s) {
        s->clear_validation_dataset();
        s->set_export_weights(v1::EXPORT_WEIGHTS_BEST);
      },
      "export_weights", "needs a validation_dataset");
  ExpectInvalid([](v1::JobSpec* s) { s->set_export_weights(static_cast<v1::ExportWeights>(7)); },
                "export_weights", "unknown value 7");
}

TEST_F(JobSpecValidatorTest, ModelErrorsNameTheFieldAndTheFile) {
  ExpectInvalid([](v1::JobSpec* s) { s->clear_base_model(); }, "base_model", "required");
  ExpectInvalid([](v1::JobSpec* s) { s->set_base_model("relative/model"); }, "base_model",
                "not an absolute path");
  ExpectInvalid([&](v1::JobSpec* s) { s->set_base_model(root_.Sub("missing")); }, "base_model",
                "is not a folder");
  ExpectInvalid([&](v1::JobSpec* s) { s->set_base_model(root_.Sub("train.csv")); }, "base_model",
                "is not a folder");
  std::filesystem::create_directories(root_.Sub("empty"));
  ExpectInvalid([&](v1::JobSpec* s) { s->set_base_model(root_.Sub("empty")); }, "base_model",
                "config.json");
  WriteFile(root_.Sub("broken/config.json"), "{not json");
  ExpectInvalid([&](v1::JobSpec* s) { s->set_base_model(root_.Sub("broken")); }, "base_model",
                "is not a JSON object");
  WriteFile(root_.Sub("gpt/config.json"),
            R"({"model_type": "gpt2", "num_hidden_layers": 2, "max_position_embeddings": 8})");
  ExpectInvalid([&](v1::JobSpec* s) { s->set_base_model(root_.Sub("gpt")); }, "base_model",
                "model_type is not \"bert\"");
  WriteFile(root_.Sub("nolayers/config.json"), R"({"model_type": "bert"})");
  ExpectInvalid([&](v1::JobSpec* s) { s->set_base_model(root_.Sub("nolayers")); }, "base_model",
                "num_hidden_layers");
  ftd::testing::WriteModelFolder(root_.Sub("noweights"));
  std::filesystem::remove(root_.Sub("noweights/model.safetensors"));
  ExpectInvalid([&](v1::JobSpec* s) { s->set_base_model(root_.Sub("noweights")); }, "base_model",
                "no weights");
}

TEST_F(JobSpecValidatorTest, PathsOutsideTheDataRootsAreRejected) {
  ftd::testing::WriteModelFolder(outside_.Sub("model"));
  ExpectInvalid([&](v1::JobSpec* s) { s->set_base_model(outside_.Sub("model")); }, "base_model",
                "outside the daemon's data roots");
  // ".." and symbolic links cannot escape either.
  ExpectInvalid(
      [&](v1::JobSpec* s) {
        s->set_base_model(root_.path() + "/../" +
                          std::filesystem::path(outside_.path()).filename().string() + "/model");
      },
      "base_model", "outside");
  std::filesystem::create_directory_symlink(outside_.Sub("model"), root_.Sub("link"));
  ExpectInvalid([&](v1::JobSpec* s) { s->set_base_model(root_.Sub("link")); }, "base_model",
                "outside");
  WriteFile(outside_.Sub("secret.csv"), "text,label\n");
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_path(outside_.Sub("secret.csv")); },
      "train_dataset.path", "outside");
}

// What the job would find wrong in its data when it starts, hours later
// behind a queue, is refused at submit: naming the file, the line and the
// reason, never the file's contents.
TEST_F(JobSpecValidatorTest, BadDataIsRefusedAtSubmitWithoutQuotingIt) {
  WriteFile(root_.Sub("columns.csv"), "sentence,category\nsecret words,a\n");
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_path(root_.Sub("columns.csv")); },
      "train_dataset", root_.Sub("columns.csv") + ":1: no column \"text\" in the header");
  WriteFile(root_.Sub("really.jsonl"), "text,label\nsecret words,a\n");
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_path(root_.Sub("really.jsonl")); },
      "train_dataset", ":1: not a JSON object (is it CSV? name format CSV)");
  WriteFile(root_.Sub("empty.csv"), "text,label\n");
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_path(root_.Sub("empty.csv")); },
      "train_dataset", root_.Sub("empty.csv") + ": the file has no rows");
  WriteFile(root_.Sub("other.jsonl"),
            "{\"text\": \"x\", \"label\": \"a\"}\n{\"text\": \"y\", \"label\": \"secret-b\"}\n"
            "{\"text\": \"z\", \"label\": \"secret-c\"}\n");
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_validation_dataset()->set_path(root_.Sub("other.jsonl")); },
      "validation_dataset",
      root_.Sub("other.jsonl") +
          ":2: 2 labels of the validation file (the first on this line) "
          "are not among the training file's 2 labels");
  WriteFile(root_.Sub("one.csv"), "text,label\nx,secret-a\ny,secret-a\n");
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_path(root_.Sub("one.csv")); },
      "train_dataset",
      root_.Sub("one.csv") + ": every row has the same label; a classifier needs two or more");
  for (const char* file : {"columns.csv", "really.jsonl", "other.jsonl", "one.csv"}) {
    v1::JobSpec spec = spec_;
    const bool train = std::string(file) != "other.jsonl";  // the others are training files
    (train ? spec.mutable_train_dataset() : spec.mutable_validation_dataset())
        ->set_path(root_.Sub(file));
    absl::Status status = Validator().ValidateAndNormalize(&spec);
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr("secret"))) << file;
  }
}

// Files are recalled between submits while unchanged; a file that changed
// (here its size) is read again, so a recalled summary is never stale.
TEST_F(JobSpecValidatorTest, ADatasetThatChangedIsReadAgain) {
  JobSpecValidator validator = Validator();
  v1::JobSpec spec = spec_;
  ASSERT_OK(validator.ValidateAndNormalize(&spec));
  WriteFile(root_.Sub("train.csv"), "text,label\nhello,a\nbye,\n");  // an empty label
  spec = spec_;
  EXPECT_THAT(validator.ValidateAndNormalize(&spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(":3: the label is empty")));
}

// What a caller is told about a path never depends on what exists outside
// its roots: a missing path outside reads as an existing one, and a link in
// the roots to a missing target outside as one to an existing target.
TEST_F(JobSpecValidatorTest, ErrorsDoNotTellWhetherAPathOutsideTheRootsExists) {
  WriteFile(outside_.Sub("exists.csv"), "text,label\na,b\n");
  auto message = [&](const std::string& path) {
    v1::JobSpec spec = spec_;
    spec.mutable_train_dataset()->set_path(path);
    std::string text(Validator().ValidateAndNormalize(&spec).message());
    // The path itself differs; the rest must not.
    const size_t at = text.find(path);
    if (at != std::string::npos) text.replace(at, path.size(), "P");
    return text;
  };
  const std::string existing = message(outside_.Sub("exists.csv"));
  EXPECT_THAT(existing, HasSubstr("outside"));
  EXPECT_EQ(message(outside_.Sub("missing.csv")), existing);
  std::filesystem::create_symlink(outside_.Sub("exists.csv"), root_.Sub("to-existing.csv"));
  std::filesystem::create_symlink(outside_.Sub("missing.csv"), root_.Sub("to-missing.csv"));
  const std::string linked = message(root_.Sub("to-existing.csv"));
  EXPECT_THAT(linked, HasSubstr("outside"));
  EXPECT_EQ(message(root_.Sub("to-missing.csv")), linked);
  // Through "link/..": the same whether the link's target exists or not.
  std::filesystem::create_directory_symlink(outside_.Sub("dir"), root_.Sub("to-dir"));
  const std::string through_missing = message(root_.Sub("to-dir/../zzz.csv"));
  std::filesystem::create_directories(outside_.Sub("dir"));
  EXPECT_EQ(message(root_.Sub("to-dir/../zzz.csv")), through_missing);
  // ... also when what it names lexically is the caller's own file (which
  // it reached when the target did not exist).
  std::filesystem::create_directory_symlink(outside_.Sub("dir2"), root_.Sub("to-dir2"));
  const std::string to_own = message(root_.Sub("to-dir2/../train.csv"));
  EXPECT_THAT(to_own, HasSubstr("through a symbolic link"));
  std::filesystem::create_directories(outside_.Sub("dir2"));
  EXPECT_EQ(message(root_.Sub("to-dir2/../train.csv")), to_own);
  // Named outside, through a link into the roots: outside, existing or not.
  std::filesystem::create_directory_symlink(root_.path(), outside_.Sub("into-root"));
  EXPECT_EQ(message(outside_.Sub("into-root/train.csv")), existing);
  EXPECT_EQ(message(outside_.Sub("no-such-link/train.csv")), existing);
  // Inside the roots, a missing file is still named as missing.
  EXPECT_THAT(message(root_.Sub("nope.csv")), HasSubstr("does not exist"));
}

TEST_F(JobSpecValidatorTest, DatasetErrorsNameTheField) {
  ExpectInvalid([](v1::JobSpec* s) { s->clear_train_dataset(); }, "train_dataset.path", "required");
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_path(root_.Sub("nope.csv")); },
      "train_dataset.path", "does not exist");
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_validation_dataset()->set_path(root_.Sub("model")); },
      "validation_dataset.path", "not a regular file");
  WriteFile(root_.Sub("data.txt"), "x");
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_path(root_.Sub("data.txt")); },
      "train_dataset.format", "CSV or JSONL");
  ExpectInvalid([&](v1::JobSpec* s) { s->mutable_train_dataset()->set_label_column("text"); },
                "train_dataset.label_column", "same column");
  // The names are kept in the job's record: bounded like an uploaded
  // dataset's column names.
  ExpectInvalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_text_column(std::string(257, 't')); },
      "train_dataset.text_column", "at most 256 printable characters");
  ExpectInvalid([&](v1::JobSpec* s) { s->mutable_validation_dataset()->set_label_column("a\tb"); },
                "validation_dataset.label_column", "printable");
}

TEST_F(JobSpecValidatorTest, HyperparametersOutOfRange) {
  auto hp = [](v1::JobSpec* s) { return s->mutable_hyperparameters(); };
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_epochs(0); }, "hyperparameters.epochs", "got 0");
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_epochs(1001); }, "hyperparameters.epochs",
                "between 1 and 1000");
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_batch_size(0); }, "hyperparameters.batch_size",
                "got 0");
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_batch_size(-4); }, "hyperparameters.batch_size",
                "got -4");
  for (double lr : {0.0, -1e-4, std::nan(""), std::numeric_limits<double>::infinity(), 2.0}) {
    ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_learning_rate(lr); },
                  "hyperparameters.learning_rate", "finite number");
  }
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_warmup_ratio(1.5); },
                "hyperparameters.warmup_ratio", "between 0 and 1");
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_weight_decay(-0.1); },
                "hyperparameters.weight_decay", ">= 0");
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_evaluations_per_epoch(0); },
                "hyperparameters.evaluations_per_epoch", "got 0");
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_evaluations_per_epoch(1001); },
                "hyperparameters.evaluations_per_epoch", "between 1 and 1000");
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_max_seq_length(129); },
                "hyperparameters.max_seq_length", "max_position_embeddings (128)");
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_max_seq_length(1); },
                "hyperparameters.max_seq_length", "got 1");
  ExpectInvalid([&](v1::JobSpec* s) { hp(s)->set_precision(static_cast<v1::Precision>(9)); },
                "hyperparameters.precision", "unknown value 9");
  ExpectInvalid(
      [&](v1::JobSpec* s) {
        hp(s)->set_bf16(true);
        hp(s)->set_precision(v1::PRECISION_FP32);
      },
      "hyperparameters.bf16", "not both");
}

TEST_F(JobSpecValidatorTest, PrecisionKeepsTheOlderBf16FlagsMeaning) {
  for (v1::Precision asked : {v1::PRECISION_BF16, v1::PRECISION_AUTO, v1::PRECISION_FP32}) {
    v1::JobSpec spec = spec_;
    spec.mutable_hyperparameters()->set_precision(asked);
    ASSERT_OK(Validator().ValidateAndNormalize(&spec));
    EXPECT_EQ(spec.hyperparameters().precision(), asked);
  }
  // bf16 = true: bf16 on a GPU, fp32 on the CPU, resolved where the job runs.
  v1::JobSpec older = spec_;
  older.mutable_hyperparameters()->set_bf16(true);
  ASSERT_OK(Validator().ValidateAndNormalize(&older));
  EXPECT_EQ(older.hyperparameters().precision(), v1::PRECISION_UNSPECIFIED);
  EXPECT_TRUE(older.hyperparameters().bf16());
  older = spec_;
  older.mutable_hyperparameters()->set_bf16(false);
  ASSERT_OK(Validator().ValidateAndNormalize(&older));
  EXPECT_EQ(older.hyperparameters().precision(), v1::PRECISION_FP32);
  EXPECT_FALSE(older.hyperparameters().has_bf16());
}

TEST_F(JobSpecValidatorTest, TheActivationCacheNeedsFrozenLayersAndAKnownDtype) {
  ExpectInvalid([](v1::JobSpec* s) { s->mutable_activation_cache()->set_enabled(true); },
                "activation_cache.enabled", "needs a freeze policy that freezes layers");
  ExpectInvalid(
      [](v1::JobSpec* s) {
        s->mutable_activation_cache()->set_enabled(true);
        s->mutable_freeze_policy()->mutable_static_()->set_frozen_layers(0);
      },
      "activation_cache.enabled", "static with frozen_layers > 0");
  ExpectInvalid(
      [](v1::JobSpec* s) {
        s->mutable_activation_cache()->set_dtype(static_cast<v1::ActivationCache::Dtype>(9));
      },
      "activation_cache.dtype", "unknown value 9");
  v1::JobSpec spec = spec_;
  spec.mutable_activation_cache()->set_enabled(true);
  spec.mutable_freeze_policy()->mutable_autofreeze();
  ASSERT_OK(Validator().ValidateAndNormalize(&spec));
  EXPECT_EQ(spec.activation_cache().dtype(), v1::ActivationCache::DTYPE_BF16);
}

TEST_F(JobSpecValidatorTest, FreezePolicyChecksAgainstTheModelsDepth) {
  ExpectInvalid(
      [](v1::JobSpec* s) { s->mutable_freeze_policy()->mutable_static_()->set_frozen_layers(6); },
      "freeze_policy.static.frozen_layers", "between 0 and 5");
  ExpectInvalid(
      [](v1::JobSpec* s) { s->mutable_freeze_policy()->mutable_static_()->set_frozen_layers(-1); },
      "freeze_policy.static.frozen_layers", "got -1");
  ExpectInvalid(
      [](v1::JobSpec* s) { s->mutable_freeze_policy()->mutable_autofreeze()->set_percentile(0); },
      "freeze_policy.autofreeze.percentile", "(0, 100]");
  ExpectInvalid(
      [](v1::JobSpec* s) {
        s->mutable_freeze_policy()->mutable_autofreeze()->set_evaluations_per_epoch(0);
      },
      "freeze_policy.autofreeze.evaluations_per_epoch", "got 0");
  ExpectInvalid(
      [](v1::JobSpec* s) { s->mutable_freeze_policy()->mutable_autofreeze()->set_smoothing(1); },
      "freeze_policy.autofreeze.smoothing", "[0, 1)");
  ExpectInvalid(
      [](v1::JobSpec* s) {
        s->mutable_freeze_policy()->mutable_autofreeze()->set_max_layers_per_decision(-1);
      },
      "freeze_policy.autofreeze.max_layers_per_decision", "got -1");
  ExpectInvalid(
      [](v1::JobSpec* s) { s->mutable_freeze_policy()->mutable_autofreeze()->set_keep_trainable(6); },
      "freeze_policy.autofreeze.keep_trainable", "between 1 and 5");
  ExpectInvalid(
      [](v1::JobSpec* s) { s->mutable_freeze_policy()->mutable_autofreeze()->set_keep_trainable(0); },
      "freeze_policy.autofreeze.keep_trainable", "got 0");
  ExpectInvalid(
      [](v1::JobSpec* s) {
        s->mutable_freeze_policy()->mutable_autofreeze()->set_start_fraction(1);
      },
      "freeze_policy.autofreeze.start_fraction", "[0, 1)");
  ExpectInvalid(
      [](v1::JobSpec* s) { s->mutable_freeze_policy()->mutable_geometric()->set_alpha(1); },
      "freeze_policy.geometric.alpha", "(0, 1)");
  ExpectInvalid(
      [](v1::JobSpec* s) { s->mutable_freeze_policy()->mutable_linear()->set_freeze_start(1); },
      "freeze_policy.linear.freeze_start", "[0, 1)");
  ExpectInvalid(
      [](v1::JobSpec* s) { s->mutable_freeze_policy()->mutable_linear()->set_freeze_level(0); },
      "freeze_policy.linear.freeze_level", "(0, 1]");
  v1::JobSpec ok = spec_;
  ok.mutable_freeze_policy()->mutable_static_()->set_frozen_layers(5);
  EXPECT_OK(Validator().ValidateAndNormalize(&ok));
}

TEST_F(JobSpecValidatorTest, PlacementAndNaming) {
  ExpectInvalid([](v1::JobSpec* s) { s->mutable_device()->set_kind(v1::DeviceRequest::KIND_CUDA); },
                "device", "no CUDA device");
  ExpectInvalid([](v1::JobSpec* s) { s->mutable_device()->set_cuda_index(2); }, "device.cuda_index",
                "only meaningful");
  ExpectInvalid([](v1::JobSpec* s) { s->set_priority(1001); }, "priority", "got 1001");
  ExpectInvalid([](v1::JobSpec* s) { s->set_devices(-1); }, "devices", "got -1");
  ExpectInvalid(
      [](v1::JobSpec* s) {
        s->mutable_efficiency()->set_enabled(true);
        s->mutable_efficiency()->set_max_step_ratio(0);
      },
      "efficiency.max_step_ratio", "got 0");
  ExpectInvalid(
      [](v1::JobSpec* s) {
        s->mutable_efficiency()->set_enabled(true);
        s->mutable_efficiency()->set_measure_steps(0);
      },
      "efficiency.measure_steps", "got 0");
  ExpectInvalid([](v1::JobSpec* s) { s->set_devices(3); }, "devices", "has 2 CPU devices");
  ExpectInvalid(
      [](v1::JobSpec* s) {
        s->set_devices(2);
        s->mutable_hyperparameters()->set_batch_size(1);
      },
      "devices", "batch_size must be at least 2");
  {
    v1::JobSpec one = spec_;
    ASSERT_OK(Validator().ValidateAndNormalize(&one));
    EXPECT_EQ(one.devices(), 1);  // the default
    v1::JobSpec two = spec_;
    two.set_devices(2);
    EXPECT_OK(Validator().ValidateAndNormalize(&two));
  }
  ExpectInvalid([](v1::JobSpec* s) { s->set_display_name(std::string(201, 'x')); }, "display_name",
                "at most 200");
  ExpectInvalid([](v1::JobSpec* s) { (*s->mutable_labels())["bad key!"] = "v"; }, "labels",
                "key \"bad key!\"");
  ExpectInvalid([](v1::JobSpec* s) { (*s->mutable_labels())["team"] = "a\nb"; }, "labels[team]",
                "printable");
  ExpectInvalid([](v1::JobSpec* s) { s->set_task(static_cast<v1::Task>(7)); }, "task",
                "unsupported task");
}

TEST_F(JobSpecValidatorTest, AJobThatCannotFitInMemoryIsRefusedNamingTheBatchAndTheEstimate) {
  JobSpecValidator validator({{root_.path()},
                              [](const v1::DeviceRequest&, int) { return absl::OkStatus(); },
                              [](const v1::DeviceRequest&, int) { return int64_t{1} << 30; }});
  spec_.mutable_hyperparameters()->set_batch_size(32);
  EXPECT_OK(validator.ValidateAndNormalize(&spec_));
  spec_.mutable_hyperparameters()->set_batch_size(4096);
  EXPECT_THAT(validator.ValidateAndNormalize(&spec_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("hyperparameters.batch_size: 4096 sequences of "
                                        "max_seq_length 128 need about "),
                             HasSubstr("activations"), HasSubstr("more than the 1.0 GiB"))));
  // Unknown memory (0): no check.
  JobSpecValidator unknown({{root_.path()},
                            [](const v1::DeviceRequest&, int) { return absl::OkStatus(); },
                            [](const v1::DeviceRequest&, int) { return int64_t{0}; }});
  EXPECT_OK(unknown.ValidateAndNormalize(&spec_));
}

// Specs that name uploads by id: resolved to where the daemon keeps them,
// checked as path-named files are, and their errors name the upload
// ("file-1 (train.csv)"), never the daemon's storage path.
class UploadedFilesTest : public JobSpecValidatorTest {
 protected:
  void SetUp() override {
    JobSpecValidatorTest::SetUp();
    ASSERT_OK_AND_ASSIGN(
        database_,
        storage::Database::Open({store_.Sub("db"), {storage::FileStore::kColumnFamily}, {}}));
    ASSERT_OK_AND_ASSIGN(file_store_,
                         storage::FileStore::Open({store_.Sub("files"), database_.get()}));
    files_ = std::make_unique<FileManager>(FileManager::Options{file_store_.get()});
  }

  std::string UploadFile(v1::FileKind kind, const std::vector<std::string>& paths) {
    v1::UploadFileRequest::Header header;
    header.set_kind(kind);
    std::string bytes;
    for (const std::string& path : paths) {
      const std::string content = *ReadFile(path);
      v1::FileEntry* entry = header.add_entries();
      entry->set_name(std::filesystem::path(path).filename().string());
      entry->set_size(static_cast<int64_t>(content.size()));
      entry->set_sha256(Sha256::Hex(content));
      bytes += content;
    }
    absl::StatusOr<std::unique_ptr<FileManager::Upload>> upload = files_->BeginUpload(header);
    EXPECT_OK(upload.status());
    if (!upload.ok()) return "";
    EXPECT_OK((*upload)->Write(bytes));
    absl::StatusOr<v1::File> file = (*upload)->Finish();
    EXPECT_OK(file.status());
    return file.ok() ? file->id() : "";
  }

  JobSpecValidator ValidatorWithFiles() {
    return JobSpecValidator({{root_.path()}, nullptr, nullptr, files_.get()});
  }

  ftd::testing::TempDir store_;  // outside the data roots
  std::unique_ptr<storage::Database> database_;
  std::unique_ptr<storage::FileStore> file_store_;
  std::unique_ptr<FileManager> files_;
};

TEST_F(UploadedFilesTest, IdsResolveToTheStoredFilesAndAreCheckedLikePaths) {
  ftd::testing::WriteTinyBert(store_.Sub("tiny"));
  const std::string model =
      UploadFile(v1::FILE_KIND_MODEL, {store_.Sub("tiny/config.json"), store_.Sub("tiny/vocab.txt"),
                                       store_.Sub("tiny/model.safetensors")});
  const std::string train = UploadFile(v1::FILE_KIND_DATASET, {root_.Sub("train.csv")});
  const std::string valid = UploadFile(v1::FILE_KIND_DATASET, {root_.Sub("valid.jsonl")});
  JobSpecValidator validator = ValidatorWithFiles();

  v1::JobSpec spec;
  spec.set_base_model_file_id(model);
  spec.mutable_train_dataset()->set_file_id(train);
  spec.mutable_validation_dataset()->set_file_id(valid);
  ASSERT_OK(validator.ValidateAndNormalize(&spec));
  EXPECT_THAT(spec.base_model(), StartsWith(store_.Sub("files/objects/")));
  EXPECT_THAT(spec.train_dataset().path(), StartsWith(store_.Sub("files/objects/")));
  EXPECT_EQ(spec.train_dataset().format(), v1::DATASET_FORMAT_CSV);
  EXPECT_EQ(spec.validation_dataset().format(), v1::DATASET_FORMAT_JSONL);
  // Normalizing again (as at recovery) changes nothing.
  v1::JobSpec again = spec;
  ASSERT_OK(validator.ValidateAndNormalize(&again));
  EXPECT_EQ(again.SerializeAsString(), spec.SerializeAsString());

  auto expect_invalid = [&](const std::function<void(v1::JobSpec*)>& change,
                            const std::string& field, const std::string& reason) {
    v1::JobSpec bad;
    bad.set_base_model_file_id(model);
    bad.mutable_train_dataset()->set_file_id(train);
    change(&bad);
    absl::Status status = validator.ValidateAndNormalize(&bad);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(StartsWith(field + ":"), HasSubstr(reason))))
        << field;
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr(store_.path()))) << field;
  };
  expect_invalid([](v1::JobSpec* s) { s->set_base_model_file_id("file-99"); }, "base_model_file_id",
                 "file-99");
  expect_invalid([&](v1::JobSpec* s) { s->set_base_model_file_id(train); }, "base_model_file_id",
                 train + " is a dataset");
  expect_invalid([&](v1::JobSpec* s) { s->mutable_train_dataset()->set_file_id(model); },
                 "train_dataset.file_id", model + " is a model");
  expect_invalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_path(root_.Sub("train.csv")); },
      "train_dataset", "not both");
  expect_invalid(
      [&](v1::JobSpec* s) { s->mutable_train_dataset()->set_format(v1::DATASET_FORMAT_JSONL); },
      "train_dataset.format", train + " was uploaded as CSV");
  expect_invalid([&](v1::JobSpec* s) { s->mutable_train_dataset()->set_text_column("sentence"); },
                 "train_dataset", train + " (train.csv):1: no column \"sentence\" in the header");
  expect_invalid(
      [&](v1::JobSpec* s) {
        s->mutable_train_dataset()->set_file_id(valid);  // one label only
      },
      "train_dataset", valid + " (valid.jsonl): every row has the same label");
  expect_invalid(
      [&](v1::JobSpec* s) {
        s->mutable_validation_dataset()->set_file_id(train);
        s->mutable_train_dataset()->set_file_id(valid);
      },
      "train_dataset", valid + " (valid.jsonl)");
  // Without a FileManager, ids are refused by name.
  v1::JobSpec no_files;
  no_files.set_base_model_file_id(model);
  no_files.mutable_train_dataset()->set_file_id(train);
  EXPECT_THAT(Validator().ValidateAndNormalize(&no_files),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base_model_file_id")));
}

// With tenants' own data roots a user's paths must lie in its tenant's
// folders, with "..", symbolic links and the daemon's data folder no way
// out; a job's outputs serve as a base model to its own tenant only.
TEST_F(JobSpecValidatorTest, EachTenantNamesPathsInItsOwnRootsOnly) {
  ftd::testing::TempDir base;
  for (const char* tenant : {"alice", "bob"}) {
    ftd::testing::WriteModelFolder(base.Sub(std::string(tenant) + "/model"), 6, 128);
    WriteFile(base.Sub(std::string(tenant) + "/train.csv"), "text,label\nx,a\ny,b\n");
  }
  ftd::testing::WriteModelFolder(base.Sub("data/jobs/job-1/model"), 6, 128);  // alice's output
  ftd::testing::WriteModelFolder(base.Sub("data/files/objects/file-1"), 6, 128);
  std::filesystem::create_symlink(base.Sub("bob/train.csv"), base.Sub("alice/bobs.csv"));
  JobSpecValidator::Options options{{base.path()}, nullptr, nullptr, nullptr};
  options.tenant_data_roots = {{"alice", {base.Sub("alice")}}, {"bob", {base.Sub("bob")}}};
  options.data_dir = base.Sub("data");
  options.jobs_dir = base.Sub("data/jobs");
  options.job_tenant = [](const std::string& job_id) -> absl::StatusOr<std::string> {
    if (job_id == "job-1") return std::string("alice");
    return absl::NotFoundError(job_id);
  };
  JobSpecValidator validator(options);
  const Caller alice{"alice", false}, bob{"bob", false}, carol{"carol", false}, admin{"ops", true};
  auto check = [&](const Caller& caller, const std::string& model, const std::string& train) {
    v1::JobSpec spec;
    spec.set_base_model(model);
    spec.mutable_train_dataset()->set_path(train);
    return validator.ValidateAndNormalize(&spec, caller);
  };
  EXPECT_OK(check(alice, base.Sub("alice/model"), base.Sub("alice/train.csv")));
  EXPECT_OK(check(bob, base.Sub("bob/model"), base.Sub("bob/train.csv")));
  EXPECT_THAT(check(bob, base.Sub("bob/model"), base.Sub("alice/train.csv")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("train_dataset.path:"),
                             HasSubstr("is outside tenant \"bob\"'s data roots (" +
                                       base.Sub("bob") + ")"))));
  for (const std::string& sneaky :
       {base.Sub("alice/bobs.csv"), base.Sub("alice/../bob/train.csv")}) {
    EXPECT_THAT(check(alice, base.Sub("alice/model"), sneaky),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside tenant")))
        << sneaky;
  }
  EXPECT_THAT(check(carol, base.Sub("alice/model"), base.Sub("alice/train.csv")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tenant \"carol\" has no data roots on this daemon")));
  // A job's output: its tenant's; the rest of the data folder: no one's.
  EXPECT_OK(check(alice, base.Sub("data/jobs/job-1/model"), base.Sub("alice/train.csv")));
  EXPECT_THAT(check(bob, base.Sub("data/jobs/job-1/model"), base.Sub("bob/train.csv")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside tenant \"bob\"")));
  EXPECT_THAT(check(admin, base.Sub("data/files/objects/file-1"), base.Sub("bob/train.csv")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside the daemon's")));
  // Admins keep the daemon's roots, and see every job's output.
  EXPECT_OK(check(admin, base.Sub("bob/model"), base.Sub("alice/train.csv")));
  EXPECT_OK(check(admin, base.Sub("data/jobs/job-1/model"), base.Sub("bob/train.csv")));
}

// --- The model as the job will load it, checked at submit --------------------

// A safetensors file of F32 zeros (or `dtype`), tensors by name and shape.
void WriteWeights(const std::string& path,
                  const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors,
                  training::DType dtype = training::DType::kF32) {
  std::vector<std::string> bytes;
  bytes.reserve(tensors.size());
  std::vector<training::TensorToWrite> out;
  for (const auto& [name, shape] : tensors) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    bytes.emplace_back(static_cast<size_t>(numel) * training::DTypeSize(dtype), '\0');
    out.push_back({name, dtype, shape, bytes.back()});
  }
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  ASSERT_OK(training::WriteSafetensors(path, out, {}));
}

class ModelCheckAtSubmitTest : public JobSpecValidatorTest {
 protected:
  // A copy of the fixture's model whose weights are a shard that
  // model.safetensors.index.json names `shard`.
  std::string ShardedModel(const std::string& name, const std::string& shard) {
    const std::string dir = root_.Sub(name);
    ftd::testing::WriteModelFolder(dir, /*layers=*/6, /*max_positions=*/128);
    std::filesystem::remove(dir + "/model.safetensors");
    WriteFile(dir + "/model.safetensors.index.json",
              R"({"metadata": {}, "weight_map": {"bert.pooler.dense.bias": ")" + shard + R"("}})");
    return dir;
  }

  absl::Status Validate(const std::string& model) {
    v1::JobSpec spec = spec_;
    spec.set_base_model(model);
    return Validator().ValidateAndNormalize(&spec);
  }
};

TEST_F(ModelCheckAtSubmitTest, AShardThatIsASymbolicLinkIsRefusedAtSubmit) {
  const std::string dir = ShardedModel("linked", "model-00001-of-00001.safetensors");
  const std::string shard = dir + "/model-00001-of-00001.safetensors";
  WriteWeights(root_.Sub("real.safetensors"), {{"bert.pooler.dense.bias", {32}}});
  std::filesystem::create_symlink(root_.Sub("real.safetensors"), shard);
  EXPECT_THAT(Validate(dir), StatusIs(absl::StatusCode::kInvalidArgument,
                                      AllOf(StartsWith("base_model:"),
                                            HasSubstr("\"" + shard +
                                                      "\" is a symbolic link; ftd reads a model "
                                                      "folder's files only as regular files"))));
  // The same shard as a regular file is taken.
  std::filesystem::remove(shard);
  std::filesystem::copy_file(root_.Sub("real.safetensors"), shard);
  EXPECT_OK(Validate(dir));
}

TEST_F(ModelCheckAtSubmitTest, AZeroByteShardIsRefusedAtSubmit) {
  const std::string dir = ShardedModel("empty-shard", "model-00001-of-00001.safetensors");
  WriteFile(dir + "/model-00001-of-00001.safetensors", "");
  EXPECT_THAT(Validate(dir),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("base_model:"),
                             HasSubstr(dir + "/model-00001-of-00001.safetensors: not a valid "
                                             "safetensors file: it has 0 bytes"))));
  // An unsharded model.safetensors of 0 bytes likewise.
  ftd::testing::WriteModelFolder(root_.Sub("empty"), 6, 128);
  WriteFile(root_.Sub("empty/model.safetensors"), "");
  EXPECT_THAT(Validate(root_.Sub("empty")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(root_.Sub("empty/model.safetensors") +
                                 ": not a valid safetensors file: it has 0 bytes")));
}

TEST_F(ModelCheckAtSubmitTest, AnImpossibleHeaderLengthIsRefusedAtSubmit) {
  ftd::testing::WriteModelFolder(root_.Sub("huge"), 6, 128);
  // A header length of 2^64 - 1, then a little data.
  WriteFile(root_.Sub("huge/model.safetensors"), std::string(8, '\xff') + "{}      ");
  EXPECT_THAT(Validate(root_.Sub("huge")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("base_model:"),
                             HasSubstr(root_.Sub("huge/model.safetensors") +
                                       ": not a valid safetensors file: its header length is "
                                       "implausible"))));
}

TEST_F(ModelCheckAtSubmitTest, AShardIndexNamingAFileOutsideTheFolderIsRefusedAtSubmit) {
  // Each would reach a valid weights file, were it followed.
  WriteWeights(root_.Sub("x.safetensors"), {{"bert.pooler.dense.bias", {32}}});
  WriteWeights(root_.Sub("outside/x"), {{"bert.pooler.dense.bias", {32}}});
  int i = 0;
  for (const std::string& shard : {std::string("../x.safetensors"), root_.Sub("outside/x"),
                                   std::string("sub/../../x"), std::string("/etc/x")}) {
    const std::string dir = ShardedModel(absl::StrCat("escape", i++), shard);
    std::filesystem::create_directories(dir + "/sub");
    const absl::Status status = Validate(dir);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(StartsWith("base_model:"),
                                       HasSubstr(dir + "/model.safetensors.index.json: "
                                                       "\"weight_map\" maps a tensor to something "
                                                       "not a file name in the model's folder"))))
        << shard;
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr(shard))) << shard;
  }
}

TEST_F(ModelCheckAtSubmitTest, AHiddenSizeTheHeadsDoNotDivideIsRefusedAtSubmit) {
  WriteFile(root_.Sub("heads/config.json"),
            R"({"model_type": "bert", "num_hidden_layers": 2, "max_position_embeddings": 64,)"
            R"( "hidden_size": 250, "num_attention_heads": 4, "intermediate_size": 64,)"
            R"( "vocab_size": 5})");
  WriteFile(root_.Sub("heads/vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
  WriteWeights(root_.Sub("heads/model.safetensors"), {});
  const absl::Status status = Validate(root_.Sub("heads"));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(StartsWith("base_model:"),
                                     HasSubstr(root_.Sub("heads/config.json") +
                                               ": \"hidden_size\" is not a multiple of "
                                               "\"num_attention_heads\""))));
  // Not the file's values.
  EXPECT_THAT(std::string(status.message()), AllOf(Not(HasSubstr("250")), Not(HasSubstr("(4)"))));
}

TEST_F(ModelCheckAtSubmitTest, AnEmptyVocabularyIsRefusedAtSubmit) {
  WriteFile(root_.Sub("model/vocab.txt"), "");
  EXPECT_THAT(
      Validate(root_.Sub("model")),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(StartsWith("base_model:"),
                     HasSubstr(root_.Sub("model/vocab.txt") + ": vocab.txt has no [PAD] token"))));
}

// The tokenizer needs [PAD], [UNK], [CLS] and [SEP] (not [MASK]), and the
// model an embedding for every token.
TEST_F(ModelCheckAtSubmitTest, AVocabularyLackingATokenTheTokenizerNeedsIsRefusedAtSubmit) {
  for (const char* missing : {"[PAD]", "[UNK]", "[CLS]", "[SEP]"}) {
    std::string vocab;
    for (const char* token : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
      if (std::string(token) != missing) vocab += std::string(token) + "\n";
    }
    WriteFile(root_.Sub("model/vocab.txt"), vocab);
    EXPECT_THAT(Validate(root_.Sub("model")),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(absl::StrCat("vocab.txt has no ", missing, " token"))))
        << missing;
  }
  WriteFile(root_.Sub("model/vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n");
  EXPECT_OK(Validate(root_.Sub("model")));
  WriteFile(root_.Sub("model/vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nsixth\n");
  EXPECT_THAT(Validate(root_.Sub("model")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("vocab.txt\" has more tokens than config.json's vocab_size")));
}

// The names the loader takes (with or without "bert.", LayerNorm gamma and
// beta), of its dtypes and of the shapes config.json gives; other tensors
// are left unused and missing ones initialised, as when the job loads them.
TEST_F(ModelCheckAtSubmitTest, WeightsAreCheckedByTheNamesDTypesAndShapesTheLoaderTakes) {
  const std::string weights = root_.Sub("model/model.safetensors");
  WriteWeights(weights, {{"embeddings.LayerNorm.gamma", {32}},
                         {"bert.encoder.layer.5.output.dense.weight", {32, 64}},
                         {"encoder.layer.0.attention.self.query.bias", {32}},
                         {"classifier.weight", {2, 32}},
                         {"cls.predictions.bias", {3}},
                         {"bert.encoder.layer.6.output.dense.weight", {1}}});
  EXPECT_OK(Validate(root_.Sub("model")));

  WriteWeights(weights, {{"encoder.layer.3.attention.self.query.weight", {32, 31}}});
  EXPECT_THAT(
      Validate(root_.Sub("model")),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(StartsWith("base_model:"),
                     HasSubstr(weights + ": the tensor for "
                                         "bert.encoder.layer.3.attention.self.query.weight has "
                                         "another shape than the [32, 32] that config.json gives "
                                         "it"))));
  WriteWeights(weights, {{"embeddings.LayerNorm.beta", {31}}});
  EXPECT_THAT(Validate(root_.Sub("model")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the tensor for bert.embeddings.LayerNorm.bias has another shape "
                                 "than the [32]")));
  WriteWeights(weights, {{"classifier.bias", {2, 1}}});
  EXPECT_THAT(Validate(root_.Sub("model")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("classifier.bias has another shape than the [labels]")));
  WriteWeights(weights, {{"bert.pooler.dense.bias", {32}}}, training::DType::kI32);
  EXPECT_THAT(Validate(root_.Sub("model")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the tensor for bert.pooler.dense.bias is I32, not F32, F16 or "
                                 "BF16")));
}

// A fine-tuned checkpoint's classifier is loaded as it is: one for another
// number of labels than the training file's fails the job when it loads,
// so it is refused at submit.
TEST_F(ModelCheckAtSubmitTest, AClassifierForAnotherNumberOfLabelsIsRefusedAtSubmit) {
  const std::string weights = root_.Sub("model/model.safetensors");
  WriteWeights(weights, {{"classifier.weight", {7, 32}}, {"classifier.bias", {7}}});
  EXPECT_THAT(Validate(root_.Sub("model")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("base_model:"),
                             HasSubstr("its classifier is for 7 labels, and "),
                             HasSubstr("train.csv has 2 labels"))));
  WriteWeights(weights, {{"classifier.weight", {2, 32}}, {"classifier.bias", {2}}});
  EXPECT_OK(Validate(root_.Sub("model")));
}

// A header's text reaches a message only as a short, escaped quote.
TEST_F(ModelCheckAtSubmitTest, AWeightsHeaderIsNotQuotedAtLength) {
  const std::string secret = "secret-" + std::string(500, 'x');
  WriteFile(root_.Sub("model/model.safetensors"), [&] {
    const std::string header = "{\"" + secret + "\": {\"shape\": [1]}}";
    std::string length(8, '\0');
    for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return length + header;
  }());
  const absl::Status status = Validate(root_.Sub("model"));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has no dtype")));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr(std::string(100, 'x'))));
}

// A real Hugging Face checkpoint (sharded, BertForMaskedLM: no pooler, an
// MLM head) passes.
TEST_F(ModelCheckAtSubmitTest, ARealShardedCheckpointPasses) {
  std::filesystem::copy(FTD_SOURCE_DIR "/examples/models/bert-mini-6l-256h", root_.Sub("mini"),
                        std::filesystem::copy_options::recursive);
  EXPECT_OK(Validate(root_.Sub("mini")));
  ASSERT_OK_AND_ASSIGN(ModelConfig model, CheckModelFolder(root_.Sub("mini"), "base_model", "m"));
  EXPECT_GT(model.parameters, 1000000);
}

}  // namespace
}  // namespace ftd::core
