#include "server/training/engine/checkpointer.h"

#include <sys/resource.h>
#include <torch/torch.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "common/fs_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::training {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;

internal::TrainingCheckpoint State(int64_t step, const std::string& run = "run-1") {
  internal::TrainingCheckpoint state;
  state.set_format(1);
  state.set_run_digest(run);
  state.set_step(step);
  state.set_epoch(static_cast<int>(step / 10) + 1);
  state.set_reason("steps");
  state.add_evaluations()->set_accuracy(0.5 + step / 1000.0);
  return state;
}

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

NamedTensors Tensors(float value) {
  return {{"model/w", torch::full({3, 4}, value)}, {"adamw.m/w", torch::full({3, 4}, -value)}};
}

void FlipAByte(const std::string& path, std::streamoff at) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(at);
  char c = 0;
  file.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  file.seekp(at);
  file.write(&c, 1);
}

TEST(CheckpointerTest, SavesLoadsTheNewestAndKeepsTwo) {
  ftd::testing::TempDir dir;
  Checkpointer checkpointer(dir.Sub("ckpt"));
  EXPECT_FALSE(checkpointer.LoadLatest("run-1").checkpoint.has_value());
  for (int64_t step : {10, 20, 30}) {
    ASSERT_OK_AND_ASSIGN(v1::Checkpoint info,
                         checkpointer.Save(State(step), Tensors(static_cast<float>(step))));
    EXPECT_EQ(info.step(), step);
    EXPECT_GT(info.bytes(), 0);
    EXPECT_EQ(info.reason(), "steps");
  }
  std::vector<v1::Checkpoint> listed = checkpointer.List();
  ASSERT_THAT(listed, SizeIs(2));
  EXPECT_EQ(listed[0].step(), 20);
  EXPECT_EQ(listed[1].step(), 30);

  Checkpointer::LoadResult loaded = checkpointer.LoadLatest("run-1");
  ASSERT_TRUE(loaded.checkpoint.has_value());
  EXPECT_TRUE(loaded.skipped.empty());
  EXPECT_EQ(loaded.checkpoint->state.step(), 30);
  EXPECT_EQ(loaded.checkpoint->state.evaluations(0).accuracy(), 0.53);
  EXPECT_TRUE(torch::equal(loaded.checkpoint->tensors.at("model/w"), torch::full({3, 4}, 30.0f)));
  EXPECT_TRUE(
      torch::equal(loaded.checkpoint->tensors.at("adamw.m/w"), torch::full({3, 4}, -30.0f)));
}

TEST(CheckpointerTest, ADamagedNewestCheckpointIsSkippedForTheOneBefore) {
  ftd::testing::TempDir dir;
  Checkpointer checkpointer(dir.Sub("ckpt"));
  ASSERT_OK(checkpointer.Save(State(10), Tensors(1)).status());
  ASSERT_OK(checkpointer.Save(State(20), Tensors(2)).status());
  const std::string newest = dir.Sub("ckpt/step-000000000020");
  // A flipped byte in the tensors' data: the safetensors header still
  // parses, the checksum catches it.
  FlipAByte(newest + "/tensors.safetensors",
            static_cast<std::streamoff>(fs::file_size(newest + "/tensors.safetensors") - 3));
  Checkpointer::LoadResult loaded = checkpointer.LoadLatest("run-1");
  ASSERT_TRUE(loaded.checkpoint.has_value());
  EXPECT_EQ(loaded.checkpoint->state.step(), 10);
  ASSERT_THAT(loaded.skipped, SizeIs(1));
  EXPECT_THAT(loaded.skipped[0], HasSubstr("step-000000000020"));
  EXPECT_THAT(loaded.skipped[0], HasSubstr("fails its checksum"));

  // A damaged state file too: nothing usable is left.
  FlipAByte(dir.Sub("ckpt/step-000000000010/state.pb"), 90);
  loaded = checkpointer.LoadLatest("run-1");
  EXPECT_FALSE(loaded.checkpoint.has_value());
  EXPECT_THAT(loaded.skipped, SizeIs(2));
}

TEST(CheckpointerTest, ATruncatedOrForeignCheckpointIsSkipped) {
  ftd::testing::TempDir dir;
  Checkpointer checkpointer(dir.Sub("ckpt"));
  ASSERT_OK(checkpointer.Save(State(10), Tensors(1)).status());
  ASSERT_OK(checkpointer.Save(State(20), Tensors(2)).status());
  fs::resize_file(dir.Sub("ckpt/step-000000000020/tensors.safetensors"), 40);
  Checkpointer::LoadResult loaded = checkpointer.LoadLatest("run-1");
  ASSERT_TRUE(loaded.checkpoint.has_value());
  EXPECT_EQ(loaded.checkpoint->state.step(), 10);
  // Another run's checkpoints are never resumed from.
  loaded = checkpointer.LoadLatest("run-2");
  EXPECT_FALSE(loaded.checkpoint.has_value());
  ASSERT_THAT(loaded.skipped, SizeIs(2));
  EXPECT_THAT(loaded.skipped[1], HasSubstr("another run"));
}

TEST(CheckpointerTest, AnInterruptedSaveLeavesTheEarlierOnesAndIsCleanedUp) {
  ftd::testing::TempDir dir;
  Checkpointer checkpointer(dir.Sub("ckpt"));
  ASSERT_OK(checkpointer.Save(State(10), Tensors(1)).status());
  // What a crash in the middle of a save leaves: a staged folder.
  fs::create_directories(dir.Sub("ckpt/.staging-step-000000000020"));
  std::ofstream(dir.Sub("ckpt/.staging-step-000000000020/tensors.safetensors")) << "part";
  EXPECT_EQ(checkpointer.LoadLatest("run-1").checkpoint->state.step(), 10);
  EXPECT_THAT(checkpointer.List(), SizeIs(1));
  ASSERT_OK(checkpointer.Save(State(30), Tensors(3)).status());
  EXPECT_FALSE(fs::exists(dir.Sub("ckpt/.staging-step-000000000020")));
  ASSERT_OK(checkpointer.RemoveAll());
  EXPECT_FALSE(fs::exists(dir.Sub("ckpt")));
}

// A save of a step that already has a checkpoint moves the old folder aside
// (step-N.old), then renames its staged one into place: one that stops
// between the two renames leaves step-N.old, still that step's checkpoint,
// which the next save puts back. Other names are not checkpoints.
TEST(CheckpointerTest, AFolderASaveMovedAsideIsStillItsStepsCheckpointAndIsPutBack) {
  ftd::testing::TempDir dir;
  Checkpointer checkpointer(dir.Sub("ckpt"));
  ASSERT_OK(checkpointer.Save(State(10), Tensors(1)).status());
  ASSERT_OK(checkpointer.Save(State(20), Tensors(2)).status());
  fs::rename(dir.Sub("ckpt/step-000000000020"), dir.Sub("ckpt/step-000000000020.old"));
  fs::create_directories(dir.Sub("ckpt/.staging-step-000000000020"));
  fs::create_directories(dir.Sub("ckpt/step-000000000099.bak"));
  EXPECT_EQ(checkpointer.LoadLatest("run-1").checkpoint->state.step(), 20);
  EXPECT_THAT(checkpointer.List(), SizeIs(2));
  ASSERT_OK(checkpointer.Save(State(30), Tensors(3)).status());
  EXPECT_TRUE(fs::exists(dir.Sub("ckpt/step-000000000020")));
  EXPECT_FALSE(fs::exists(dir.Sub("ckpt/step-000000000020.old")));
  ASSERT_THAT(checkpointer.List(), SizeIs(2));
  EXPECT_EQ(checkpointer.List()[0].step(), 20);
  EXPECT_EQ(checkpointer.List()[1].step(), 30);
  EXPECT_EQ(checkpointer.LoadLatest("run-1").checkpoint->state.step(), 30);
}

// A write that runs out of room (here the file size limit, EFBIG, as a full
// disk's ENOSPC would) fails the save with RESOURCE_EXHAUSTED naming the
// file, and the checkpoint before it stays whole and is the one loaded.
TEST(CheckpointerTest, ASaveThatRunsOutOfRoomKeepsTheCheckpointBefore) {
  ftd::testing::TempDir dir;
  Checkpointer checkpointer(dir.Sub("ckpt"));
  ASSERT_OK(checkpointer.Save(State(10), Tensors(1)).status());
  NamedTensors big = {{"model/w", torch::full({256, 1024}, 2.0f)}};  // 1 MiB
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &before), 0);
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);
  rlimit small = before;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  absl::StatusOr<v1::Checkpoint> refused = checkpointer.Save(State(20), big);
  setrlimit(RLIMIT_FSIZE, &before);
  signal(SIGXFSZ, old_handler);
  EXPECT_THAT(refused.status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("tensors.safetensors")));
  Checkpointer::LoadResult loaded = checkpointer.LoadLatest("run-1");
  ASSERT_TRUE(loaded.checkpoint.has_value());
  EXPECT_EQ(loaded.checkpoint->state.step(), 10);
  EXPECT_TRUE(loaded.skipped.empty());
  EXPECT_THAT(checkpointer.List(), SizeIs(1));
  // With room again, the next save lands and clears what the refused one left.
  ASSERT_OK(checkpointer.Save(State(30), big).status());
  EXPECT_EQ(checkpointer.LoadLatest("run-1").checkpoint->state.step(), 30);
  EXPECT_FALSE(fs::exists(dir.Sub("ckpt/.staging-step-000000000020")));
}

}  // namespace
}  // namespace ftd::training
