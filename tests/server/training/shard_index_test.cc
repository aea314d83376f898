#include "server/training/model/shard_index.h"

#include <string>

#include "common/fs_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftd::training {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kShown[] = "m/model.safetensors.index.json";

TEST(ShardIndexTest, NamesEachShardOnce) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<std::string> shards,
      ParseShardIndex(
          R"({"weight_map":{"a":"2.safetensors","b":"1.safetensors","c":"1.safetensors"}})",
          kShown));
  EXPECT_THAT(shards, ElementsAre("1.safetensors", "2.safetensors"));
}

// An index nested 100,000 deep (200 KB) cost protobuf's parser minutes: it
// is refused by its depth first; one larger than a JSON file ftd reads, by
// its size.
TEST(ShardIndexTest, AnIndexNestedTooDeepOrTooLargeIsRefusedNamingTheFileAndTheLimit) {
  const std::string deep =
      "{\"weight_map\":{},\n\"x\":" + std::string(100'000, '[') + std::string(100'000, ']') + "}";
  EXPECT_THAT(ParseShardIndex(deep, kShown),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m/model.safetensors.index.json: line 2: JSON nested deeper "
                                 "than 64 levels")));
  const std::string large = "{\"weight_map\":{\"a\":\"" +
                            std::string(static_cast<size_t>(kMaxJsonFileBytes), 'a') + "\"}}";
  EXPECT_THAT(ParseShardIndex(large, kShown),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m/model.safetensors.index.json is larger than 16 MiB")));
}

}  // namespace
}  // namespace ftd::training
