#include "server/pool/input_cache.h"

#include <sys/stat.h>

#include <filesystem>
#include <map>

#include "common/fs_util.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftd::pool {
namespace {

namespace fs = std::filesystem;
using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

// The coordinator's files, by digest; counts fetches.
class FakeCoordinator {
 public:
  v1::InputFile Offer(v1::InputFile::Role role, const std::string& name,
                      const std::string& content) {
    v1::InputFile file;
    file.set_role(role);
    file.set_name(name);
    file.set_sha256(Sha256::Hex(content));
    file.set_size(static_cast<int64_t>(content.size()));
    contents_[file.sha256()] = content;
    return file;
  }
  InputCache::FetchFn fn() {
    return [this](const std::string& sha256, int64_t size, int fd) -> absl::Status {
      ++fetches_;
      auto it = contents_.find(sha256);
      if (it == contents_.end()) return absl::NotFoundError("not offered");
      std::string content = it->second;
      if (tamper_) content[0] ^= 1;
      (void)size;
      return WriteAll(fd, content, "copy");
    };
  }
  int fetches_ = 0;
  bool tamper_ = false;

 private:
  std::map<std::string, std::string> contents_;
};

class InputCacheTest : public ::testing::Test {
 protected:
  ftd::testing::TempDir dir_;
  FakeCoordinator coordinator_;
};

// A replica's inputs are laid out as a job's, fetched once for every
// replica and run that reads them; a replica's folder goes with it.
TEST_F(InputCacheTest, LaysOutAReplicasInputsFetchingEachFileOnce) {
  ASSERT_OK_AND_ASSIGN(auto cache, InputCache::Open({dir_.Sub("pool"), 1 << 20, coordinator_.fn()}));
  const std::vector<v1::InputFile> files = {
      coordinator_.Offer(v1::InputFile::ROLE_MODEL, "config.json", "{\"hidden_size\": 32}"),
      coordinator_.Offer(v1::InputFile::ROLE_MODEL, "vocab.txt", "[PAD]\n[UNK]\n"),
      coordinator_.Offer(v1::InputFile::ROLE_TRAIN, "train.csv", "text,label\na,0\n"),
      coordinator_.Offer(v1::InputFile::ROLE_VALIDATION, "valid.csv", "text,label\nb,1\n"),
      coordinator_.Offer(v1::InputFile::ROLE_CHECKPOINT, "step-000000000012/state.pb", "state"),
  };
  ASSERT_OK_AND_ASSIGN(InputCache::Layout layout, cache->Prepare("job-1/1/1", files));
  EXPECT_EQ(coordinator_.fetches_, 5);
  EXPECT_THAT(ReadFile(layout.model_dir + "/config.json"),
              ::ftd::testing::IsOkAndHolds(std::string("{\"hidden_size\": 32}")));
  EXPECT_THAT(ReadFile(layout.train_path), ::ftd::testing::IsOkAndHolds(std::string("text,label\na,0\n")));
  EXPECT_THAT(layout.validation_path, HasSubstr("valid.csv"));
  EXPECT_THAT(ReadFile(layout.checkpoint_dir + "/step-000000000012/state.pb"),
              ::ftd::testing::IsOkAndHolds(std::string("state")));
  EXPECT_TRUE(fs::is_directory(layout.output_dir));

  // Another replica of the job: nothing fetched again.
  ASSERT_OK_AND_ASSIGN(InputCache::Layout other, cache->Prepare("job-1/2/2", files));
  EXPECT_EQ(coordinator_.fetches_, 5);
  EXPECT_NE(other.model_dir, layout.model_dir);
  cache->Release("job-1/1/1");
  EXPECT_FALSE(fs::exists(layout.model_dir));
  EXPECT_TRUE(fs::exists(other.train_path));
}

// A file whose content is not its digest's is refused, and not kept.
TEST_F(InputCacheTest, RefusesAFileThatIsNotItsDigests) {
  ASSERT_OK_AND_ASSIGN(auto cache, InputCache::Open({dir_.Sub("pool"), 1 << 20, coordinator_.fn()}));
  const v1::InputFile train = coordinator_.Offer(v1::InputFile::ROLE_TRAIN, "train.csv", "abc");
  coordinator_.tamper_ = true;
  EXPECT_THAT(cache->Prepare("r", {train}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("changed while it was fetched")));
  EXPECT_EQ(cache->bytes(), 0);
  coordinator_.tamper_ = false;
  EXPECT_OK(cache->Prepare("r", {train}).status());
  EXPECT_EQ(cache->bytes(), 3);
}

// Names that would leave the replica's folder are refused.
TEST_F(InputCacheTest, RefusesNamesThatAreNotFileNames) {
  ASSERT_OK_AND_ASSIGN(auto cache, InputCache::Open({dir_.Sub("pool"), 1 << 20, coordinator_.fn()}));
  for (const std::string& name : {"../x", "a/b", ".hidden", "", "/etc/passwd"}) {
    v1::InputFile file = coordinator_.Offer(v1::InputFile::ROLE_MODEL, name, "x");
    EXPECT_THAT(cache->Prepare("r", {file}), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_)) << name;
  }
  v1::InputFile deep = coordinator_.Offer(v1::InputFile::ROLE_CHECKPOINT, "a/b/c", "x");
  EXPECT_THAT(cache->Prepare("r", {deep}), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  v1::InputFile up = coordinator_.Offer(v1::InputFile::ROLE_CHECKPOINT, "../state.pb", "x");
  EXPECT_THAT(cache->Prepare("r", {up}), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(coordinator_.fetches_, 0);
}

// Past its cap the cache drops the copies no replica uses, oldest first.
TEST_F(InputCacheTest, EvictsUnusedCopiesPastItsCap) {
  ASSERT_OK_AND_ASSIGN(auto cache, InputCache::Open({dir_.Sub("pool"), 25, coordinator_.fn()}));
  const v1::InputFile a = coordinator_.Offer(v1::InputFile::ROLE_TRAIN, "a.csv", std::string(10, 'a'));
  const v1::InputFile b = coordinator_.Offer(v1::InputFile::ROLE_TRAIN, "b.csv", std::string(10, 'b'));
  const v1::InputFile c = coordinator_.Offer(v1::InputFile::ROLE_TRAIN, "c.csv", std::string(10, 'c'));
  ASSERT_OK(cache->Prepare("ra", {a}).status());
  cache->Release("ra");
  ASSERT_OK(cache->Prepare("rb", {b}).status());  // in use until released
  ASSERT_OK(cache->Prepare("rc", {c}).status());
  // 30 bytes > 25: a (unused, oldest) goes; b and c are in use.
  EXPECT_EQ(cache->bytes(), 20);
  ASSERT_OK(cache->Prepare("ra2", {a}).status());
  EXPECT_EQ(coordinator_.fetches_, 4);
}

}  // namespace
}  // namespace ftd::pool
