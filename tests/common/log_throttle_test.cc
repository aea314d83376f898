#include "common/log_throttle.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// A throttle of 10 s on a clock the test moves, writing to `lines`.
class LogThrottleTest : public ::testing::Test {
 protected:
  LogThrottle::Options Options() {
    LogThrottle::Options options;
    options.interval = absl::Seconds(10);
    options.sink = [this](LogLevel, const std::string& line) { lines.push_back(line); };
    options.now = [this] { return now; };
    return options;
  }

  std::vector<std::string> lines;
  absl::Time now = absl::FromUnixSeconds(1000);
  LogThrottle throttle{Options()};
};

TEST_F(LogThrottleTest, RepeatsOfAKindAreSummarisedOnceAnInterval) {

  for (int i = 0; i < 2000; ++i) throttle.Note(LogLevel::kWarning, "GetJob: refused (INVALID_TOKEN)");
  throttle.Note(LogLevel::kWarning, "ListJobs: refused (INVALID_TOKEN)");
  EXPECT_THAT(lines, ElementsAre("GetJob: refused (INVALID_TOKEN)",
                                 "ListJobs: refused (INVALID_TOKEN)"));
  now += absl::Seconds(11);
  throttle.Note(LogLevel::kWarning, "GetJob: refused (INVALID_TOKEN)");
  ASSERT_THAT(lines, SizeIs(3));
  EXPECT_THAT(lines[2], HasSubstr("(and 1999 more like it since"));
}

TEST_F(LogThrottleTest, AFlushSummarisesWhatWasHeldBackWithoutWaitingForMore) {
  for (int i = 0; i < 50; ++i) throttle.Note(LogLevel::kWarning, "GetJob: refused (INVALID_TOKEN)");
  throttle.Flush();  // within the interval: nothing yet
  ASSERT_THAT(lines, SizeIs(1));
  now += absl::Seconds(10);
  throttle.Flush();
  ASSERT_THAT(lines, SizeIs(2));
  EXPECT_EQ(lines[1], "GetJob: refused (INVALID_TOKEN) (and 49 more like it since 00:16:40Z)");
  throttle.Flush();  // nothing more came
  EXPECT_THAT(lines, SizeIs(2));
}

}  // namespace
}  // namespace ftd
