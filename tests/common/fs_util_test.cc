#include "common/fs_util.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

TEST(FsUtilTest, WriteFileAtomicallyReplacesTheFileAndLeavesNothingBehind) {
  ftd::testing::TempDir dir;
  const std::string path = dir.Sub("metrics.json");
  ASSERT_OK(WriteFileAtomically(path, "first"));
  ASSERT_OK(WriteFileAtomically(path, "second, longer"));
  ASSERT_OK_AND_ASSIGN(std::string contents, ReadFile(path));
  EXPECT_EQ(contents, "second, longer");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_THAT(WriteFileAtomically(dir.Sub("missing/x.json"), "x"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("missing/x.json")));
}

TEST(FsUtilTest, ReplaceFolderSwapsInTheStagedFolderWhole) {
  ftd::testing::TempDir dir;
  fs::create_directories(dir.Sub("model"));
  std::ofstream(dir.Sub("model/old.bin")) << "old";
  fs::create_directories(dir.Sub("model.staged/sub"));
  std::ofstream(dir.Sub("model.staged/config.json")) << "{}";
  std::ofstream(dir.Sub("model.staged/sub/part")) << "p";
  ASSERT_OK(ReplaceFolder(dir.Sub("model.staged"), dir.Sub("model")));
  EXPECT_TRUE(fs::exists(dir.Sub("model/config.json")));
  EXPECT_TRUE(fs::exists(dir.Sub("model/sub/part")));
  EXPECT_FALSE(fs::exists(dir.Sub("model/old.bin")));
  EXPECT_FALSE(fs::exists(dir.Sub("model.staged")));
  EXPECT_FALSE(fs::exists(dir.Sub("model.old")));
  // Into a place that does not exist yet.
  fs::create_directories(dir.Sub("b.staged"));
  ASSERT_OK(ReplaceFolder(dir.Sub("b.staged"), dir.Sub("b")));
  EXPECT_TRUE(fs::is_directory(dir.Sub("b")));
}

}  // namespace
}  // namespace ftd
