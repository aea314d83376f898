#include "common/log_throttle.h"

#include "absl/strings/str_cat.h"

namespace ftd {

namespace {
// Kinds remembered at most; past it the oldest-logged are forgotten (kinds
// are method x reason, a few dozen, but a caller must not grow the map).
constexpr size_t kMaxKinds = 1024;
}  // namespace

LogThrottle::LogThrottle(Options options) : options_(std::move(options)) {}

void LogThrottle::Note(LogLevel level, const std::string& kind) {
  std::string line;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.now();
    if (kinds_.size() >= kMaxKinds && kinds_.count(kind) == 0) kinds_.clear();
    Kind& k = kinds_[kind];
    if (now - k.last_logged < options_.interval) {
      ++k.held_back;
      return;
    }
    line = kind;
    if (k.held_back > 0) {
      absl::StrAppend(&line, " (and ", k.held_back, " more like it since ",
                      absl::FormatTime("%H:%M:%S", k.last_logged, absl::UTCTimeZone()), ")");
    }
    k.last_logged = now;
    k.held_back = 0;
  }
  if (options_.sink) {
    options_.sink(level, line);
  } else {
    Log(level, line);
  }
}

}  // namespace ftd
