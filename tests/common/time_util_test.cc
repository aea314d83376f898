#include "common/time_util.h"

#include "gtest/gtest.h"

namespace ftd {
namespace {

TEST(TimeUtilTest, RoundTripsToTheNanosecondAndKeepsNanosInRange) {
  for (absl::Time t : {absl::FromUnixNanos(1764633600123456789), absl::UnixEpoch(),
                       absl::FromUnixNanos(-1500000000)}) {
    const google::protobuf::Timestamp ts = ToTimestamp(t);
    EXPECT_GE(ts.nanos(), 0);
    EXPECT_LT(ts.nanos(), 1000000000);
    EXPECT_EQ(FromTimestamp(ts), t);
  }
  const google::protobuf::Timestamp before = ToTimestamp(absl::FromUnixNanos(-1500000000));
  EXPECT_EQ(before.seconds(), -2);
  EXPECT_EQ(before.nanos(), 500000000);
}

}  // namespace
}  // namespace ftd
