#include "client/job_file.h"

#include "client/spec_options.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::client {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

TEST(JobFileTest, YamlWithEveryKindOfField) {
  ftd::testing::TempDir dir;
  ftd::testing::WriteFile(dir.Sub("jobs/job.yaml"), R"(
display_name: "true"          # quoted: stays a string
base_model: ../models/bert
train_dataset: {path: data/train.csv, text_column: sentence}
validation_dataset:
  path: /abs/valid.jsonl
  format: jsonl
hyperparameters:
  epochs: 2
  learning_rate: 1.0e-4
  seed: 7
freeze_policy:
  autofreeze: {percentile: 40}
activation_cache: {enabled: true, dtype: fp32}
device: {kind: cuda, cuda_index: 1}
priority: -5
labels: {team: nlp, ticket: "0042"}
)");
  ASSERT_OK_AND_ASSIGN(v1::JobSpec spec, ParseJobFile(dir.Sub("jobs/job.yaml")));
  EXPECT_EQ(spec.display_name(), "true");
  EXPECT_EQ(spec.base_model(), dir.Sub("models/bert"));
  EXPECT_EQ(spec.train_dataset().path(), dir.Sub("jobs/data/train.csv"));
  EXPECT_EQ(spec.train_dataset().text_column(), "sentence");
  EXPECT_EQ(spec.validation_dataset().path(), "/abs/valid.jsonl");
  EXPECT_EQ(spec.validation_dataset().format(), v1::DATASET_FORMAT_JSONL);
  EXPECT_EQ(spec.hyperparameters().epochs(), 2);
  EXPECT_FALSE(spec.hyperparameters().has_batch_size());
  EXPECT_DOUBLE_EQ(spec.hyperparameters().learning_rate(), 1e-4);
  EXPECT_EQ(spec.hyperparameters().seed(), 7u);
  EXPECT_DOUBLE_EQ(spec.freeze_policy().autofreeze().percentile(), 40);
  EXPECT_TRUE(spec.activation_cache().enabled());
  EXPECT_EQ(spec.activation_cache().dtype(), v1::ActivationCache::DTYPE_FP32);
  EXPECT_EQ(spec.device().kind(), v1::DeviceRequest::KIND_CUDA);
  EXPECT_EQ(spec.device().cuda_index(), 1);
  EXPECT_EQ(spec.priority(), -5);
  EXPECT_EQ(spec.labels().at("ticket"), "0042");
}

TEST(JobFileTest, JsonWorksToo) {
  ASSERT_OK_AND_ASSIGN(v1::JobSpec spec,
                       ParseJobSpec(R"({"baseModel": "/m", "hyperparameters": {"batchSize": 8},
                       "freeze_policy": {"static": {"frozen_layers": 4}}})",
                                    "job.json"));
  EXPECT_EQ(spec.base_model(), "/m");
  EXPECT_EQ(spec.hyperparameters().batch_size(), 8);
  EXPECT_EQ(spec.freeze_policy().static_().frozen_layers(), 4);

  // Enum values by their full names too; the device kind "any".
  ASSERT_OK_AND_ASSIGN(spec, ParseJobSpec(R"({"train_dataset": {"format": "DATASET_FORMAT_CSV"},
                       "task": "sequence_classification", "device": {"kind": "any"}})",
                                          "job.json"));
  EXPECT_EQ(spec.train_dataset().format(), v1::DATASET_FORMAT_CSV);
  EXPECT_EQ(spec.task(), v1::TASK_SEQUENCE_CLASSIFICATION);
  EXPECT_TRUE(spec.has_device());
  EXPECT_EQ(spec.device().kind(), v1::DeviceRequest::KIND_UNSPECIFIED);
  EXPECT_THAT(ParseJobSpec("train_dataset: {format: parquet}\n", "job.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parquet")));
}

TEST(JobFileTest, ErrorsNameTheFileAndTheProblem) {
  EXPECT_THAT(ParseJobSpec("epochs: [", "job.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.yaml: not valid YAML")));
  EXPECT_THAT(ParseJobSpec("- a\n- b\n", "job.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mapping")));
  EXPECT_THAT(ParseJobSpec("base_modle: /m\n", "job.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base_modle")));
  EXPECT_THAT(ParseJobSpec("hyperparameters: {epochs: many}\n", "job.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.yaml")));
  EXPECT_THAT(ParseJobFile("/nonexistent/job.yaml"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/job.yaml")));
}

// A job file nested 100,000 deep is refused by its depth, naming the file,
// the line and the limit; YAML nested deeper than the limit too.
TEST(JobFileTest, AFileNestedTooDeepIsRefusedNamingTheLimit) {
  const std::string deep = "{\"base_model\": \"/m\",\n \"labels\": " + std::string(100'000, '[') +
                           std::string(100'000, ']') + "}";
  EXPECT_THAT(ParseJobSpec(deep, "job.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.json: line 2: JSON nested deeper than 64 levels")));
  std::string yaml;
  for (int i = 0; i < 70; ++i) yaml += std::string(i, ' ') + "k:\n";
  EXPECT_THAT(ParseJobSpec(yaml, "job.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("job.yaml: nested deeper than 64 levels")));
}

TEST(SpecOptionsTest, FreezePolicies) {
  ASSERT_OK_AND_ASSIGN(auto none, ParseFreezePolicy("none"));
  EXPECT_TRUE(none.has_none());
  ASSERT_OK_AND_ASSIGN(auto fixed, ParseFreezePolicy("static:4"));
  EXPECT_EQ(fixed.static_().frozen_layers(), 4);
  ASSERT_OK_AND_ASSIGN(auto af, ParseFreezePolicy("autofreeze"));
  EXPECT_FALSE(af.autofreeze().has_percentile());
  ASSERT_OK_AND_ASSIGN(auto af2, ParseFreezePolicy("AutoFreeze:30:10"));
  EXPECT_DOUBLE_EQ(af2.autofreeze().percentile(), 30);
  EXPECT_EQ(af2.autofreeze().evaluations_per_epoch(), 10);
  ASSERT_OK_AND_ASSIGN(auto geometric, ParseFreezePolicy("geometric"));
  EXPECT_FALSE(geometric.geometric().has_alpha());
  ASSERT_OK_AND_ASSIGN(auto geometric2, ParseFreezePolicy("geometric:0.5"));
  EXPECT_DOUBLE_EQ(geometric2.geometric().alpha(), 0.5);
  ASSERT_OK_AND_ASSIGN(auto linear, ParseFreezePolicy("linear:0.25:0.75"));
  EXPECT_DOUBLE_EQ(linear.linear().freeze_start(), 0.25);
  EXPECT_DOUBLE_EQ(linear.linear().freeze_level(), 0.75);
  for (const char* bad : {"static", "static:x", "frozen", "autofreeze:a", "none:1", "geometric:x",
                          "linear:0.1:0.2:0.3"}) {
    EXPECT_THAT(ParseFreezePolicy(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--freeze")))
        << bad;
  }
}

TEST(SpecOptionsTest, DevicesLabelsAndStates) {
  ASSERT_OK_AND_ASSIGN(auto cuda, ParseDeviceRequest("cuda:2"));
  EXPECT_EQ(cuda.kind(), v1::DeviceRequest::KIND_CUDA);
  EXPECT_EQ(cuda.cuda_index(), 2);
  ASSERT_OK_AND_ASSIGN(auto cpu, ParseDeviceRequest("CPU"));
  EXPECT_EQ(cpu.kind(), v1::DeviceRequest::KIND_CPU);
  EXPECT_THAT(ParseDeviceRequest("cuda:-1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index")));
  EXPECT_THAT(ParseDeviceRequest("tpu"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--device")));

  v1::JobSpec spec;
  ASSERT_OK(ParseLabels({"team=nlp", "note=a=b"}, &spec));
  EXPECT_EQ(spec.labels().at("note"), "a=b");
  EXPECT_THAT(ParseLabels({"novalue"}, &spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key=value")));

  ASSERT_OK_AND_ASSIGN(auto precision, ParsePrecision("BF16"));
  EXPECT_EQ(precision, v1::PRECISION_BF16);
  ASSERT_OK_AND_ASSIGN(precision, ParsePrecision("auto"));
  EXPECT_EQ(precision, v1::PRECISION_AUTO);
  ASSERT_OK_AND_ASSIGN(precision, ParsePrecision("fp32"));
  EXPECT_EQ(precision, v1::PRECISION_FP32);
  EXPECT_THAT(ParsePrecision("fp16"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--precision")));

  ASSERT_OK_AND_ASSIGN(auto exported, ParseExportWeights("Best"));
  EXPECT_EQ(exported, v1::EXPORT_WEIGHTS_BEST);
  ASSERT_OK_AND_ASSIGN(exported, ParseExportWeights("final"));
  EXPECT_EQ(exported, v1::EXPORT_WEIGHTS_FINAL);
  EXPECT_THAT(ParseExportWeights("last"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--export=last")));

  ASSERT_OK_AND_ASSIGN(auto state, ParseJobState("running"));
  EXPECT_EQ(state, v1::JOB_STATE_RUNNING);
  ASSERT_OK_AND_ASSIGN(state, ParseJobState("JOB_STATE_QUEUED"));
  EXPECT_EQ(state, v1::JOB_STATE_QUEUED);
  EXPECT_THAT(ParseJobState("done"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("done")));
}

}  // namespace
}  // namespace ftd::client
