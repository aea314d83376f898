#include "server/pool/launch_env.h"

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftd::pool {
namespace {

using ::ftd::testing::StatusIs;
using ::testing::HasSubstr;

std::function<const char*(const char*)> Env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(LaunchEnvTest, RankZeroCoordinatesAndTheOthersJoinIt) {
  ASSERT_OK_AND_ASSIGN(auto none, ReadLaunchEnv(Env({})));
  EXPECT_FALSE(none.has_value());

  ASSERT_OK_AND_ASSIGN(auto zero, ReadLaunchEnv(Env({{"MASTER_ADDR", "ftd-0.ftd-pool"},
                                                     {"MASTER_PORT", "29400"},
                                                     {"WORLD_SIZE", "3"},
                                                     {"RANK", "0"}})));
  ASSERT_TRUE(zero.has_value());
  LaunchRole coordinator = RoleOf(*zero, 50051);
  EXPECT_TRUE(coordinator.coordinator);
  EXPECT_EQ(coordinator.rendezvous_address, "0.0.0.0:29400");
  EXPECT_TRUE(coordinator.join.empty());

  ASSERT_OK_AND_ASSIGN(auto two, ReadLaunchEnv(Env({{"MASTER_ADDR", "ftd-0.ftd-pool"},
                                                    {"MASTER_PORT", "29400"},
                                                    {"WORLD_SIZE", "3"},
                                                    {"RANK", "2"},
                                                    {"LOCAL_RANK", "1"}})));
  LaunchRole worker = RoleOf(*two, 50051);
  EXPECT_FALSE(worker.coordinator);
  EXPECT_EQ(worker.join, "ftd-0.ftd-pool:50051");
  EXPECT_EQ(worker.worker_name, "rank-2");
  EXPECT_EQ(worker.cuda_device, 1);

  ASSERT_OK_AND_ASSIGN(auto v6, ReadLaunchEnv(Env({{"MASTER_ADDR", "fd00::7"},
                                                   {"MASTER_PORT", "29400"},
                                                   {"WORLD_SIZE", "2"},
                                                   {"RANK", "1"}})));
  EXPECT_EQ(RoleOf(*v6, 443).join, "[fd00::7]:443");
  EXPECT_EQ(RoleOf(*v6, 443).cuda_device, -1);
}

TEST(LaunchEnvTest, ABrokenContractNamesTheVariable) {
  EXPECT_THAT(ReadLaunchEnv(Env({{"RANK", "1"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MASTER_ADDR")));
  EXPECT_THAT(ReadLaunchEnv(Env({{"MASTER_ADDR", "h"}, {"RANK", "1"}, {"WORLD_SIZE", "2"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MASTER_PORT")));
  EXPECT_THAT(ReadLaunchEnv(Env({{"MASTER_ADDR", "h"},
                                 {"MASTER_PORT", "99999"},
                                 {"RANK", "1"},
                                 {"WORLD_SIZE", "2"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MASTER_PORT")));
  EXPECT_THAT(ReadLaunchEnv(Env({{"MASTER_ADDR", "h"},
                                 {"MASTER_PORT", "1"},
                                 {"RANK", "2"},
                                 {"WORLD_SIZE", "2"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("WORLD_SIZE")));
  EXPECT_THAT(ReadLaunchEnv(Env({{"MASTER_ADDR", "h"},
                                 {"MASTER_PORT", "1"},
                                 {"RANK", "x"},
                                 {"WORLD_SIZE", "2"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RANK")));
}

}  // namespace
}  // namespace ftd::pool
