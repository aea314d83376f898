#include "common/log_throttle.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace ftd {

namespace {
// Kinds remembered at most; past it they are forgotten (kinds are method x
// reason, a few dozen, but a caller must not grow the map).
constexpr size_t kMaxKinds = 1024;
}  // namespace

LogThrottle::LogThrottle(Options options) : options_(std::move(options)) {
  if (options_.flush_thread) {
    flusher_ = std::thread([this] {
      while (!stop_.WaitForNotificationWithTimeout(options_.interval)) Flush();
    });
  }
}

LogThrottle::~LogThrottle() {
  stop_.Notify();
  if (flusher_.joinable()) flusher_.join();
}

std::string LogThrottle::Summary(const std::string& kind, const Kind& k) {
  return absl::StrCat(kind, " (and ", k.held_back, " more like it since ",
                      absl::FormatTime("%H:%M:%SZ", k.last_logged, absl::UTCTimeZone()), ")");
}

void LogThrottle::Emit(LogLevel level, const std::string& line) {
  if (options_.sink) {
    options_.sink(level, line);
  } else {
    Log(level, line);
  }
}

void LogThrottle::Note(LogLevel level, const std::string& kind) {
  std::string line;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.now();
    if (kinds_.size() >= kMaxKinds && kinds_.count(kind) == 0) kinds_.clear();
    Kind& k = kinds_[kind];
    k.level = level;
    if (now - k.last_logged < options_.interval) {
      ++k.held_back;
      return;
    }
    line = k.held_back > 0 ? Summary(kind, k) : kind;
    k.last_logged = now;
    k.held_back = 0;
  }
  Emit(level, line);
}

void LogThrottle::Flush() {
  std::vector<std::pair<LogLevel, std::string>> lines;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.now();
    for (auto& [kind, k] : kinds_) {
      if (k.held_back == 0 || now - k.last_logged < options_.interval) continue;
      lines.emplace_back(k.level, Summary(kind, k));
      k.last_logged = now;
      k.held_back = 0;
    }
  }
  for (const auto& [level, line] : lines) Emit(level, line);
}

}  // namespace ftd
