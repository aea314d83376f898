#include "common/fs_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
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
using ::testing::AllOf;
using ::testing::HasSubstr;

// A user's file is read whole only up to a size: a sparse file of a
// terabyte costs no disk and must not cost the daemon its memory.
TEST(FsUtilTest, ReadFileNoFollowRefusesAFileLargerThanItsLimit) {
  ftd::testing::TempDir dir;
  const std::string path = dir.Sub("f.json");
  std::ofstream(path) << "0123456789";
  ASSERT_OK_AND_ASSIGN(std::string text, ReadFileNoFollow(path, 10));
  EXPECT_EQ(text, "0123456789");
  EXPECT_THAT(ReadFileNoFollow(path, 9),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(path)));
  fs::resize_file(path, uintmax_t{1} << 40);
  EXPECT_THAT(ReadFileNoFollow(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("1048576 MiB"), HasSubstr("more than the 2000 MiB"))));
}

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

// A full disk is RESOURCE_EXHAUSTED, so that callers can tell it from other
// failures: /dev/full fails every write with ENOSPC.
TEST(FsUtilTest, AFullDiskIsResourceExhausted) {
  const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (fd < 0) GTEST_SKIP() << "no /dev/full";
  EXPECT_THAT(WriteAll(fd, std::string(1 << 16, 'x'), "/data/model.safetensors"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("cannot write /data/model.safetensors"),
                             HasSubstr("No space left"))));
  ::close(fd);
  EXPECT_THAT(IoError(EDQUOT, "cannot write x"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("cannot write x")));
  EXPECT_THAT(IoError(EIO, "cannot write x"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot write x: ")));
}

// A link planted at the temporary name is replaced, not written through.
TEST(FsUtilTest, WriteFileAtomicallyDoesNotFollowALinkAtItsTemporaryName) {
  ftd::testing::TempDir dir;
  std::ofstream(dir.Sub("secret")) << "keep";
  fs::create_symlink(dir.Sub("secret"), dir.Sub("out.json.tmp"));
  ASSERT_OK(WriteFileAtomically(dir.Sub("out.json"), "new"));
  ASSERT_OK_AND_ASSIGN(std::string secret, ReadFile(dir.Sub("secret")));
  EXPECT_EQ(secret, "keep");
  ASSERT_OK_AND_ASSIGN(std::string out, ReadFile(dir.Sub("out.json")));
  EXPECT_EQ(out, "new");
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
