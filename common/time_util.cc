#include "common/time_util.h"

#include <cstdint>

namespace ftd {

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  const int64_t nanos = absl::ToUnixNanos(t);
  google::protobuf::Timestamp ts;
  // Floor division, so that times before 1970 keep nanos in [0, 1e9).
  int64_t seconds = nanos / 1000000000, rest = nanos % 1000000000;
  if (rest < 0) {
    rest += 1000000000;
    --seconds;
  }
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(rest));
  return ts;
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

}  // namespace ftd
